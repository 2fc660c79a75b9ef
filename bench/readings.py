"""What the databases say about a scenario: events committed on the write side, and when each was applied
on the read side (`applied_events.applied_at`, the read database's clock inside the apply transaction, against
`occurred_at`, the write side's clock when the command ran: one machine, one clock)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from bench.infra import Databases


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    position: int
    occurred_at: float  # epoch seconds
    applied_at: float
    path: str

    @property
    def lag(self) -> float:
        return self.applied_at - self.occurred_at


@dataclass(frozen=True, slots=True)
class Committed:
    count: int
    first_occurred_at: float | None
    last_occurred_at: float | None
    last_position: int


class Readings:
    """Two autocommit connections, one to each database, kept for the whole run."""

    def __init__(self, databases: Databases) -> None:
        self._write = psycopg2.connect(databases.write_database_url)
        self._read = psycopg2.connect(databases.read_database_url)
        self._write.autocommit = self._read.autocommit = True

    def close(self) -> None:
        self._write.close()
        self._read.close()

    def last_position(self) -> int:
        """The newest position of the event store (0 when empty): a scenario's events are those after it."""
        return self._one(self._write, "SELECT coalesce(max(position), 0) FROM events")

    def committed_after(self, position: int) -> Committed:
        with self._write.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), extract(epoch FROM min(occurred_at)), extract(epoch FROM max(occurred_at)),"
                " coalesce(max(position), %s) FROM events WHERE position > %s",
                [position, position],
            )
            count, first, last, last_position = cursor.fetchone()
        return Committed(count, _float(first), _float(last), int(last_position))

    def last_published_at(self, until: int) -> float | None:
        """When the relay's mark last moved, once it has passed `until` (None before): with nothing committed
        after `until`, when the last of those events was confirmed."""
        return _float(
            self._one(
                self._write,
                "SELECT extract(epoch FROM max(advanced_at)) FROM outbox_progress WHERE mark >= %s",
                [until],
            )
        )

    def unpublished(self) -> int:
        return self._one(self._write, "SELECT count(*) FROM outbox_unpublished")

    def applied_count(self, after: int, until: int) -> int:
        return self._one(
            self._read,
            "SELECT count(*) FROM applied_events WHERE position > %s AND position <= %s",
            [after, until],
        )

    def applied(self, after: int, until: int) -> list[AppliedEvent]:
        """Every applied event of the position range, oldest commit first."""
        with self._read.cursor() as cursor:
            cursor.execute(
                "SELECT position, extract(epoch FROM occurred_at), extract(epoch FROM applied_at), path"
                " FROM applied_events WHERE position > %s AND position <= %s ORDER BY occurred_at, position",
                [after, until],
            )
            return [AppliedEvent(int(p), float(o), float(a), path) for p, o, a, path in cursor.fetchall()]

    def caught_up(self, after: int, cutoff: float) -> bool:
        """Whether every event committed after `after` and before `cutoff` (epoch seconds) is applied."""
        committed = self._one(
            self._write,
            "SELECT count(*) FROM events WHERE position > %s AND occurred_at < to_timestamp(%s)",
            [after, cutoff],
        )
        applied = self._one(
            self._read,
            "SELECT count(*) FROM applied_events WHERE position > %s AND occurred_at < to_timestamp(%s)",
            [after, cutoff],
        )
        return applied >= committed

    def round_trip_ms(self, samples: int = 100, pause: float = 0.005) -> float:
        """Median time of `SELECT 1` on the write database, in milliseconds, each after `pause` seconds idle:
        back to back both processes stay on a core, whereas every stage of the pipeline wakes one that
        waited, and on a virtual machine that wake-up is most of the round trip."""
        times = []
        with self._write.cursor() as cursor:
            for _ in range(samples):
                time.sleep(pause)
                began = time.perf_counter()
                cursor.execute("SELECT 1")
                cursor.fetchone()
                times.append(time.perf_counter() - began)
        return round(statistics.median(times) * 1000, 3)

    def postmaster(self, side: str) -> int | None:
        """The cluster's postmaster (the parent of this connection's backend), for the CPU meter."""
        connection = self._write if side == "write" else self._read
        return _parent_of(self._one(connection, "SELECT pg_backend_pid()"))

    def replication_pids(self, subscription: str) -> tuple[int | None, int | None]:
        """The run's own subscription's walsender (write cluster) and apply worker (read cluster)."""
        walsender = self._one(
            self._write,
            "SELECT max(pid) FROM pg_stat_replication WHERE application_name = %s",
            [subscription],
        )
        apply_worker = self._one(
            self._read,
            "SELECT max(pid) FROM pg_stat_subscription WHERE subname = %s AND relid IS NULL",
            [subscription],
        )
        return walsender, apply_worker

    def dead_lettered(self) -> int:
        return self._one(self._read, "SELECT count(*) FROM dead_letters")

    def server_versions(self) -> dict[str, str]:
        return {
            "postgresql": self._one(self._write, "SHOW server_version"),
        }

    @staticmethod
    def _one(connection, sql: str, params: list | None = None):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
            return row[0] if row else None


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # a server on another host: its processes are not ours to count
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _float(value) -> float | None:
    return None if value is None else float(value)
