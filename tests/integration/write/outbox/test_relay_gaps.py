"""Positions commit out of order: the relay's high-water mark and its gaps, against the real write database
and broker (write_service/outbox/store.py says why a gap may be forgotten once its recording transaction is
older than every running one)."""

from __future__ import annotations

import time
from collections.abc import Callable

from cqrs_common.messaging import Consumer
from devkit.polling import eventually
from tests.integration.write.outbox.conftest import Outbox, per_account, receive_events
from write_service.outbox.relay import Relay
from write_service.outbox.store import outbox_progress_ensure

POLL = 0.2  # the relay's idle wait: a drain at least this often, so gaps are reviewed without a commit


def test_a_lower_position_committed_after_a_higher_one_was_published_is_published_then(
    outbox: Outbox, consumer: Consumer, start_relay: Callable[..., Relay]
) -> None:
    held = outbox.held()
    try:
        [late] = held.append(1)  # position taken, not committed
        start_relay(poll_interval=POLL)
        [early] = outbox.append(1)
        assert late.position < early.position

        [event] = receive_events(consumer, 1)
        assert event.event_id == early.event_id
        eventually(lambda: outbox.gaps() == [late.position], timeout=10, what="the gap to be recorded")
        assert outbox.mark() == early.position  # past the gap: it is not waited for
        assert outbox.unpublished() == 0  # the late event is not committed: nothing to publish yet
        time.sleep(5 * POLL)  # drains that review the gap while its transaction still runs
        assert outbox.gaps() == [late.position]
        assert consumer.receive(max_count=10, timeout=0.3) == []

        held.connection.commit()
    finally:
        held.close()

    [event] = receive_events(consumer, 1, timeout=10)
    assert event.event_id == late.event_id and event.position == late.position
    eventually(lambda: outbox.gaps() == [], timeout=10, what="the filled gap to be deleted")
    assert outbox.unpublished() == 0
    assert outbox.mark() == early.position
    assert consumer.receive(max_count=10, timeout=0.5) == []  # each event published once


def test_a_lower_position_whose_transaction_took_its_id_after_the_higher_ones_is_published_too(
    outbox: Outbox, consumer: Consumer, start_relay: Callable[..., Relay]
) -> None:
    """The interleaving that makes a read's pg_snapshot_xmax no bound: the transaction holding the lower
    position took its id after the one that commits the higher position, and is still running."""
    higher, lower = outbox.held(), outbox.held()
    try:
        with higher.connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()")  # the older id
        [late] = lower.append(1)  # the younger id, the lower position
        [early] = higher.append(1)
        assert late.position < early.position
        higher.connection.commit()
        start_relay(poll_interval=POLL)

        assert [e.event_id for e in receive_events(consumer, 1)] == [early.event_id]
        eventually(lambda: outbox.gaps() == [late.position], timeout=10, what="the gap to be recorded")
        time.sleep(5 * POLL)
        assert outbox.gaps() == [late.position]  # its transaction runs: never forgotten meanwhile

        lower.connection.commit()
    finally:
        higher.close()
        lower.close()

    [event] = receive_events(consumer, 1, timeout=10)
    assert event.event_id == late.event_id
    eventually(lambda: outbox.gaps() == [], timeout=10, what="the filled gap to be deleted")
    assert consumer.receive(max_count=10, timeout=0.5) == []


def test_a_gap_is_forgotten_once_its_transaction_aborted(
    outbox: Outbox, consumer: Consumer, start_relay: Callable[..., Relay]
) -> None:
    held = outbox.held()
    try:
        [aborted] = held.append(1)
        start_relay(poll_interval=POLL)
        [committed] = outbox.append(1)
        assert [e.event_id for e in receive_events(consumer, 1)] == [committed.event_id]
        eventually(lambda: outbox.gaps() == [aborted.position], timeout=10, what="the gap to be recorded")

        held.connection.rollback()
    finally:
        held.close()

    # No commit follows: the relay's poll reviews the gap, finds its transaction ended and the row absent.
    eventually(lambda: outbox.gaps() == [], timeout=20, what="the gap to be forgotten")
    assert outbox.mark() == committed.position
    assert outbox.unpublished() == 0
    assert consumer.receive(max_count=10, timeout=0.5) == []  # nothing was published for it


def test_positions_of_aborted_commands_between_committed_ones_are_never_published_nor_kept(
    outbox: Outbox, consumer: Consumer, start_relay: Callable[..., Relay]
) -> None:
    committed = []
    for _ in range(5):
        committed += outbox.append(3, accounts=3)
        aborted = outbox.held()
        try:
            aborted.append(2)
            aborted.connection.rollback()
        finally:
            aborted.close()
    committed += outbox.append(3, accounts=3)

    start_relay(batch_size=4, poll_interval=POLL)  # batches that end on both sides of the holes

    events = receive_events(consumer, len(committed))
    assert per_account(events) == per_account(committed)  # in order within each account's partition
    # The last batch is recorded after its confirm, so perhaps after the messages arrived.
    eventually(
        lambda: outbox.mark() == committed[-1].position and outbox.gaps() == [],
        timeout=20,
        what="the mark past the last event and no gap left",
    )
    assert outbox.unpublished() == 0
    assert consumer.receive(max_count=10, timeout=0.5) == []


def test_emptying_the_events_empties_the_outbox(outbox: Outbox) -> None:
    held = outbox.held()
    try:
        held.append(1)
        held.connection.rollback()
    finally:
        held.close()
    outbox.append(3)
    with outbox.connection.cursor() as cursor:
        cursor.execute("INSERT INTO outbox_gaps (position, recorded_xid) VALUES (1, pg_current_xact_id())")
        cursor.execute("SELECT last_value FROM events_position_seq")
        [last] = cursor.fetchone()

    outbox.truncate()

    # Nothing handed out so far can appear any more: the mark is the last position, with no gap below it.
    assert outbox.mark() == last
    assert outbox.gaps() == []
    assert outbox.unpublished() == 0
    [appended] = outbox.append(1)
    assert appended.position > outbox.mark() and outbox.unpublished() == 1


def test_a_lost_progress_row_starts_again_just_below_the_first_event(
    outbox: Outbox, consumer: Consumer, start_relay: Callable[..., Relay]
) -> None:
    appended = outbox.append(3)
    with outbox.connection.cursor() as cursor:
        cursor.execute("DELETE FROM outbox_progress")
    assert outbox.unpublished() == 3  # no mark: everything in `events` is still to publish

    outbox_progress_ensure(outbox.connection)

    # Not 0: every position below the first event would be a hole to record.
    assert outbox.mark() == appended[0].position - 1
    start_relay(poll_interval=POLL)
    assert [e.event_id for e in receive_events(consumer, 3)] == [a.event_id for a in appended]
    eventually(lambda: outbox.mark() == appended[-1].position, timeout=10, what="the mark past them")
    assert outbox.gaps() == []
