"""The subscription's state row: created on the first start, and where a restart takes up again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from read_service.reporting.models import CATCHING_UP, LIVE


@dataclass(frozen=True, slots=True)
class State:
    subscription: str
    phase: str
    replica_seq: int
    bound_at: datetime

    @property
    def catching_up(self) -> bool:
        return self.phase == CATCHING_UP


def state_start(subscription: str, *, queue_was_new: bool) -> State:
    """The state a (re)started subscriber goes on from, its queue declared and bound just now.

    The first start catches up from the beginning of the log. A restart goes on where it was, except when
    its queue had to be created again (deleted by an operator, a broker that lost its definitions): events
    published while it was missing are in no queue, so the subscriber catches up again from its cursor (what
    it counted since is skipped as already counted). `bound_at` moves to now whenever the queue is new or the
    subscriber starts from nothing.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO reporting_subscriptions (subscription, phase, replica_seq, bound_at, history_events,
                                                 live_events, live_duplicates, updated_at)
            VALUES (%s, %s, 0, clock_timestamp(), 0, 0, 0, clock_timestamp())
            ON CONFLICT (subscription) DO UPDATE SET
                phase = CASE WHEN %s THEN %s ELSE reporting_subscriptions.phase END,
                bound_at = CASE WHEN %s THEN clock_timestamp() ELSE reporting_subscriptions.bound_at END,
                updated_at = clock_timestamp()
            RETURNING phase, replica_seq, bound_at
            """,
            [subscription, CATCHING_UP, queue_was_new, CATCHING_UP, queue_was_new],
        )
        phase, replica_seq, bound_at = cursor.fetchone()
    return State(subscription, phase, replica_seq, bound_at)


def state_switch_to_live(subscription: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE reporting_subscriptions SET phase = %s, switched_at = clock_timestamp(),"
            " updated_at = clock_timestamp() WHERE subscription = %s",
            [LIVE, subscription],
        )
