"""The live view in Compose: read-service reads every process's /metrics over the monitoring network and the
broker over the read network, and the write API lets the page's origin send commands (CONTRACT.md)."""

from __future__ import annotations

from typing import Any

import requests

from devkit.polling import eventually
from tests.compose.conftest import ComposeSystem


def test_the_live_view_sees_every_process_and_the_events_crossing_the_broker(
    system: ComposeSystem, http: requests.Session
) -> None:
    account = system.open_account(http, "lab-view")

    def complete() -> dict[str, Any] | None:
        snapshot = http.get(f"{system.read_api}/lab/api/pipeline", timeout=10).json()
        processes = ("write_service", "relay", "broker", "projector", "read_db")
        seen = [e for e in snapshot["read_db"]["recent_events"] if e["aggregate_id"] == str(account)]
        ready = all(snapshot[p]["up"] for p in processes) and seen and seen[0]["path"] is not None
        return snapshot if ready else None

    snapshot = eventually(complete, timeout=60, interval=1, what="every process up and the event applied")
    assert snapshot["active_path"] == "broker"
    assert snapshot["write_service"]["commands_total"] >= 1
    assert snapshot["relay"]["published_total"] >= 1 and snapshot["broker"]["queue_depth"] is not None
    assert snapshot["projector"]["applied_total"]["broker"] >= 1
    # The page sends its commands to the write API's published port.
    page = http.get(f"{system.read_api}/lab/", timeout=10)
    assert page.status_code == 200
    assert f"connect-src 'self' {system.write_api}" in page.headers["Content-Security-Policy"]
    assert http.get(f"{system.read_api}/lab/static/lab_view/lab.js", timeout=10).status_code == 200


def test_the_write_api_lets_the_live_views_origin_send_commands(
    system: ComposeSystem, http: requests.Session
) -> None:
    preflight = http.options(
        f"{system.write_api}/api/accounts",
        headers={
            "Origin": system.read_api,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key,x-correlation-id",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == system.read_api
