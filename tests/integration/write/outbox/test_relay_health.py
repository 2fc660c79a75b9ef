"""The relay's /readyz and /healthz come from its loop's heartbeat (CONTRACT.md, "Health of the relay and the
projector"): the leader is ready, a standby is ready and says it stands by, a relay that cannot publish is
unready but live. `python -m write_service relay` processes on the test database and broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cqrs_common.messaging import Consumer
from devkit.polling import eventually
from devkit.processes import ServiceProcess, free_port
from tests.integration.write.outbox.conftest import Outbox, receive_events
from tests.support.worker_health import probe


def _started(start: Callable[..., ServiceProcess], name: str, **env: str) -> tuple[ServiceProcess, str]:
    port = free_port()
    return start(name, RELAY_METRICS_PORT=str(port), **env), f"http://127.0.0.1:{port}"


def _answers(
    url: str, status: int, body_status: str, state: str | None = None
) -> Callable[[], dict[str, Any] | None]:
    """The probe's answer once it has `status` and `body_status` (and the relay loop's `state`, if given:
    a relay that is still starting is unready too, with state `starting`)."""

    def check() -> dict[str, Any] | None:
        code, body = probe(url)
        if (code, body.get("status")) != (status, body_status):
            return None
        if state is not None and body.get("loops", {}).get("relay", {}).get("state") != state:
            return None
        return body

    return check


def test_the_leader_is_ready_and_a_standby_is_ready_as_a_standby(
    outbox: Outbox, consumer: Consumer, relay_processes: Callable[..., ServiceProcess]
) -> None:
    leader, leader_url = _started(relay_processes, "relay-a")
    leader.wait_for_log("relay_leadership_acquired")
    standby, standby_url = _started(relay_processes, "relay-b")
    standby.wait_for_log("relay_standing_by")

    ready = eventually(_answers(f"{leader_url}/readyz", 200, "ok"), timeout=20, what="the leader ready")
    assert ready["loops"]["relay"]["state"] == "leader"
    waiting = eventually(
        _answers(f"{standby_url}/readyz", 200, "standby"), timeout=20, what="the standby standing by"
    )
    assert waiting["loops"]["relay"]["state"] == "standby"
    assert probe(f"{leader_url}/healthz")[0] == probe(f"{standby_url}/healthz")[0] == 200

    assert leader.terminate() == 0
    standby.wait_for_log("relay_leadership_acquired", timeout=10)
    eventually(_answers(f"{standby_url}/readyz", 200, "ok"), timeout=20, what="the new leader ready")
    appended = outbox.append(5)
    assert [e.event_id for e in receive_events(consumer, 5)] == [a.event_id for a in appended]


def test_a_relay_that_cannot_reach_the_broker_is_unready_but_live(
    outbox: Outbox, relay_processes: Callable[..., ServiceProcess]
) -> None:
    # Nothing listens on that port: every publish attempt fails at once, and the relay retries.
    nowhere = f"amqp://write-service:write-service@127.0.0.1:{free_port()}/cqrs"
    relay, url = _started(relay_processes, "relay-no-broker", RABBITMQ_URL=nowhere)
    relay.wait_for_log("relay_leadership_acquired")
    outbox.append(3)
    eventually(
        _answers(f"{url}/readyz", 503, "unavailable", state="broker_unavailable"),
        timeout=20,
        what="the relay unready for want of the broker",
    )
    relay.wait_for_log("broker_connection_failed")
    assert probe(f"{url}/healthz")[0] == 200  # failing and retrying is not stuck


def test_a_lock_held_on_the_outbox_times_out_the_relays_statement_and_the_relay_retries(
    outbox: Outbox, relay_processes: Callable[..., ServiceProcess]
) -> None:
    """WORKER_LOCK_TIMEOUT_SECONDS on the relay's session: its statements fail instead of waiting, the loop
    says so (unready, `database_unavailable`) and starts over, live all along; released, it leads again."""
    relay, url = _started(relay_processes, "relay-locked-out", WORKER_LOCK_TIMEOUT_SECONDS="0.5")
    relay.wait_for_log("relay_leadership_acquired")
    eventually(_answers(f"{url}/readyz", 200, "ok"), timeout=20, what="the relay ready")
    blocker = outbox.connection
    blocker.autocommit = False
    try:
        with blocker.cursor() as cursor:
            cursor.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        timed_out = relay.wait_for_log("database_statement_timed_out", timeout=20)
        assert "lock timeout" in timed_out["error"]
        unready = eventually(_answers(f"{url}/readyz", 503, "unavailable"), timeout=10, what="unready")
        assert unready["loops"]["relay"]["state"] == "database_unavailable"
        assert probe(f"{url}/healthz")[0] == 200
    finally:
        blocker.rollback()
        blocker.autocommit = True
    eventually(_answers(f"{url}/readyz", 200, "ok"), timeout=20, what="the relay ready again")
    assert relay.process.poll() is None  # it never exited for it
