"""How every process connects: parameters from an amqp:// URL, with the timeouts a long-lived client needs;
and the broker's failures as the rest of the code sees them: pika's exceptions never leave this package.

A URL may name several nodes of one RabbitMQ cluster, separated by commas
(`amqp://u:p@rabbitmq-1/cqrs,amqp://u:p@rabbitmq-2/cqrs`). Clients then take the nodes in turn: each new
connection starts at the node after the one the previous connection of this process started at, so a client
whose node went away reconnects to another, and a process's connections spread over the cluster.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions

HEARTBEAT_SECONDS = 30
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 30

_turns: dict[str, itertools.count[int]] = {}
_turns_lock = threading.Lock()


def node_urls(url: str) -> list[str]:
    """The URL of each node that `url` names (one unless it lists several, separated by commas)."""
    nodes = [part.strip() for part in url.split(",") if part.strip()]
    if not nodes:
        raise ValueError("no RabbitMQ URL given")
    return nodes


def connection_parameters(url: str, *, connection_name: str) -> list[pika.URLParameters]:
    """Parameters of every node `url` names, starting with the one whose turn it is (see the module's doc).

    Heartbeat and blocked-connection timeout are set unless the URL sets them: the blocked-connection timeout
    turns a broker resource alarm (disk or memory) into a closed connection, and so into a retry, instead of
    a publisher hanging forever.
    """
    nodes = [_parameters(node, connection_name) for node in node_urls(url)]
    with _turns_lock:
        start = next(_turns.setdefault(url, itertools.count())) % len(nodes)
    return nodes[start:] + nodes[:start]


def _parameters(url: str, connection_name: str) -> pika.URLParameters:
    parameters = pika.URLParameters(url)
    query = parse_qs(urlsplit(url).query)
    if "heartbeat" not in query:
        parameters.heartbeat = HEARTBEAT_SECONDS
    if "blocked_connection_timeout" not in query:
        parameters.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT_SECONDS
    # Shown in the management UI next to the connection.
    parameters.client_properties = {"connection_name": connection_name}
    return parameters


class BrokerError(Exception):
    """Any failure talking to RabbitMQ. Callers close, back off, reconnect and retry."""


class BrokerUnavailable(BrokerError):
    """The connection could not be opened, or was lost."""


class PublishFailed(BrokerError):
    """RabbitMQ did not confirm every message of a batch: nacked, returned as unroutable, or timed out."""


@contextmanager
def broker_errors() -> Iterator[None]:
    """Translates pika's exceptions into ours, so no caller needs to know pika."""
    try:
        yield
    except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
        raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc
    except (pika.exceptions.AMQPConnectionError, pika.exceptions.ConnectionClosed) as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise BrokerError(f"{type(exc).__name__}: {exc}") from exc
