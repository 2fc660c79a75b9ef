"""The relay's and the projector's health in containers: Compose's health checks read /readyz, which comes
from the loops' heartbeats (CONTRACT.md, "Health of the relay and the projector"). With the shipped settings
(lock timeout 5 s, readiness 10 s, liveness 60 s), a lock held on a table the projector writes makes its
statements fail and retry: the container turns unhealthy while live, and healthy again once released."""

from __future__ import annotations

import time

import psycopg2
import requests

from devkit.polling import eventually
from tests.compose.conftest import ComposeSystem
from tests.support.worker_health import probe


def test_the_relay_and_the_projector_are_ready_from_their_loops(system: ComposeSystem) -> None:
    code, relay = probe(f"{system.relay_url}/readyz")
    assert (code, relay["status"], relay["loops"]["relay"]["state"]) == (200, "ok", "leader")
    code, projector = probe(f"{system.projector_url}/readyz")
    assert (code, projector["status"]) == (200, "ok")
    assert set(projector["loops"]) == {"consumer", "replication_fallback"}
    for url in (system.relay_url, system.projector_url):
        assert probe(f"{url}/healthz")[0] == 200
    for service in ("relay", "projector"):
        assert system.inspect(service, "{{.State.Health.Status}}") == "healthy"


def test_a_projector_held_by_a_lock_turns_unhealthy_and_back(
    system: ComposeSystem, http: requests.Session
) -> None:
    account = system.open_account(http, "held-by-a-lock", deposit="10.00")
    system.assert_read_side_exact(http)
    assert system.inspect("projector", "{{.State.Health.Status}}") == "healthy"

    session = psycopg2.connect(system.read_database_url)
    try:
        with session.cursor() as cursor:
            cursor.execute("LOCK TABLE applied_events IN ACCESS EXCLUSIVE MODE")
        held_at = time.monotonic()
        # Commands keep coming; the projector's batch waits for the lock, fails after 5 s, and is retried.
        for _ in range(3):
            deposited = system.command(http, f"/api/accounts/{account}/deposit", {"amount": "1.00"})
            assert deposited.status_code == 200, deposited.text
        # Both loops meet the lock (the fallback's round too): each fails, says so and retries.
        eventually(
            lambda: (
                (answer := probe(f"{system.projector_url}/readyz"))[0] == 503
                and answer[1]["loops"]["consumer"]["state"] == "database_unavailable"
            ),
            timeout=30,
            what="the projector unready, its consumer retrying the batch",
        )
        eventually(
            lambda: system.inspect("projector", "{{.State.Health.Status}}") == "unhealthy",
            timeout=120,
            interval=2,
            what="the projector container unhealthy",
        )
        unhealthy_after = time.monotonic() - held_at
        # Failing and retrying is not stuck: Kubernetes would not restart it.
        assert probe(f"{system.projector_url}/healthz")[0] == 200
        assert system.inspect("projector", "{{.State.Status}}") == "running"
    finally:
        session.rollback()
        session.close()

    released_at = time.monotonic()
    eventually(
        lambda: system.inspect("projector", "{{.State.Health.Status}}") == "healthy",
        timeout=60,
        interval=1,
        what="the projector container healthy again",
    )
    healthy_after = time.monotonic() - released_at
    print(f"unhealthy after {unhealthy_after:.0f} s of the lock, healthy {healthy_after:.0f} s after release")
    system.assert_read_side_exact(http)
