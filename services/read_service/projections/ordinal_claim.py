"""A number for a projector among replicas that are all alike (PROJECTOR_ORDINAL=auto).

Compose's `--scale projector=N` starts N identical containers: none knows which partitions to take first, and
partitions spread over projectors only when each has its own number (topology.ProjectorPartitions). So each
claims one: the lowest of 0 .. replicas-1 whose session-level advisory lock in the read database it gets,
held on a connection of its own for the life of the process. When a projector dies its session ends and the
number is free for its replacement. A projector that finds every number taken is a spare: it owns nothing
and stands by on every partition.

Losing the lock (the read database restarted) only risks two projectors with the same number: each partition
still has one active consumer (RabbitMQ's single active consumer), the spread is merely uneven.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2
from django.db import connections

# Both keys of a two-key advisory lock: the namespace (a fixed hash of a name) and the number.
CLAIM_NAMESPACE = "cqrs.projector.ordinal"
# A claimer whose host vanished without closing its connection keeps its number until the server's TCP
# keepalives end its session: about 5 + 3 * 5 seconds.
KEEPALIVE_OPTIONS = "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"


@dataclass
class OrdinalClaim:
    ordinal: int | None  # None: a spare
    _connection: Any = None

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def claim_ordinal(replicas: int, database: str = "default") -> OrdinalClaim:
    """Claims the lowest free number below `replicas` in the read database, or none (a spare)."""
    params = connections[database].get_connection_params()
    params["options"] = f"{params.get('options', '')} {KEEPALIVE_OPTIONS}".strip()
    params["application_name"] = "projector ordinal claim"
    connection = psycopg2.connect(**params)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for ordinal in range(replicas):
                cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s), %s)", (CLAIM_NAMESPACE, ordinal))
                if cursor.fetchone()[0]:
                    return OrdinalClaim(ordinal, connection)
    except BaseException:
        connection.close()
        raise
    connection.close()
    return OrdinalClaim(None)


def claimed_ordinals(database: str = "default") -> list[int]:
    """The numbers running projectors hold now (what the tests check claims against)."""
    with connections[database].cursor() as cursor:
        cursor.execute(
            """
            SELECT objid::int FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND objsubid = 2
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND classid = hashtext(%s)::oid
             ORDER BY 1
            """,
            [CLAIM_NAMESPACE],
        )
        return [row[0] for row in cursor.fetchall()]
