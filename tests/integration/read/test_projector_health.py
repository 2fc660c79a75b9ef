"""The projector's /readyz and /healthz come from its loops' heartbeats: a loop held by a lock turns the
process unready, then not live, and is ready again once the lock is released (CONTRACT.md, "Health of the
relay and the projector").

The real command, on this tier's database and broker; a session of the test takes the lock. Short bounds
through the environment. Two ways to be held: a lock timeout longer than the liveness bound (the loop is
stuck as if nothing bounded it: not live), and the default's kind, shorter than the readiness bound (the
statement fails, the loop says `database_unavailable` and retries: unready, but live all along).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from django.conf import settings as django_settings

from devkit.polling import eventually
from read_service.projections.models import AccountView
from tests.integration.read.conftest import AccountHistory, projector_command
from tests.support.worker_health import probe

READY_SECONDS = 2.0
LIVE_SECONDS = 6.0
MARGIN = 5.0  # a loaded machine: probes and beats run late
EARLY = 1.0  # a loop's last beat before the lock can be this old: an idle receive waits up to 1 s

pytestmark = pytest.mark.slow


def _version(history: AccountHistory) -> int:
    return (
        AccountView.objects.filter(account_id=history.account_id).values_list("version", flat=True).first()
        or 0
    )


@contextlib.contextmanager
def held_lock(table: str) -> Iterator[None]:
    """ACCESS EXCLUSIVE on `table` in a session of the test's own, until the block ends (a rollback)."""
    database = django_settings.DATABASES["default"]
    session = psycopg2.connect(
        dbname=database["NAME"],
        user=database["USER"],
        password=database["PASSWORD"],
        host=database["HOST"],
        port=database["PORT"] or None,
    )
    try:
        with session.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        session.rollback()
        session.close()


def _await(port: int, path: str, status: int, timeout: float) -> dict[str, Any]:
    def answered() -> dict[str, Any] | None:
        code, body = probe(f"http://127.0.0.1:{port}{path}")
        return body if code == status else None

    return eventually(answered, timeout=timeout, interval=0.1)


def test_a_projector_held_by_a_lock_turns_unready_then_not_live_and_recovers_when_released(
    broker_url: str, broker: Any, publish: Any, empty_replica: None
) -> None:
    # The lock timeout longer than the liveness bound: while the lock is held, the apply waits, unbounded.
    env = {
        "WORKER_READINESS_SECONDS": str(READY_SECONDS),
        "WORKER_LIVENESS_SECONDS": str(LIVE_SECONDS),
        "WORKER_LOCK_TIMEOUT_SECONDS": "120",
        "WORKER_STATEMENT_TIMEOUT_SECONDS": "120",
    }
    with projector_command(broker_url, env=env) as (process, port):
        ready = _await(port, "/readyz", 200, timeout=30)
        assert ready["status"] == "ok" and set(ready["loops"]) == {"consumer", "replication_fallback"}
        assert ready["loops"]["consumer"]["state"] == "consuming"
        alice = AccountHistory()
        publish(alice.opened())
        eventually(lambda: _version(alice) == 1, timeout=30)

        held_at = time.monotonic()
        with held_lock("applied_events"):
            publish(alice.deposited("1.00"))  # the apply reads applied_events: it waits for the lock
            unready = _await(port, "/readyz", 503, timeout=READY_SECONDS + MARGIN)
            unready_after = time.monotonic() - held_at
            assert unready["status"] == "unavailable"
            assert any(loop["late"] for loop in unready["loops"].values()), unready
            # Not ready is not dead yet: liveness has the longer bound.
            assert probe(f"http://127.0.0.1:{port}/healthz")[0] == 200
            stuck = _await(port, "/healthz", 503, timeout=LIVE_SECONDS + MARGIN)
            stuck_after = time.monotonic() - held_at
            assert stuck["status"] == "stuck" and any(loop["late"] for loop in stuck["loops"].values())
            # Both loops wait on the lock: the consumer's apply and the fallback's round.
            assert stuck["loops"]["consumer"]["seconds_since_beat"] > READY_SECONDS, stuck
            assert stuck["bound_seconds"] == LIVE_SECONDS
            assert process.poll() is None  # stuck, not crashed: a liveness probe is what ends it
            assert _version(alice) == 1
        print(f"unready after {unready_after:.1f} s, not live after {stuck_after:.1f} s")

        released_at = time.monotonic()
        _await(port, "/readyz", 200, timeout=MARGIN)
        assert probe(f"http://127.0.0.1:{port}/healthz")[0] == 200
        print(f"ready again {time.monotonic() - released_at:.1f} s after the release")
        eventually(lambda: _version(alice) == 2, timeout=10)
        assert READY_SECONDS - EARLY <= unready_after <= READY_SECONDS + MARGIN
        assert LIVE_SECONDS - EARLY <= stuck_after <= LIVE_SECONDS + MARGIN


def test_a_lock_timeout_fails_the_statement_and_the_loop_retries_unready_but_live(
    broker_url: str, broker: Any, publish: Any, empty_replica: None
) -> None:
    # The defaults' kind: the lock timeout below the readiness bound. Liveness above the longest gap between
    # two beats of a failing loop (the fallback's 10 s backoff plus a statement's timeout).
    live_seconds = 14.0
    env = {
        "WORKER_READINESS_SECONDS": "3",
        "WORKER_LIVENESS_SECONDS": str(live_seconds),
        "WORKER_LOCK_TIMEOUT_SECONDS": "1",
        "WORKER_STATEMENT_TIMEOUT_SECONDS": "2",
    }
    with projector_command(broker_url, env=env, capture=True) as (process, port):
        _await(port, "/readyz", 200, timeout=30)
        alice = AccountHistory()
        publish(alice.opened())
        eventually(lambda: _version(alice) == 1, timeout=30)

        with held_lock("applied_events"):
            publish(alice.deposited("1.00"))
            unready = _await(port, "/readyz", 503, timeout=10)
            assert unready["loops"]["consumer"]["state"] == "database_unavailable"
            held_until = time.monotonic() + live_seconds + 2
            while time.monotonic() < held_until:
                code, body = probe(f"http://127.0.0.1:{port}/healthz")
                assert code == 200, body  # it fails, logs and retries: never silent for long
                assert probe(f"http://127.0.0.1:{port}/readyz")[0] == 503
                time.sleep(0.5)

        _await(port, "/readyz", 200, timeout=10)
        eventually(lambda: _version(alice) == 2, timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    lines = [json.loads(line) for line in process.stdout.read().decode().splitlines() if line.startswith("{")]
    retries = [line for line in lines if line["event"] == "database_unavailable"]
    assert retries and all("lock timeout" in line["error"] for line in retries)
