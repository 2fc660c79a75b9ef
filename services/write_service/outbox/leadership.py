"""One relay publishes at a time: the leader holds a session-level advisory lock on its own session.

Any number of relays may run; the others are hot standbys that retry the lock every second. When the
leader's session ends (the process exits or is killed), PostgreSQL releases the lock and a standby takes over
within a second; a leader that falls silent (a partition, a power loss) loses it within about
RELAY_LEADERSHIP_TIMEOUT_SECONDS, when the server's TCP timeouts on its session end it (session.py). Two
relays publishing at once would be safe (consumers deduplicate) but wasteful, and would interleave the order
of events.
"""

from __future__ import annotations

from write_service.outbox.session import Session

# Advisory locks are per database, so every database (dev, test, ...) has its own leader.
RELAY_LOCK_KEY = 0x637172735F72656C  # "cqrs_rel"


def leadership_try_acquire(session: Session) -> bool:
    with session.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_KEY,))
        return bool(cursor.fetchone()[0])


def leadership_holder(session: Session) -> int | None:
    """The backend pid of the session holding the lock, or None; for the standby's log line."""
    with session.cursor() as cursor:
        cursor.execute(
            """
            SELECT pid FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND database = (
                   SELECT oid FROM pg_database WHERE datname = current_database())
               AND ((classid::bigint << 32) | objid::bigint) = %s
            """,
            (RELAY_LOCK_KEY,),
        )
        row = cursor.fetchone()
        return None if row is None else row[0]
