"""How every process connects: parameters from an amqp:// URL, with the timeouts a long-lived client needs.

A URL may name several nodes of one RabbitMQ cluster, separated by commas
(`amqp://u:p@rabbitmq-1/cqrs,amqp://u:p@rabbitmq-2/cqrs`). Clients then take the nodes in turn: each new
connection starts at the node after the one the previous connection of this process started at, so a client
whose node went away reconnects to another, and a process's connections spread over the cluster.
"""

from __future__ import annotations

import itertools
import threading
from urllib.parse import parse_qs, urlsplit

import pika

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
