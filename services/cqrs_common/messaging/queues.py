"""How many messages wait in a queue, asked on a short-lived connection (the live view's queue depth)."""

from __future__ import annotations

from collections.abc import Iterable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingConnection

from cqrs_common.messaging.connection import broker_errors, connection_parameters

NOT_FOUND = 404


def queue_depths(
    url: str, queues: Iterable[str], *, connection_name: str, timeout: float
) -> dict[str, int | None]:
    """Messages ready in each queue (a passive declare: nothing is created), None for a queue that does not
    exist (yet: the projector declares it), on a connection opened and closed here. Every network wait is
    bounded by `timeout` seconds per node, so a broker that is gone or silent answers with BrokerError quickly
    instead of holding the caller (a web request)."""
    nodes = connection_parameters(url, connection_name=connection_name)
    for parameters in nodes:
        parameters.connection_attempts = 1
        parameters.socket_timeout = timeout
        parameters.stack_timeout = timeout
        parameters.blocked_connection_timeout = timeout
    with broker_errors():
        # The nodes of a cluster in turn, as every client connects (connection.py): the first that answers.
        connection = pika.BlockingConnection(nodes)
        try:
            return {queue: _depth(connection, queue) for queue in queues}
        finally:
            if connection.is_open:
                connection.close()


def _depth(connection: BlockingConnection, queue: str) -> int | None:
    # A channel per queue: the broker closes the channel that asked for a missing queue.
    channel = connection.channel()
    try:
        depth = channel.queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == NOT_FOUND:
            return None
        raise
    channel.close()
    return depth
