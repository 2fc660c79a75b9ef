"""Connections to a database other than Django's: the event store, the publisher, the read database as an
administrator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
from psycopg2.extensions import connection as PgConnection

CONNECT_TIMEOUT = 5


@contextmanager
def connected_cursor(dsn: str | None, application_name: str = "replication_status") -> Iterator[Any]:
    if dsn is None:
        from django.db import connection

        with connection.cursor() as cursor:
            yield cursor
        return
    raw: PgConnection = psycopg2.connect(
        dsn, connect_timeout=CONNECT_TIMEOUT, application_name=application_name
    )
    try:
        raw.autocommit = True
        with raw.cursor() as cursor:
            yield cursor
    finally:
        raw.close()
