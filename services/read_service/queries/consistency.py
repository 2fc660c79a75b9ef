"""Read-your-writes: wait until an account's projected version reaches the one a client has written.

The apply step sends `NOTIFY account_projected, '<account id>'` when it commits. A waiting request LISTENs on
its own (autocommit) connection, so no transaction is held open while it waits, re-reads the version when
its account is notified, and also every `RECHECK_SECONDS` in case a notification was missed (a connection
that LISTENed after the commit, or an applier that does not notify). It UNLISTENs before the connection goes
back to serve other requests.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from django.db import connection

from read_service.projections.apply import PROJECTED_CHANNEL
from read_service.queries.selectors import account_version_get

RECHECK_SECONDS = 0.25


def account_version_wait(*, account_id: UUID, min_version: int, timeout: float) -> bool:
    """True as soon as the account's projected version is at least `min_version`; False after `timeout`."""
    if _reached(account_id, min_version):
        return True
    deadline = time.monotonic() + timeout
    if time.monotonic() >= deadline:
        return False
    if connection.in_atomic_block:  # LISTEN would only deliver after that transaction: poll instead
        return _poll(account_id, min_version, deadline)
    with _listening(PROJECTED_CHANNEL) as raw:
        while True:
            if _reached(account_id, min_version):  # also closes the race between the first read and LISTEN
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            _await_notification(raw, str(account_id), min(remaining, RECHECK_SECONDS))


def _reached(account_id: UUID, min_version: int) -> bool:
    version = account_version_get(account_id=account_id)
    return version is not None and version >= min_version


def _poll(account_id: UUID, min_version: int, deadline: float) -> bool:
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(remaining, RECHECK_SECONDS / 5))
        if _reached(account_id, min_version):
            return True
    return False


@contextmanager
def _listening(channel: str) -> Iterator[Any]:
    with connection.cursor() as cursor:
        cursor.execute(f'LISTEN "{channel}"')
    raw = connection.connection
    try:
        yield raw
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'UNLISTEN "{channel}"')
        raw.notifies.clear()


def _await_notification(raw: Any, payload: str, timeout: float) -> None:
    """Returns when `payload` is notified or `timeout` passes, whichever comes first."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([raw], [], [], remaining)
        if not readable:
            return
        raw.poll()
        notified = any(n.payload == payload for n in raw.notifies)
        raw.notifies.clear()
        if notified:
            return
