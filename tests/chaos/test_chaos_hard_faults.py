"""Faults nothing announces: a leader relay cut off without a FIN or an RST, a broker that blocks publishers
(a memory alarm), the write database killed outright. Under the same steady stream of commands as
test_chaos.py, and checked the same way: the read side equals the fold of the write side's events, nothing
applied twice, nothing a client was told is committed lost.

One system serves the three scenarios, in this order; each heals what it broke before the next.
"""

from __future__ import annotations

import functools
import time
from uuid import UUID

import pytest
import requests

from devkit import system_processes
from devkit.polling import eventually
from devkit.private_rabbitmq import PrivateRabbitMQ
from devkit.processes import ServiceProcess, free_port
from tests.chaos.harness import (
    ChaosWriteDatabase,
    Scenario,
    Traffic,
    caught_up,
    check_read_side,
    read_rows,
)
from tests.e2e.conftest import System
from tests.support.network_cut import connection_cut, session_client_port

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

STEADY_SECONDS = 2.0
TAKEOVER_BOUND_SECONDS = 30.0  # a standby leads this soon after the leader's connection went silent
RELAY_DATABASE_TIMEOUT_SECONDS = 20.0  # the relay's default: the cut-off relay gives up its session by then
ALARM_SECONDS = 12.0
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 4  # shorter than the alarm: the relay's connection is closed under it
DATABASE_DOWN_SECONDS = 5.0
STOP_BOUND_SECONDS = 5.0  # a relay told to stop while blocked: its wait looks at the request 5 times a second


def _relay(system: System, name: str, env: dict[str, str] | None = None) -> ServiceProcess:
    """Another relay process of the system (a standby while one leads), stopped with the system."""
    relay = system_processes.relay(
        name, system.backends, free_port(), {"RELAY_MAX_BACKOFF_SECONDS": "1", **(env or {})}
    )
    system.processes[name] = relay
    return relay


def _replace_relay(system: System, relay: ServiceProcess) -> None:
    """Makes `relay` the system's relay, stopping the one it had, so later scenarios find one relay."""
    old, system.processes["relay"] = system.processes["relay"], system.processes.pop(relay.name)
    assert old.terminate() == 0, old.output()


def test_a_leader_cut_off_without_closing_loses_the_leadership_to_the_standby(
    chaos_system: System, accounts: list[UUID], chaos_write_db: ChaosWriteDatabase
) -> None:
    system, scenario = chaos_system, Scenario("leader relay cut off (no FIN, no RST)", chaos_system)
    leader = system.processes["relay"]
    leader_pid = leader.logged("relay_leadership_acquired")[-1]["backend_pid"]
    standby = _relay(system, "relay-standby")
    standby.wait_for_log("relay_standing_by", timeout=30, leader_backend_pid=leader_pid)
    port = session_client_port(chaos_write_db.url, leader_pid)
    with Traffic(system, accounts) as traffic:
        time.sleep(STEADY_SECONDS)
        try:
            with connection_cut(port, chaos_write_db.server.port):
                cut = time.monotonic()
                standby.wait_for_log("relay_leadership_acquired", timeout=TAKEOVER_BOUND_SECONDS)
                scenario.note("standby leading after the cut", time.monotonic() - cut)
                # The server ended the silent session: that released the lock (the backend's row in
                # pg_stat_activity goes a moment later, as the backend finishes exiting).
                ended = functools.partial(_session_ended, chaos_write_db.url, leader_pid)
                eventually(ended, timeout=10, what="the silent session to end")
                # The cut-off relay notices by itself, gives its session up, stands by behind the new leader.
                leader.wait_for_log("database_connection_failed", timeout=RELAY_DATABASE_TIMEOUT_SECONDS + 10)
                scenario.note("cut-off relay gave up its session after", time.monotonic() - cut)
                leader.wait_for_log("relay_standing_by", timeout=15)
        finally:  # a session the server kept (no bound) would hold the leadership for the next scenarios
            chaos_write_db.server.sql(chaos_write_db.name, f"SELECT pg_terminate_backend({leader_pid})")
        time.sleep(STEADY_SECONDS)
    assert leader.running and standby.running
    eventually(lambda: system.unpublished() == 0, timeout=30, what="the outbox to drain")
    _replace_relay(system, standby)
    check_read_side(system, scenario, traffic)


def test_a_memory_alarm_blocks_the_relay_which_loses_nothing_and_resumes(
    chaos_system: System, accounts: list[UUID], private_broker: PrivateRabbitMQ
) -> None:
    system, scenario = chaos_system, Scenario(f"RabbitMQ memory alarm {ALARM_SECONDS:.0f} s", chaos_system)
    # A blocked-connection timeout shorter than the alarm: the relay's connection is closed while blocked
    # and opened again, blocked again, ... and the relay goes on (no hang) until the alarm clears.
    timeout = f"?blocked_connection_timeout={BLOCKED_CONNECTION_TIMEOUT_SECONDS}"
    relay = _relay(system, "relay-alarm", {"RABBITMQ_URL": private_broker.url + timeout})
    _replace_relay(system, relay)
    relay.wait_for_log("relay_leadership_acquired", timeout=30)
    with Traffic(system, accounts) as traffic:
        time.sleep(STEADY_SECONDS)
        raised = time.monotonic()  # rabbitmqctl takes about a second to return
        private_broker.set_memory_high_watermark(0)
        try:
            relay.wait_for_log("broker_blocked", timeout=10)
            scenario.note("relay reported blocked after", time.monotonic() - raised)
            assert system.metric("relay", "cqrs_broker_blocked") == 1
            # Blocked, not hung: the relay gives the blocked connection up, connects again, and keeps
            # counting the outbox.
            relay.wait_for_log("broker_connection_failed", timeout=BLOCKED_CONNECTION_TIMEOUT_SECONDS + 15)
            time.sleep(max(0.0, ALARM_SECONDS - (time.monotonic() - raised)))
            assert relay.running
            assert system.metric("relay", "cqrs_broker_blocked") == 1
            assert system.metric("relay", "cqrs_outbox_backlog") > 0
            assert system.unpublished() > 0
        finally:
            private_broker.set_memory_high_watermark(0.4)
        cleared = time.monotonic()
        relay.wait_for_log("broker_unblocked", timeout=30)
        assert system.metric("relay", "cqrs_broker_blocked") == 0
        scenario.note("outbox drained after the alarm cleared", _drained(system, cleared))
        time.sleep(STEADY_SECONDS)
    assert len(relay.logged("broker_blocked")) == 1  # one log line per episode, not one per reconnect
    check_read_side(system, scenario, traffic)


def test_a_relay_blocked_by_a_memory_alarm_stops_at_once_when_told(
    chaos_system: System, accounts: list[UUID], private_broker: PrivateRabbitMQ
) -> None:
    """SIGTERM while a batch waits for confirms that a blocked broker holds back: the relay stops within
    STOP_BOUND_SECONDS, not after its confirm timeout (30 s), and the unconfirmed batch is published by the
    relay that follows."""
    system, scenario = chaos_system, Scenario("SIGTERM to a relay blocked by an alarm", chaos_system)
    relay = _relay(system, "relay-blocked-stop", {"RABBITMQ_URL": private_broker.url})
    _replace_relay(system, relay)
    relay.wait_for_log("relay_leadership_acquired", timeout=30)
    with Traffic(system, accounts) as traffic:
        time.sleep(STEADY_SECONDS)
        private_broker.set_memory_high_watermark(0)
        try:
            relay.wait_for_log("broker_blocked", timeout=10)
            eventually(lambda: system.unpublished() > 0, timeout=10, what="a batch held back by the alarm")
            told = time.monotonic()
            assert relay.terminate(timeout=STOP_BOUND_SECONDS * 4) == 0, relay.output()
            stopped_in = time.monotonic() - told
            scenario.note("relay stopped after SIGTERM in", stopped_in)
            assert stopped_in < STOP_BOUND_SECONDS
        finally:
            private_broker.set_memory_high_watermark(0.4)
        follower = _relay(system, "relay-after-blocked-stop", {"RABBITMQ_URL": private_broker.url})
        system.processes["relay"] = system.processes.pop(follower.name)
        follower.wait_for_log("relay_leadership_acquired", timeout=30)
        time.sleep(STEADY_SECONDS)
    check_read_side(system, scenario, traffic)


def test_the_write_database_killed_mid_load_loses_nothing_committed(
    chaos_system: System, accounts: list[UUID], chaos_write_db: ChaosWriteDatabase
) -> None:
    system, scenario = chaos_system, Scenario("write DB killed (immediate)", chaos_system)
    relay = system.processes["relay"]
    leading = len(relay.logged("relay_leadership_acquired"))
    # While the database is down a command gets a clean 503 (nothing written, retry later), never a 500.
    with Traffic(system, accounts, allowed=Traffic.ALLOWED | {503}) as traffic:
        time.sleep(STEADY_SECONDS)
        chaos_write_db.server.stop(mode="immediate")
        killed = time.monotonic()
        refused_before = traffic.statuses.count(503)
        eventually(lambda: traffic.statuses.count(503) > refused_before, timeout=10, what="503 answers")
        time.sleep(max(0.0, DATABASE_DOWN_SECONDS - (time.monotonic() - killed)))
        healing = time.monotonic()
        chaos_write_db.server.start()
        scenario.note("database recovered and up after", time.monotonic() - healing)
        eventually(lambda: _command_succeeds(system, accounts[0]), timeout=30, what="a command to succeed")
        scenario.note("commands succeeding after start", time.monotonic() - healing)
        eventually(
            lambda: len(relay.logged("relay_leadership_acquired")) > leading, timeout=30, what="the relay"
        )
        scenario.note("relay leading after start", time.monotonic() - healing)
        scenario.note("caught up after start", caught_up(system, healing))
        time.sleep(STEADY_SECONDS)
    scenario.note("commands refused with 503", str(traffic.statuses.count(503)))
    assert relay.logged("database_connection_failed")
    eventually(lambda: system.unpublished() == 0, timeout=30, what="the outbox to drain")
    check_read_side(system, scenario, traffic)


def _session_ended(database_url: str, backend_pid: int) -> bool:
    return not read_rows(database_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend_pid,))


def _drained(system: System, since: float) -> float:
    eventually(lambda: system.unpublished() == 0, timeout=60, what="the outbox to drain")
    return time.monotonic() - since


def _command_succeeds(system: System, account: UUID) -> bool:
    with requests.Session() as session:
        response = system.command(session, f"/api/accounts/{account}/deposit", {"amount": "0.01"})
    return response.status_code == 200
