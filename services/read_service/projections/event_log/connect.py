"""Connections to a database other than Django's: the event store, the publisher, the read database by URL.

Reading one (the event store's log for a rebuild or verify, the subscription's or the slot's status) goes
through `read_only_connect`, so every such connection is the same: it cannot write, whatever role its URL
names; autocommit, so a long rebuild holds no snapshot open on the other server; times in UTC, as on
Django's connection, so a timestamp read there compares and prints like one read here; and a bounded wait
for a server that does not answer. Only `resubscribe` writes, with `admin_cursor`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
from psycopg2.extensions import connection as PgConnection

CONNECT_TIMEOUT = 5


def read_only_connect(dsn: str, *, application_name: str) -> PgConnection:
    """A read-only, autocommit connection to `dsn` with its times in UTC; the caller closes it."""
    connection = _connect(dsn, application_name)
    try:
        connection.set_session(readonly=True, autocommit=True)
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
    except BaseException:
        connection.close()
        raise
    return connection


@contextmanager
def read_only_cursor(dsn: str, *, application_name: str) -> Iterator[Any]:
    """A cursor of a `read_only_connect` connection, closed on the way out."""
    connection = read_only_connect(dsn, application_name=application_name)
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


@contextmanager
def admin_cursor(dsn: str, *, application_name: str) -> Iterator[Any]:
    """A cursor that may change the server: autocommit, since CREATE and DROP SUBSCRIPTION refuse to run
    inside a transaction block."""
    connection = _connect(dsn, application_name)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def _connect(dsn: str, application_name: str) -> PgConnection:
    return psycopg2.connect(dsn, connect_timeout=CONNECT_TIMEOUT, application_name=application_name)
