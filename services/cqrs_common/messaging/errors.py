"""The broker's failures as the rest of the code sees them: pika's exceptions never leave this package."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pika.exceptions


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
