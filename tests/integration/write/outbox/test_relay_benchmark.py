"""How fast the relay drains a backlog (prints numbers; run with -m bench)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from cqrs_common.messaging import Consumer
from devkit.polling import eventually
from tests.integration.write.outbox.conftest import Outbox
from write_service.outbox.relay import Relay

BACKLOG = 10_000


@pytest.mark.bench
@pytest.mark.parametrize("batch_size", [500, 1000])
def test_backlog_drain_rate(
    outbox: Outbox, consumer: Consumer, start_relay: Callable[..., Relay], batch_size: int
) -> None:
    outbox.append(BACKLOG, accounts=100)

    started = time.perf_counter()
    start_relay(batch_size=batch_size)
    eventually(lambda: outbox.unpublished() == 0, timeout=120, interval=0.01, what="the backlog to drain")
    elapsed = time.perf_counter() - started

    rate = BACKLOG / elapsed
    print(f"\nrelay drained {BACKLOG} events in {elapsed:.2f} s: {rate:,.0f} events/s (batch {batch_size})")
    assert consumer.message_count() == 0  # the dead-letter queue: nothing refused on the way
    assert consumer.purge() == 0
