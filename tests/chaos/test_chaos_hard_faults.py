"""Faults nothing announces: a leader relay cut off without a FIN or an RST. Under the same steady stream
of commands as test_chaos.py, and checked the same way: the read side equals the fold of the write side's
events, nothing applied twice.

One system serves the scenarios, in this order; each heals what it broke before the next.
"""

from __future__ import annotations

import functools
import time
from uuid import UUID

import pytest

from tests.chaos.harness import ChaosWriteDatabase, Scenario, Traffic, check_read_side, read_rows
from tests.e2e.conftest import System
from tests.support import system_processes
from tests.support.network_cut import connection_cut, session_client_port
from tests.support.processes import ServiceProcess, eventually, free_port

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

STEADY_SECONDS = 2.0
TAKEOVER_BOUND_SECONDS = 30.0  # a standby leads this soon after the leader's connection went silent
RELAY_DATABASE_TIMEOUT_SECONDS = 20.0  # the relay's default: the cut-off relay gives up its session by then


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


def _session_ended(database_url: str, backend_pid: int) -> bool:
    return not read_rows(database_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend_pid,))
