"""How fast the relay drains a backlog, and how much WAL publishing it writes (prints numbers; run with
-m bench)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from cqrs_common.messaging import Consumer
from devkit.polling import eventually
from tests.integration.write.outbox.conftest import Outbox
from write_service.outbox.relay import Relay

BACKLOG = 20_000


@pytest.mark.bench
@pytest.mark.parametrize("batch_size", [500, 1000])
def test_backlog_drain_rate(
    outbox: Outbox, consumer: Consumer, start_relay: Callable[..., Relay], batch_size: int
) -> None:
    outbox.append(BACKLOG, accounts=100)
    wal_before = outbox.wal_position()

    started = time.perf_counter()
    start_relay(batch_size=batch_size)
    eventually(lambda: outbox.unpublished() == 0, timeout=120, interval=0.01, what="the backlog to drain")
    elapsed = time.perf_counter() - started
    # WAL is the server's, not the relay's: whatever else runs on the cluster meanwhile counts too, so the
    # lowest of a few runs is the one to quote.
    wal_per_event = outbox.wal_bytes_since(wal_before) / BACKLOG

    rate = BACKLOG / elapsed
    print(
        f"\nrelay drained {BACKLOG} events in {elapsed:.2f} s: {rate:,.0f} events/s (batch {batch_size}),"
        f" {wal_per_event:,.1f} WAL bytes per event"
    )
    assert consumer.message_count() == 0  # the dead-letter queue: nothing refused on the way
    assert consumer.purge() == 0
