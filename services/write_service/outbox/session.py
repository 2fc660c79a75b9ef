"""The relay's own PostgreSQL session, apart from Django's connections.

Everything the relay does in the database goes through this one connection: the advisory lock that makes it
the leader lives exactly as long as the session, and because the reads and the marking use the same
session, a relay that lost its session (and so its leadership) cannot mark anything afterwards.
Autocommit: every statement is its own short transaction, and LISTEN notifications arrive between them.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

NOTIFY_CHANNEL = "cqrs_events"  # migration 0002: a trigger notifies it when events are inserted

Session = psycopg2.extensions.connection


def session_open(database: Mapping[str, Any], *, application_name: str) -> Session:
    """Connects with a Django DATABASES entry. TCP keepalives notice a vanished server within ~30 s."""
    connection = psycopg2.connect(
        dbname=database["NAME"],
        user=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        host=database.get("HOST") or None,
        port=database.get("PORT") or None,
        application_name=application_name,
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
        # A relay killed while a statement runs (say, its UPDATE waits on a lock) must not keep the leadership
        # until the statement ends: the server checks every second that the client is still there.
        # Marks are committed without waiting for the WAL flush: a mark lost in a server crash only means
        # its events are published again, and the projector ignores duplicates. It takes a disk flush off
        # every publish cycle, between the next commit and its publication.
        options="-c client_connection_check_interval=1000 -c synchronous_commit=off",
    )
    connection.autocommit = True
    psycopg2.extras.register_uuid(conn_or_curs=connection)
    return connection


def session_listen(session: Session) -> None:
    """Subscribes to commit notifications; only the leader does, so a standby's socket never fills up."""
    with session.cursor() as cursor:
        cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")


def session_wait(session: Session, timeout: float, wake_fds: Sequence[int] = ()) -> bool:
    """Waits until events are committed (a notification), a `wake_fds` is readable, or `timeout` passed.

    Returns whether a notification arrived. Pending notifications are consumed, since one drain covers
    every commit before it.
    """
    if session.notifies:
        session.notifies.clear()
        return True
    readable, _, _ = select.select([session, *wake_fds], [], [], timeout)
    if session in readable:
        session.poll()  # raises if the connection is gone
    notified = bool(session.notifies)
    session.notifies.clear()
    return notified


def session_close(session: Session | None) -> None:
    if session is not None and not session.closed:
        with contextlib.suppress(psycopg2.Error):  # a broken connection; nothing left to release
            session.close()
