"""The projector's row in `projector_state`: which path is active and when the projector last spoke; and the
active path itself, shared by the projector's two threads."""

from __future__ import annotations

import threading

from django.db import connection

from cqrs_common import metrics
from read_service.projections.apply import BROKER


def projector_heartbeat(*, mode: str) -> None:
    """Records that a projector is alive and which path feeds the projection (its own short transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO projector_state AS s (id, mode, heartbeat_at, events_applied)
            VALUES (1, %s, clock_timestamp(), 0)
            ON CONFLICT (id) DO UPDATE SET mode = EXCLUDED.mode, heartbeat_at = EXCLUDED.heartbeat_at
            """,
            [mode],
        )


class ActivePath:
    """`broker` while the projector holds a broker connection, `replication` while it has none.

    The consuming loop sets it; the replication fallback reads it (no grace period while the broker is away)
    and is woken at once by a change, which it records in `projector_state` for /api/projection.
    """

    def __init__(self) -> None:
        self._current = BROKER
        self._changed = threading.Event()
        metrics.set_projection_mode(BROKER)

    @property
    def current(self) -> str:
        return self._current

    def use(self, path: str) -> bool:
        """Switches to `path`; returns whether that was a change."""
        if path == self._current:
            return False
        self._current = path
        metrics.set_projection_mode(path)
        self._changed.set()
        return True

    def wait_for_change(self, timeout: float) -> bool:
        """Sleeps up to `timeout`, returning early (True) when the path changed since the last call."""
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed
