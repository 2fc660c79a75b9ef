"""The queues, exchanges and bindings of CONTRACT.md ("Events"), declared the same way by every process.

    cqrs.events (topic) --account.#--> read-service.projector (quorum)
      --rejected, or returned DELIVERY_LIMIT times--> cqrs.events.dlx (topic) --#--> ...projector.dlq (quorum)

The queues belong to the read side, which declares all of it (`declare_topology`). The write side declares
only the exchange it publishes to (`Publisher`) and publishes with `mandatory`: an event no queue would take
comes back as `PublishFailed` and stays in the outbox, instead of vanishing into an exchange nobody listens
to. That keeps the write-service's broker user to one exchange (RabbitMQ requires *read* permission on a
queue to declare it with a dead-letter exchange, which would let the write side consume the read side's
queue).
"""

from __future__ import annotations

from typing import Any

from pika.adapters.blocking_connection import BlockingChannel

EVENTS_EXCHANGE = "cqrs.events"
DEAD_LETTER_EXCHANGE = "cqrs.events.dlx"
PROJECTOR_QUEUE = "read-service.projector"
DEAD_LETTER_QUEUE = "read-service.projector.dlq"
EVENTS_BINDING_KEY = "account.#"

# A message returned to the queue this many times (consumer crashed or requeued it) is dead-lettered instead
# of blocking the queue forever. High enough that a few projector restarts never dead-letter a good event.
DELIVERY_LIMIT = 20

PROJECTOR_QUEUE_ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    # No x-dead-letter-routing-key: a dead letter keeps `account.<Type>`, so a replay can publish it back to
    # cqrs.events unchanged; the DLQ is bound to the (topic) DLX with `#` and takes every key.
    "x-delivery-limit": DELIVERY_LIMIT,
    # At-least-once dead-lettering (RabbitMQ >= 3.10): a rejected message leaves the queue only once the DLQ
    # has confirmed it. RabbitMQ requires overflow `reject-publish` for it (no length limit is set).
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
DEAD_LETTER_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}


def declare_topology(channel: BlockingChannel) -> None:
    """Declares exchanges, queues and bindings; idempotent. Needs the read side's broker permissions.

    The DLQ is declared before the queue that dead-letters into it, so no dead letter is ever unroutable.
    """
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, "topic", durable=True)
    channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
    channel.queue_bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, routing_key="#")
    channel.queue_declare(PROJECTOR_QUEUE, durable=True, arguments=PROJECTOR_QUEUE_ARGUMENTS)
    channel.queue_bind(PROJECTOR_QUEUE, EVENTS_EXCHANGE, routing_key=EVENTS_BINDING_KEY)
