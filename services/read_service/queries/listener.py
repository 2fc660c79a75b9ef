"""One LISTEN connection per read-service process that wakes the threads waiting for an account's version.

The apply step sends `NOTIFY account_projected, '<account id>'` when it commits. A thread that waits for
read-your-writes registers (account, version) here and sleeps on an Event; this module's single thread
LISTENs on its own autocommit connection, and when a waited-for account is notified it reads the versions of
those accounts in one query and wakes every waiter that is satisfied. So a process holds one extra database
connection however many requests wait, and a waiting thread touches the database only before and after.

Every `RECHECK_SECONDS` without a notification it reads the versions of all waited-for accounts anyway, so a
missed notification (an applier that does not notify, the moments of a reconnect) delays a waiter by at most
that. A lost connection is reopened with backoff; waiters meanwhile time out and re-read the version
themselves (read_service.queries.consistency): an outage of the listener costs latency, never a wrong answer.
The thread starts with the first wait in each process (after gunicorn forks its workers).
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg2
from django.db import connections

from cqrs_common.logging import get_logger
from read_service.projections.apply import PROJECTED_CHANNEL

log = get_logger(__name__)

RECHECK_SECONDS = 0.25
RECONNECT_BACKOFF_SECONDS = (0.1, 0.5, 1.0, 2.0)

_VERSIONS = "SELECT account_id::text, version FROM account_view WHERE account_id = ANY(%s::uuid[])"


@dataclass(eq=False)
class _Waiter:
    account_id: str
    min_version: int
    reached: threading.Event = field(default_factory=threading.Event)


class ProjectedVersionListener:
    def __init__(self, alias: str = "default") -> None:
        self._alias = alias
        self._lock = threading.Lock()
        self._waiters: dict[str, set[_Waiter]] = {}
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def wait(self, *, account_id: UUID, min_version: int, timeout: float) -> bool:
        """True once the listener saw the account at `min_version` or later; False after `timeout`."""
        waiter = _Waiter(str(account_id), min_version)
        with self._lock:
            self._ensure_running()
            self._waiters.setdefault(waiter.account_id, set()).add(waiter)
        try:
            return waiter.reached.wait(timeout)
        finally:
            with self._lock:
                waiting = self._waiters.get(waiter.account_id)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[waiter.account_id]

    def waiting(self) -> int:
        with self._lock:
            return sum(len(waiters) for waiters in self._waiters.values())

    def _ensure_running(self) -> None:
        # A forked worker inherits the object but not the thread: start one per process.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="projected-version-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while True:
            raw = None
            try:
                raw = self._connect()
                failures = 0
                self._serve(raw)
            except Exception as exc:  # the database went away, or anything else: never leave waiters unserved
                delay = RECONNECT_BACKOFF_SECONDS[min(failures, len(RECONNECT_BACKOFF_SECONDS) - 1)]
                failures += 1
                log.warning(
                    "projection_listener_disconnected",
                    error=str(exc).strip(),
                    exception_type=type(exc).__name__,
                    retry_in=delay,
                )
                threading.Event().wait(delay)
            finally:
                if raw is not None:
                    raw.close()

    def _connect(self) -> Any:
        params = connections[self._alias].get_connection_params()
        params.pop("cursor_factory", None)
        raw = psycopg2.connect(**params, application_name="read-service-listener")
        raw.autocommit = True
        with raw.cursor() as cursor:
            cursor.execute(f'LISTEN "{PROJECTED_CHANNEL}"')
        return raw

    def _serve(self, raw: Any) -> None:
        self._wake(raw, self._waited_accounts())  # whatever committed before LISTEN
        while True:
            readable, _, _ = select.select([raw], [], [], RECHECK_SECONDS)
            if readable:
                raw.poll()
                notified = {notification.payload for notification in raw.notifies}
                raw.notifies.clear()
                accounts = notified & set(self._waited_accounts())
            else:
                accounts = set(self._waited_accounts())
            if accounts:
                self._wake(raw, accounts)

    def _waited_accounts(self) -> list[str]:
        with self._lock:
            return list(self._waiters)

    def _wake(self, raw: Any, accounts: Iterable[str]) -> None:
        accounts = list(accounts)
        if not accounts:
            return
        with raw.cursor() as cursor:
            cursor.execute(_VERSIONS, [accounts])
            versions = dict(cursor.fetchall())
        with self._lock:
            for account_id, version in versions.items():
                for waiter in self._waiters.get(account_id, ()):
                    if version >= waiter.min_version:
                        waiter.reached.set()


listener = ProjectedVersionListener()
