"""Which accounts wait on which versions: the events parked in `pending_events` and the holes before them.

A gap that does not close is what the replication fallback fills (from the replicated `events` table), and
what an operator looks at first (`python -m read_service projection_gaps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import connection


@dataclass(frozen=True, slots=True)
class Gap:
    account_id: UUID
    applied_version: int  # 0: not even AccountOpened is applied
    missing_versions: list[int]  # what must arrive before the parked events can be applied
    pending_versions: list[int]
    waiting_since: datetime

    def to_dict(self) -> dict:
        return {
            "account_id": str(self.account_id),
            "applied_version": self.applied_version,
            "missing_versions": self.missing_versions,
            "pending_versions": self.pending_versions,
            "waiting_since": self.waiting_since.isoformat(),
        }


def pending_gaps(limit: int = 1000) -> list[Gap]:
    """Accounts with parked events, longest waiting first."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT p.aggregate_id,
                   coalesce((SELECT max(a.version) FROM applied_events a
                              WHERE a.aggregate_id = p.aggregate_id), 0),
                   array_agg(p.version ORDER BY p.version),
                   min(p.received_at)
              FROM pending_events p
             GROUP BY p.aggregate_id
             ORDER BY min(p.received_at)
             LIMIT %s
            """,
            [limit],
        )
        rows = cursor.fetchall()
    return [
        Gap(
            account_id=UUID(str(account_id)),
            applied_version=applied,
            missing_versions=sorted(set(range(applied + 1, max(pending))) - set(pending)),
            pending_versions=list(pending),
            waiting_since=since,
        )
        for account_id, applied, pending, since in rows
    ]
