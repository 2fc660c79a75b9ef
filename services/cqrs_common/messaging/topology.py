"""The queues, exchanges and bindings of CONTRACT.md ("Events"), declared the same way by every process.

    cqrs.events (topic) --account.#--> read-service.projector (quorum)
      --rejected, or returned DELIVERY_LIMIT times--> cqrs.events.dlx (topic) --#--> ...projector.dlq (quorum)

The queues belong to the read side, which declares all of it (`declare_topology`). The write side declares
only the exchange it publishes to (`Publisher`) and publishes with `mandatory`: an event no queue would take
comes back as `PublishFailed` and stays in the outbox, instead of vanishing into an exchange nobody listens
to. That keeps the write-service's broker user to one exchange (RabbitMQ requires *read* permission on a
queue to declare it with a dead-letter exchange, which would let the write side consume the read side's
queue).

A subscriber of its own (reporting) gets a queue, a dead-letter exchange and a dead-letter queue of its own,
all named after its queue (`SubscriberQueues`):

    cqrs.events --account.#--> reporting.<name> (quorum) --rejected--> reporting.<name>.dlx --> ....dlq

Its own dead-letter exchange, because cqrs.events.dlx routes every key to the projector's DLQ: a shared one
would mix the two consumers' refusals. It declares neither cqrs.events nor cqrs.events.dlx (its broker user
may only read the one and not touch the other); binding to cqrs.events fails until the read side declared it.
"""

from __future__ import annotations

from dataclasses import dataclass
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


# Every queue of a reporting subscriber starts with this; its broker user may configure only such names.
REPORTING_QUEUE_PREFIX = "reporting."


@dataclass(frozen=True, slots=True)
class SubscriberQueues:
    """The queues of one independent subscriber of cqrs.events, named after `queue`."""

    queue: str
    binding_key: str = EVENTS_BINDING_KEY

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.queue}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"

    @property
    def arguments(self) -> dict[str, Any]:
        """The projector queue's arguments (quorum, delivery limit, at-least-once dead-lettering), with its
        own dead-letter exchange."""
        return {**PROJECTOR_QUEUE_ARGUMENTS, "x-dead-letter-exchange": self.dead_letter_exchange}

    def declare(self, channel: BlockingChannel) -> None:
        """Declares and binds; idempotent. Once it returns, every event published is kept in the queue."""
        channel.exchange_declare(self.dead_letter_exchange, "topic", durable=True)
        channel.queue_declare(self.dead_letter_queue, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
        channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange, routing_key="#")
        channel.queue_declare(self.queue, durable=True, arguments=self.arguments)
        channel.queue_bind(self.queue, EVENTS_EXCHANGE, routing_key=self.binding_key)

    def delete(self, channel: BlockingChannel) -> None:
        """Removes the queues and the dead-letter exchange (a subscriber that is given up, a lab run's)."""
        channel.queue_delete(self.queue)
        channel.queue_delete(self.dead_letter_queue)
        channel.exchange_delete(self.dead_letter_exchange)


def reporting_queues(subscription: str) -> SubscriberQueues:
    """The queues of the reporting subscription `subscription` (`reporting.daily-totals`, ...)."""
    return SubscriberQueues(REPORTING_QUEUE_PREFIX + subscription)
