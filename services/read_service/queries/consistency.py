"""Read-your-writes: wait until an account's projected version reaches the one a client has written.

A read that is fresh enough answers at once and waits for nothing. Otherwise the request's thread sleeps
until the process's one listener (read_service.queries.listener) sees the version, or until the timeout, and
reads the version itself once more at the end (so a listener that was reconnecting costs latency, not a
wrong 503). At most READ_WAIT_MAX_CONCURRENT requests of a process wait at once: gunicorn runs read-service
with more threads than that, so /readyz and plain reads always find a free thread, and a wait beyond the
bound is refused at once (`WaitsExhausted`, a 503 with Retry-After) instead of queueing behind the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from django.db import connection

from cqrs_common import config, metrics
from read_service.queries.listener import RECHECK_SECONDS, listener
from read_service.queries.selectors import account_version_get

_slots = threading.BoundedSemaphore(config.read_wait_max_concurrent())


class WaitsExhausted(Exception):
    """This process already holds as many read-your-writes waits as it may."""


def account_version_wait(*, account_id: UUID, min_version: int, timeout: float) -> bool:
    """True as soon as the account's projected version is at least `min_version`; False after `timeout`.
    Raises `WaitsExhausted` when it would have to wait and the process holds its maximum of waits."""
    if _reached(account_id, min_version):
        return True
    if timeout <= 0:
        return False
    with _wait_slot():
        if connection.in_atomic_block:  # another connection would not see this transaction: poll instead
            return _poll(account_id, min_version, time.monotonic() + timeout)
        if listener.wait(account_id=account_id, min_version=min_version, timeout=timeout):
            return True
        return _reached(account_id, min_version)


@contextmanager
def _wait_slot() -> Iterator[None]:
    if not _slots.acquire(blocking=False):
        metrics.READ_WAITS_REFUSED.inc()
        raise WaitsExhausted()
    try:
        with metrics.READ_WAITS_IN_FLIGHT.track_inprogress():
            yield
    finally:
        _slots.release()


def _reached(account_id: UUID, min_version: int) -> bool:
    version = account_version_get(account_id=account_id)
    return version is not None and version >= min_version


def _poll(account_id: UUID, min_version: int, deadline: float) -> bool:
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(remaining, RECHECK_SECONDS / 5))
        if _reached(account_id, min_version):
            return True
    return False
