"""The projector's row in `projector_state`: which path is active and when the projector last spoke."""

from __future__ import annotations

from django.db import connection


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
