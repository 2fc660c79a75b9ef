"""Failures injected under a steady stream of commands; after each, the read side equals the fold of the write
side's events, nothing was applied twice, and the numbers (lag per path, recovery, convergence) are printed.

One system serves every scenario, in this order; each scenario heals what it broke before the next.
"""

from __future__ import annotations

import json
import time
import uuid
from uuid import UUID

import pytest

from cqrs_common.messaging import DEAD_LETTER_QUEUE, Consumer, Delivery
from devkit.polling import eventually
from devkit.private_rabbitmq import PrivateRabbitMQ
from tests.chaos.harness import (
    ChaosReadDatabase,
    Scenario,
    Traffic,
    caught_up,
    check_read_side,
    duplicates,
    projection,
    read_rows,
)
from tests.e2e.conftest import System

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

BROKER_OUTAGE_SECONDS = 30.0
STEADY_SECONDS = 2.0
REPLICATION_LAG_BOUND_SECONDS = 3.0  # broker down: the replicated log alone keeps the read side this close


def _mode_is(system: System, mode: str) -> bool:
    return projection(system)["mode"] == mode


def test_broker_stopped_for_30_seconds(
    chaos_system: System, accounts: list[UUID], private_broker: PrivateRabbitMQ
) -> None:
    system, scenario = chaos_system, Scenario("broker stopped 30 s", chaos_system)
    with Traffic(system, accounts) as traffic:
        time.sleep(STEADY_SECONDS)
        private_broker.stop()
        stopped = time.monotonic()
        eventually(lambda: _mode_is(system, "replication"), timeout=10, what="replication mode")
        scenario.note("switched to replication after", time.monotonic() - stopped)
        time.sleep(max(0.0, BROKER_OUTAGE_SECONDS - (time.monotonic() - stopped)))
        healing = time.monotonic()
        private_broker.start()
        scenario.note("broker boot", time.monotonic() - healing)
        eventually(lambda: _mode_is(system, "broker"), timeout=30, what="broker mode again")
        scenario.note("back on the broker path after boot", time.monotonic() - healing)
        time.sleep(STEADY_SECONDS)
    assert system.metric("projector", "cqrs_projection_mode", path="broker") == 1
    replicated = read_rows(
        system.read_database_url,
        "SELECT max(extract(epoch FROM applied_at - occurred_at)) FROM applied_events"
        " WHERE path = 'replication' AND occurred_at >= %s",
        (traffic.started_at,),
    )[0][0]
    assert replicated is not None, "nothing was applied from the replicated log"
    assert float(replicated) < REPLICATION_LAG_BOUND_SECONDS
    # The relay publishes the outage's events once the broker is back: copies of what replication applied.
    eventually(lambda: system.unpublished() == 0, timeout=30, what="the outbox to drain")
    eventually(lambda: duplicates(system) > scenario.duplicates_before, timeout=30, what="copies ignored")
    check_read_side(system, scenario, traffic)


def test_projector_killed(chaos_system: System, accounts: list[UUID]) -> None:
    system, scenario = chaos_system, Scenario("projector kill -9 (5 s down)", chaos_system)
    with Traffic(system, accounts) as traffic:
        time.sleep(STEADY_SECONDS)
        system.processes["projector"].kill()
        time.sleep(5)
        healing = time.monotonic()
        system.start_projector()
        scenario.note("projector consuming after start", time.monotonic() - healing)
        scenario.note("caught up after start", caught_up(system, healing))
        time.sleep(STEADY_SECONDS)
    check_read_side(system, scenario, traffic)


def test_relay_killed(chaos_system: System, accounts: list[UUID]) -> None:
    system, scenario = chaos_system, Scenario("relay kill -9 (6 s down)", chaos_system)
    with Traffic(system, accounts) as traffic:
        time.sleep(STEADY_SECONDS)
        system.processes["relay"].kill()
        time.sleep(6)  # longer than the grace period: the replicated log fills what the broker does not get
        scenario.note("read side behind by at most", _behind(system))
        healing = time.monotonic()
        system.start_relay()
        scenario.note("relay leading after start", time.monotonic() - healing)
        scenario.note("outbox drained after start", _drained(system, healing))
        time.sleep(STEADY_SECONDS)
    filled = read_rows(
        system.read_database_url,
        "SELECT count(*) FROM applied_events WHERE path = 'replication' AND occurred_at >= %s",
        (traffic.started_at,),
    )[0][0]
    assert filled > 0, "no event was filled from the replicated log while the relay was down"
    scenario.note("filled from replication", str(filled))
    # The new relay published them all later: each came to the projector a second time and was ignored.
    eventually(lambda: duplicates(system) - scenario.duplicates_before >= filled, timeout=30, what="copies")
    check_read_side(system, scenario, traffic)


def test_read_database_restarted(
    chaos_system: System, accounts: list[UUID], chaos_read_db: ChaosReadDatabase
) -> None:
    system, scenario = chaos_system, Scenario("read DB restarted", chaos_system)
    with Traffic(system, accounts) as traffic:
        time.sleep(STEADY_SECONDS)
        healing = time.monotonic()
        chaos_read_db.server.restart()
        scenario.note("restart took", time.monotonic() - healing)
        scenario.note("caught up after restart", caught_up(system, healing))
        time.sleep(STEADY_SECONDS * 2)
    check_read_side(system, scenario, traffic)


def test_subscription_disabled_then_enabled(
    chaos_system: System, accounts: list[UUID], chaos_read_db: ChaosReadDatabase
) -> None:
    system, scenario = chaos_system, Scenario("subscription disabled 6 s", chaos_system)
    slot = chaos_read_db.subscription
    with Traffic(system, accounts) as traffic:
        time.sleep(STEADY_SECONDS)
        chaos_read_db.sql(f'ALTER SUBSCRIPTION "{chaos_read_db.subscription}" DISABLE')
        assert projection(system)["replication"]["status"] == "disabled"
        retained = system.metric("relay", "cqrs_replication_slot_retained_bytes", slot=slot)
        time.sleep(6)
        # The slot keeps the WAL the subscriber has not confirmed (bounded by max_slot_wal_keep_size).
        assert system.metric("relay", "cqrs_replication_slot_retained_bytes", slot=slot) > retained
        chaos_read_db.sql(f'ALTER SUBSCRIPTION "{chaos_read_db.subscription}" ENABLE')
        enabled = time.monotonic()
        eventually(
            lambda: projection(system)["replication"]["status"] == "streaming",
            timeout=20,
            what="streaming again",
        )
        scenario.note("streaming again after", time.monotonic() - enabled)
        time.sleep(STEADY_SECONDS)
    assert system.processes["projector"].logged("replication_stream_stopped", status="disabled")
    check_read_side(system, scenario, traffic)
    eventually(lambda: _replica_complete(system), timeout=30, what="the replica to catch up")


def test_burst_of_poison_messages(
    chaos_system: System, accounts: list[UUID], private_broker: PrivateRabbitMQ
) -> None:
    system, scenario = chaos_system, Scenario("200 poison messages", chaos_system)
    bodies = [b"{not json", json.dumps({"type": "MoneyInvented", "schema_version": 1}).encode(), b"[1, 2]"]
    with Consumer(private_broker.url, connection_name="chaos-poison") as broker:
        waiting = broker.message_count(DEAD_LETTER_QUEUE)
        with Traffic(system, accounts) as traffic:
            time.sleep(STEADY_SECONDS / 2)
            for i in range(200):
                broker.republish(
                    Delivery(
                        0, bodies[i % 3], "account.MoneyDeposited", "", False, message_id=str(uuid.uuid4())
                    )
                )
            time.sleep(STEADY_SECONDS)
        eventually(
            lambda: broker.message_count(DEAD_LETTER_QUEUE) == waiting + 200,
            timeout=30,
            what="200 dead letters",
        )
        broker.purge(DEAD_LETTER_QUEUE)
    reasons = dict(
        read_rows(system.read_database_url, "SELECT reason, count(*) FROM dead_letters GROUP BY reason")
    )
    assert sum(reasons.values()) >= 200 and "handler_failed" not in reasons, reasons
    check_read_side(system, scenario, traffic)


def test_a_row_written_into_the_replica_halts_the_stream_until_removed(
    chaos_system: System, accounts: list[UUID], chaos_read_db: ChaosReadDatabase
) -> None:
    """Nothing but the subscription may write the replica: a row planted there (here by the superuser, who
    alone can) collides with the next replicated insert and halts the stream. The broker path is unaffected;
    removing the row lets the stream resume where it stopped, losing nothing."""
    system, scenario = chaos_system, Scenario("conflicting replica row", chaos_system)
    (planted,) = read_rows(  # a position the write side will hand out a moment after the traffic starts
        system.write_database_url,
        "SELECT last_value + 40 FROM pg_sequences WHERE sequencename = "
        "(SELECT split_part(pg_get_serial_sequence('events', 'position'), '.', 2))",
    )[0]
    chaos_read_db.sql(
        "INSERT INTO events (position, event_id, aggregate_type, aggregate_id, aggregate_version,"
        " event_type, schema_version, data, occurred_at) VALUES"
        f" ({planted}, gen_random_uuid(), 'account', gen_random_uuid(), 1, 'AccountOpened', 1, '{{}}', now())"
    )
    errors = projection(system)["replication"]["apply_errors"]
    with Traffic(system, accounts) as traffic:
        eventually(
            lambda: projection(system)["replication"]["apply_errors"] > errors,
            timeout=20,
            what="the conflict",
        )
        halted = time.monotonic()
        assert projection(system)["mode"] == "broker"
        time.sleep(STEADY_SECONDS)
        chaos_read_db.sql(f"DELETE FROM events WHERE position = {planted} AND data = '{{}}'")
        eventually(lambda: _replica_complete(system), timeout=30, what="the stream to resume and catch up")
        scenario.note("stream halted for", time.monotonic() - halted)
        time.sleep(STEADY_SECONDS / 2)
    check_read_side(system, scenario, traffic)


def _behind(system: System) -> str:
    """How far behind the write side the read side is now, by the projection's own account."""
    return f"{projection(system)['lag_seconds']:.2f} s"


def _drained(system: System, since: float) -> float:
    eventually(lambda: system.unpublished() == 0, timeout=60, what="the outbox to drain")
    return time.monotonic() - since


def _replica_complete(system: System) -> bool:
    written = read_rows(system.write_database_url, "SELECT count(*), max(position) FROM events")[0]
    replicated = read_rows(system.read_database_url, "SELECT count(*), max(position) FROM events")[0]
    return written == replicated
