"""Health from the loops' heartbeats (cqrs_common.heartbeat) and the port that answers it with /metrics."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from cqrs_common import metrics
from cqrs_common.heartbeat import STANDBY, UNAVAILABLE, Beat, HealthBounds, Heartbeat, WorkerHealth

BOUNDS = HealthBounds(ready_seconds=10.0, live_seconds=60.0)


def _aged(heartbeat: Heartbeat, seconds: float) -> Heartbeat:
    """The heartbeat as if its last beat were `seconds` old (no test waits a minute)."""
    last = heartbeat.last
    heartbeat._beat = Beat(last.at - seconds, last.state, last.status)
    return heartbeat


def _beating(name: str, state: str = "working", status: Any = "ok") -> Heartbeat:
    heartbeat = Heartbeat(name)
    heartbeat.beat(state, status)
    return heartbeat


def test_a_loop_that_has_not_beaten_yet_is_not_ready_but_live() -> None:
    code, body = WorkerHealth(BOUNDS, Heartbeat("relay")).readiness()
    assert code == 503 and body["status"] == "unavailable"
    assert body["loops"]["relay"]["state"] == "starting"
    assert WorkerHealth(BOUNDS, Heartbeat("relay")).liveness()[0] == 200


def test_every_loop_beating_and_working_is_ready() -> None:
    health = WorkerHealth(BOUNDS, _beating("consumer"), _beating("replication_fallback"))
    code, body = health.readiness()
    assert (code, body["status"], body["bound_seconds"]) == (200, "ok", 10.0)
    assert set(body["loops"]) == {"consumer", "replication_fallback"}
    assert not any(loop["late"] for loop in body["loops"].values())


def test_a_standby_is_ready_and_says_so() -> None:
    code, body = WorkerHealth(BOUNDS, _beating("relay", "standby", STANDBY)).readiness()
    assert (code, body["status"]) == (200, "standby")


def test_one_loop_unavailable_or_late_makes_the_process_unready() -> None:
    failing = _beating("fallback", "round_failed", UNAVAILABLE)
    unavailable = WorkerHealth(BOUNDS, _beating("consumer"), failing)
    assert unavailable.readiness()[0] == 503
    late = WorkerHealth(BOUNDS, _beating("consumer"), _aged(_beating("fallback"), 11))
    code, body = late.readiness()
    assert (code, body["status"]) == (503, "unavailable")
    assert body["loops"]["fallback"]["late"] and body["loops"]["fallback"]["seconds_since_beat"] >= 11
    assert late.liveness()[0] == 200  # unready long before it counts as stuck


def test_a_loop_silent_past_the_liveness_bound_is_stuck() -> None:
    health = WorkerHealth(BOUNDS, _beating("consumer"), _aged(_beating("fallback"), 61))
    code, body = health.liveness()
    assert (code, body["status"], body["bound_seconds"]) == (503, "stuck", 60.0)
    assert body["loops"]["fallback"]["late"] and not body["loops"]["consumer"]["late"]


def test_a_failing_loop_that_keeps_beating_is_live() -> None:
    assert WorkerHealth(BOUNDS, _beating("relay", "database_unavailable", UNAVAILABLE)).liveness()[0] == 200


def test_touch_keeps_the_state_and_renews_the_beat() -> None:
    heartbeat = _aged(_beating("relay", "broker_unavailable", UNAVAILABLE), 30)
    heartbeat.touch()
    assert (heartbeat.last.state, heartbeat.last.status) == ("broker_unavailable", UNAVAILABLE)
    assert time.monotonic() - heartbeat.last.at < 1


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_the_metrics_port_answers_metrics_and_both_probes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registry = CollectorRegistry()
    Gauge("cqrs_test_gauge", "a gauge of this test", registry=registry).set(3)
    late = _aged(_beating("relay"), 11)
    server = metrics.serve_metrics(port, registry, addr="127.0.0.1", health=WorkerHealth(BOUNDS, late))
    try:
        code, _, page = _get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and b"cqrs_test_gauge 3.0" in page
        code, content_type, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert (code, content_type) == (503, "application/json")
        assert json.loads(body)["status"] == "unavailable"
        code, content_type, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert (code, content_type, json.loads(body)["status"]) == (200, "application/json", "ok")
    finally:
        server.shutdown()
        server.server_close()
