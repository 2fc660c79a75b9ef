"""The relay's own PostgreSQL session, apart from Django's connections.

Everything the relay does in the database goes through this one connection: the advisory lock that makes it
the leader lives exactly as long as the session, and because the reads and the advances of the mark use the
same session, a relay that lost its session (and so its leadership) cannot record anything afterwards.
Autocommit: every statement is its own short transaction, and LISTEN notifications arrive between them.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from cqrs_common.session_timeouts import postgres_options

NOTIFY_CHANNEL = "cqrs_events"  # migration 0002: a trigger notifies it when events are inserted

Session = psycopg2.extensions.connection


def session_open(
    database: Mapping[str, Any],
    *,
    application_name: str,
    server_timeout: float = 10.0,
    client_timeout: float = 20.0,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
) -> Session:
    """Connects with a Django DATABASES entry, both ends watching the other (a silent peer is a dead one).

    `server_timeout`: PostgreSQL ends this session about that many seconds after it last heard from the
    relay, releasing the leadership lock, though no FIN or RST ever came (a partition, a power loss). Set per
    session, so the server's own defaults (keepalives after 2 hours) stay as they are for everyone else.
    `client_timeout`: the relay gives the session up after that long without an answer, and stands by.
    `statement_timeout`, `lock_timeout`: a statement running or waiting for a lock that long fails instead of
    holding the relay's loop (cqrs_common.session_timeouts); unset, the server's defaults (none).
    """
    bounds = (
        postgres_options(statement_timeout=statement_timeout, lock_timeout=lock_timeout)
        if statement_timeout is not None and lock_timeout is not None
        else []
    )
    client = dead_peer_tcp(client_timeout)
    server = dead_peer_tcp(server_timeout)
    connection = psycopg2.connect(
        dbname=database["NAME"],
        user=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        host=database.get("HOST") or None,
        port=database.get("PORT") or None,
        application_name=application_name,
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=client.keepalives_idle,
        keepalives_interval=client.keepalives_interval,
        keepalives_count=client.keepalives_count,
        tcp_user_timeout=client.user_timeout_ms,
        # A relay killed while a statement runs (say, its UPDATE waits on a lock) must not keep the leadership
        # until the statement ends: the server checks every second that the client is still there.
        # Advances of the mark are committed without waiting for the WAL flush: one lost in a server crash
        # only means its events are published again, and the projector ignores duplicates. It takes a disk
        # flush off every publish cycle, between the next commit and its publication.
        options=" ".join(
            [
                "-c client_connection_check_interval=1000",
                "-c synchronous_commit=off",
                f"-c tcp_keepalives_idle={server.keepalives_idle}",
                f"-c tcp_keepalives_interval={server.keepalives_interval}",
                f"-c tcp_keepalives_count={server.keepalives_count}",
                f"-c tcp_user_timeout={server.user_timeout_ms}",
                *bounds,
            ]
        ),
    )
    connection.autocommit = True
    psycopg2.extras.register_uuid(conn_or_curs=connection)
    return connection


@dataclass(frozen=True)
class DeadPeerTcp:
    """One end's TCP settings that end a connection about `timeout` seconds after the peer fell silent.

    Two cases, two mechanisms: a connection with data the peer never acknowledged (a query, a NOTIFY) ends
    by the user timeout; an idle one is probed by keepalives, which Linux also ends at the user timeout
    (at the first unanswered probe past it), so either ends within one probe interval after `timeout`.
    """

    keepalives_idle: int  # seconds idle before the first probe
    keepalives_interval: int  # seconds between probes
    keepalives_count: int  # unanswered probes that end it (when the user timeout has not already)
    user_timeout_ms: int  # TCP_USER_TIMEOUT: longest time sent data may stay unacknowledged


def dead_peer_tcp(timeout: float) -> DeadPeerTcp:
    return DeadPeerTcp(
        keepalives_idle=max(1, int(timeout / 2)),
        keepalives_interval=max(1, int(timeout / 6)),
        keepalives_count=3,
        user_timeout_ms=max(1, int(timeout * 1000)),
    )


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
