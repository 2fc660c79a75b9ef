"""`python -m write_service purge_idempotency_keys [--batch-size N]`: delete expired idempotency keys.

A key older than IDEMPOTENCY_KEY_TTL_SECONDS no longer replays (CONTRACT.md), so its row only takes space.
Run this periodically (hourly, say, from cron or a scheduled job); expiry itself does not wait for it. Each
batch is its own short transaction, so commands sent meanwhile are never held up for long.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from cqrs_common import config
from cqrs_common import logging as cqrs_logging
from write_service.ledger.api.idempotency import purge_expired

log = cqrs_logging.get_logger(__name__)


class Command(BaseCommand):
    help = "Delete idempotency keys older than IDEMPOTENCY_KEY_TTL_SECONDS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=10_000, help="keys deleted per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        cqrs_logging.configure(config.service_name("purge_idempotency_keys"))
        ttl = settings.IDEMPOTENCY_KEY_TTL_SECONDS
        deleted = purge_expired(ttl_seconds=ttl, batch_size=options["batch_size"])
        log.info("idempotency_keys_purged", deleted=deleted, ttl_seconds=ttl)
        self.stdout.write(f"{deleted} expired idempotency keys deleted (TTL {ttl} s)")
