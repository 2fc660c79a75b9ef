"""The queues, exchanges and bindings of CONTRACT.md ("Events"), declared the same way by every process.

    cqrs.events (topic) --account.#--> read-service.projector.partitions (x-consistent-hash on x-aggregate-id)
      --> read-service.projector.p0 .. p{N-1} (quorum, single active consumer)
      --rejected, or returned DELIVERY_LIMIT times--> cqrs.events.dlx (topic) --#--> ...projector.dlq (quorum)

The projector's events are split by account into N partitions (`ProjectorPartitions`; docs/decisions/0008):
RabbitMQ's consistent-hash exchange hashes the header `x-aggregate-id` the relay sets, so every event of an
account lands in the same partition queue, in publish order. Each partition queue has a single active
consumer: whichever projector subscribed first receives all of it, the others wait as standbys and RabbitMQ
hands the partition (its unacknowledged messages first) to the next one when the active one's channel goes.
So one projector at a time applies an account's events, in order, by construction.

Queues the projector no longer reads keep what they hold until it is applied: the single queue of earlier
releases (`read-service.projector`) and the partitions beyond N after N was lowered are unbound (nothing new
arrives), consumed alongside the partitions while they hold messages, and deleted once empty
(`retired_queues`, `Consumer`). A queue's arguments cannot change in place, hence new names, not new
arguments on the old queue.

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
# The single projector queue of earlier releases: retired (unbound, drained, deleted) where it still exists.
LEGACY_PROJECTOR_QUEUE = "read-service.projector"
PARTITIONS_EXCHANGE = "read-service.projector.partitions"
PARTITION_QUEUE_PREFIX = "read-service.projector.p"
# The header the relay sets to the event's aggregate id: what the consistent-hash exchange hashes.
AGGREGATE_ID_HEADER = "x-aggregate-id"
# Partitions when nothing says otherwise (PROJECTOR_PARTITIONS): more than the projectors one machine runs.
DEFAULT_PARTITIONS = 4
# Weight of each partition queue on the hash ring (the binding key of a consistent-hash exchange): all equal.
PARTITION_WEIGHT = "1"
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


# A partition queue: the projector queue's arguments (dead-lettering, delivery limit) and one active consumer.
PARTITION_QUEUE_ARGUMENTS: dict[str, Any] = {**PROJECTOR_QUEUE_ARGUMENTS, "x-single-active-consumer": True}
PARTITIONS_EXCHANGE_ARGUMENTS: dict[str, Any] = {"hash-header": AGGREGATE_ID_HEADER}


@dataclass(frozen=True, slots=True)
class ProjectorPartitions:
    """The N partitions of the projector's events and which of them one projector owns.

    A projector with `ordinal` i of `replicas` owns the partitions p with p % replicas == i: it subscribes to
    those first, and to the others only `standby_delay` seconds later, as a standby. With every projector
    started that way each partition's first subscriber, its active consumer, is its owner, and the others
    take it over when the owner goes. Ownership only orders the subscriptions: RabbitMQ decides who is active.
    A spare (`ordinal` None: more projectors than `replicas`) owns nothing and stands by on every partition.
    """

    count: int = DEFAULT_PARTITIONS
    ordinal: int | None = 0
    replicas: int = 1
    standby_delay: float = 2.0

    def __post_init__(self) -> None:
        spare = self.ordinal is None
        if self.count < 1 or self.replicas < 1 or not (spare or 0 <= self.ordinal < self.replicas):
            raise ValueError(
                f"invalid partitions: {self.count} partitions, ordinal {self.ordinal} of {self.replicas}"
            )

    @property
    def queues(self) -> list[str]:
        return [partition_queue(p) for p in range(self.count)]

    @property
    def owned(self) -> list[str]:
        return [partition_queue(p) for p in range(self.count) if p % self.replicas == self.ordinal]

    @property
    def standby(self) -> list[str]:
        return [partition_queue(p) for p in range(self.count) if p % self.replicas != self.ordinal]


def partition_queue(partition: int) -> str:
    return f"{PARTITION_QUEUE_PREFIX}{partition}"


def partition_of(queue: str | None) -> int | None:
    """The partition a queue name stands for (`read-service.projector.p3` -> 3), None for any other queue."""
    if queue is None or not queue.startswith(PARTITION_QUEUE_PREFIX):
        return None
    suffix = queue.removeprefix(PARTITION_QUEUE_PREFIX)
    return int(suffix) if suffix.isdigit() else None


def declare_topology(channel: BlockingChannel, partitions: int = DEFAULT_PARTITIONS) -> None:
    """Declares exchanges, queues and bindings; idempotent. Needs the read side's broker permissions.

    The DLQ is declared before the queues that dead-letter into it, so no dead letter is ever unroutable; the
    partition queues are bound to the hash exchange before it is bound to cqrs.events, so no event published
    meanwhile goes into an exchange with an empty ring.
    """
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, "topic", durable=True)
    channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
    channel.queue_bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, routing_key="#")
    channel.exchange_declare(
        PARTITIONS_EXCHANGE, "x-consistent-hash", durable=True, arguments=PARTITIONS_EXCHANGE_ARGUMENTS
    )
    for partition in range(partitions):
        queue = partition_queue(partition)
        channel.queue_declare(queue, durable=True, arguments=PARTITION_QUEUE_ARGUMENTS)
        channel.queue_bind(queue, PARTITIONS_EXCHANGE, routing_key=PARTITION_WEIGHT)
    channel.exchange_bind(PARTITIONS_EXCHANGE, EVENTS_EXCHANGE, routing_key=EVENTS_BINDING_KEY)


def retire_queue(channel: BlockingChannel, queue: str) -> None:
    """Unbinds a queue the projector no longer reads (the legacy queue, a partition beyond N); idempotent.
    Binding it again would need the same arguments, so unbinding an absent binding is harmless."""
    if queue == LEGACY_PROJECTOR_QUEUE:
        channel.queue_unbind(queue, EVENTS_EXCHANGE, routing_key=EVENTS_BINDING_KEY)
    else:
        channel.queue_unbind(queue, PARTITIONS_EXCHANGE, routing_key=PARTITION_WEIGHT)


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
