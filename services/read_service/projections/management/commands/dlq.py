"""`python -m read_service dlq list|replay|purge`: look at, resend or drop dead-lettered messages.

- list: the dead-letter records not yet replayed or purged (JSON lines) and how many messages the queue holds.
- replay: republishes each message of `read-service.projector.dlq` to `cqrs.events` with its original routing
  key (confirmed before it leaves the DLQ), then events whose only copy is their record (see `DeadLetter`),
  and marks the records replayed. Only what is there when it starts is replayed, so a message that fails
  again and returns to the DLQ is not replayed in a loop.
- purge: drops the queue's messages and marks the open records purged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from cqrs_common import config
from cqrs_common import logging as cqrs_logging
from cqrs_common.messaging import DEAD_LETTER_QUEUE, Consumer, Delivery
from read_service.projections.dead_letters import (
    dead_letters_mark_purged,
    dead_letters_mark_replayed,
    dead_letters_open,
    dead_letters_open_of_message,
)

log = cqrs_logging.get_logger(__name__)


class Command(BaseCommand):
    help = "List, replay or purge dead-lettered messages of the projector."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="open dead-letter records and the queue's message count")
        replay = actions.add_parser("replay", help="republish dead letters to cqrs.events")
        replay.add_argument("--limit", type=int, default=None, help="replay at most this many messages")
        actions.add_parser("purge", help="drop every dead-lettered message")

    def handle(self, *args: Any, **options: Any) -> None:
        cqrs_logging.configure(config.service_name("dlq"))
        with Consumer(settings.RABBITMQ_URL, connection_name="dlq") as consumer:
            getattr(self, f"_{options['action']}")(consumer, options)

    def _list(self, consumer: Consumer, _options: dict) -> None:
        for record in dead_letters_open():
            self.stdout.write(
                json.dumps(
                    {
                        "id": record.id,
                        "message_id": record.message_id,
                        "type": record.event_type,
                        "routing_key": record.routing_key,
                        "reason": record.reason,
                        "detail": record.detail,
                        "dead_lettered_at": record.dead_lettered_at.isoformat(),
                        "in_queue": record.body is None,
                    }
                )
            )
        self.stdout.write(f"{consumer.message_count(DEAD_LETTER_QUEUE)} message(s) in {DEAD_LETTER_QUEUE}")

    def _replay(self, consumer: Consumer, options: dict) -> None:
        limit = options["limit"]
        budget = consumer.message_count(DEAD_LETTER_QUEUE)
        if limit is not None:
            budget = min(budget, limit)
        replayed = 0
        while replayed < budget and (delivery := consumer.get(DEAD_LETTER_QUEUE)) is not None:
            records = dead_letters_open_of_message(delivery.message_id)
            consumer.republish(delivery)
            consumer.ack(delivery.delivery_tag)
            dead_letters_mark_replayed(records)
            replayed += 1
            log.info("dead_letter_replayed", message_id=delivery.message_id, routing_key=delivery.routing_key)
        for record in dead_letters_open():
            if record.body is None or (limit is not None and replayed >= limit):
                continue
            consumer.republish(_delivery_of(record))
            dead_letters_mark_replayed([record.id])
            replayed += 1
            log.info("dead_letter_replayed", message_id=record.message_id, routing_key=record.routing_key)
        self.stdout.write(f"replayed {replayed} message(s)")

    def _purge(self, consumer: Consumer, _options: dict) -> None:
        dropped = consumer.purge(DEAD_LETTER_QUEUE)
        marked = dead_letters_mark_purged()
        log.info("dead_letters_purged", messages=dropped, records=marked)
        self.stdout.write(f"purged {dropped} message(s), {marked} record(s)")


def _delivery_of(record: Any) -> Delivery:
    """A message rebuilt from a record that keeps the event (its original message is long gone)."""
    return Delivery(
        delivery_tag=0,
        body=bytes(record.body),
        routing_key=record.routing_key,
        exchange="",
        redelivered=False,
        message_id=record.message_id,
        type=record.event_type,
        content_type="application/json",
        timestamp=int(datetime.now(UTC).timestamp()),
    )
