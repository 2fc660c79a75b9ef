"""How every process connects: parameters from an amqp:// URL, with the timeouts a long-lived client needs."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pika

HEARTBEAT_SECONDS = 30
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 30


def connection_parameters(url: str, *, connection_name: str) -> pika.URLParameters:
    """Parameters from an amqp:// URL; heartbeat and blocked-connection timeout unless the URL sets them.

    The blocked-connection timeout turns a broker resource alarm (disk or memory) into a closed connection,
    and so into a retry, instead of a publisher hanging forever.
    """
    parameters = pika.URLParameters(url)
    query = parse_qs(urlsplit(url).query)
    if "heartbeat" not in query:
        parameters.heartbeat = HEARTBEAT_SECONDS
    if "blocked_connection_timeout" not in query:
        parameters.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT_SECONDS
    # Shown in the management UI next to the connection.
    parameters.client_properties = {"connection_name": connection_name}
    return parameters
