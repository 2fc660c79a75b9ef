"""What a confirmed batch lets the relay record: how far the mark moves and which positions become gaps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from cqrs_common.events import EventEnvelope
from write_service.outbox.store import Batch


def _events(*positions: int) -> list[EventEnvelope]:
    return [
        EventEnvelope(
            event_id=uuid.uuid4(),
            type="MoneyDeposited",
            aggregate_id=uuid.uuid4(),
            aggregate_version=1,
            position=position,
            occurred_at=datetime.now(UTC),
        )
        for position in positions
    ]


def test_a_contiguous_batch_moves_the_mark_to_its_last_event_and_leaves_no_hole() -> None:
    batch = Batch(events=_events(11, 12, 13), after=10)
    assert batch.through == 13
    assert batch.holes() == []


def test_positions_the_read_did_not_find_are_holes_in_runs() -> None:
    batch = Batch(events=_events(12, 13, 17, 18, 20), after=10)
    assert batch.through == 20
    assert batch.holes() == [(11, 11), (14, 16), (19, 19)]


def test_events_of_gaps_neither_move_the_mark_nor_count_as_found() -> None:
    batch = Batch(events=_events(4, 7, 12), after=10, gap_positions=frozenset({4, 7}))
    assert batch.through == 12
    assert batch.holes() == [(11, 11)]


def test_a_batch_of_gaps_alone_leaves_the_mark_where_it_was() -> None:
    batch = Batch(events=_events(4, 7), after=10, gap_positions=frozenset({4, 7}))
    assert batch.through == 10
    assert batch.holes() == []
