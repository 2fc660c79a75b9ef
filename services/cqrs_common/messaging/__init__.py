"""RabbitMQ for every process: the topology, the relay's publisher and the projector's consumer.

This package is the only code of the services that imports pika (a unit test holds every other module to
it). Behind one small API the topology is declared the same way by everyone, a message is built in one place,
pika's exceptions never leak (callers catch `BrokerError`), and upgrading or replacing the client library
touches this package alone. Callers import from here, never from its modules:

- `topology`: exchange and queue names, their arguments, `declare_topology`; `ProjectorPartitions`, the
  projector's partition queues and which a projector owns; `SubscriberQueues`, the queues
  of an independent subscriber (reporting), named by `reporting_queues`.
- `connection`: connection parameters (heartbeat, blocked-connection timeout) from an amqp:// URL;
  `BrokerError` and its kinds, and the translation of pika's exceptions into them.
- `message`: an event's AMQP properties, and `Delivery`, a received message.
- `publisher`: `Publisher`, batches with publisher confirms over an asynchronous connection (the relay).
- `consumer`: `Consumer`, batches received from several queues and settled over a blocking connection (the
  projector).
- `dead_letters`: listing, counting, replaying and purging a queue's messages (the `dlq` command).
- `queues`: `queue_depths`, the ready messages of queues on a short-lived connection (the live view).
"""

from cqrs_common.messaging.connection import (
    BLOCKED_CONNECTION_TIMEOUT_SECONDS,
    HEARTBEAT_SECONDS,
    BrokerError,
    BrokerUnavailable,
    PublishFailed,
    connection_parameters,
)
from cqrs_common.messaging.consumer import Consumer
from cqrs_common.messaging.message import (
    CORRELATION_HEADER,
    PUBLISHED_AT_HEADER,
    Delivery,
    message_properties,
)
from cqrs_common.messaging.publisher import Publisher
from cqrs_common.messaging.queues import queue_depths
from cqrs_common.messaging.topology import (
    AGGREGATE_ID_HEADER,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DEAD_LETTER_QUEUE_ARGUMENTS,
    DEFAULT_PARTITIONS,
    DELIVERY_LIMIT,
    EVENTS_BINDING_KEY,
    EVENTS_EXCHANGE,
    LEGACY_PROJECTOR_QUEUE,
    PARTITION_QUEUE_ARGUMENTS,
    PARTITIONS_EXCHANGE,
    PROJECTOR_QUEUE_ARGUMENTS,
    REPORTING_QUEUE_PREFIX,
    ProjectorPartitions,
    SubscriberQueues,
    declare_topology,
    partition_of,
    partition_queue,
    reporting_queues,
)

__all__ = [
    "AGGREGATE_ID_HEADER",
    "BLOCKED_CONNECTION_TIMEOUT_SECONDS",
    "CORRELATION_HEADER",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "DEAD_LETTER_QUEUE_ARGUMENTS",
    "DEFAULT_PARTITIONS",
    "DELIVERY_LIMIT",
    "EVENTS_BINDING_KEY",
    "EVENTS_EXCHANGE",
    "HEARTBEAT_SECONDS",
    "LEGACY_PROJECTOR_QUEUE",
    "PARTITIONS_EXCHANGE",
    "PARTITION_QUEUE_ARGUMENTS",
    "PROJECTOR_QUEUE_ARGUMENTS",
    "PUBLISHED_AT_HEADER",
    "REPORTING_QUEUE_PREFIX",
    "BrokerError",
    "BrokerUnavailable",
    "Consumer",
    "Delivery",
    "ProjectorPartitions",
    "PublishFailed",
    "Publisher",
    "SubscriberQueues",
    "connection_parameters",
    "declare_topology",
    "message_properties",
    "partition_of",
    "partition_queue",
    "queue_depths",
    "reporting_queues",
]
