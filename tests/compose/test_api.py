"""The Compose system as a user meets it: the README's walkthrough over the published ports, reads that see
their writes after the events crossed RabbitMQ between containers, the reporting subscriber counting them, and
Prometheus scraping every container."""

from __future__ import annotations

from decimal import Decimal

import requests
import yaml

from devkit.polling import eventually
from devkit.processes import REPO
from tests.compose.conftest import ComposeSystem
from tests.support.worker_health import probe


def test_the_readme_walkthrough(system: ComposeSystem, http: requests.Session) -> None:
    a = system.open_account(http, "alice")
    b = system.open_account(http, "bob")

    deposit = {"amount": "100.00"}
    first = system.command(http, f"/api/accounts/{a}/deposit", deposit, **{"Idempotency-Key": "dep-1"})
    again = system.command(http, f"/api/accounts/{a}/deposit", deposit, **{"Idempotency-Key": "dep-1"})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"account_id": str(a), "version": 2, "balance": "100.00"}

    if_match = {"If-Match": '"2"'}
    withdrawn = system.command(http, f"/api/accounts/{a}/withdraw", {"amount": "30.00"}, **if_match)
    assert withdrawn.status_code == 200 and withdrawn.json()["balance"] == "70.00"
    stale = system.command(http, f"/api/accounts/{a}/withdraw", {"amount": "1.00"}, **if_match)
    assert stale.status_code == 412
    assert stale.headers["Content-Type"].startswith("application/problem+json")

    transfer = {"from_account": str(a), "to_account": str(b), "amount": "25.50"}
    assert system.command(http, "/api/transfers", transfer).status_code == 201
    assert system.command(http, f"/api/accounts/{b}/withdraw", {"amount": "25.50"}).status_code == 200
    assert system.command(http, f"/api/accounts/{b}/close", {}).status_code == 200

    account = system.read_account(http, a, min_version=4)
    assert account.status_code == 200, account.text
    assert (account.json()["balance"], account.json()["version"]) == ("44.50", 4)
    rows = http.get(f"{system.read_api}/api/accounts/{a}/transactions").json()["results"]
    kinds = [row["kind"] for row in rows]
    assert kinds == ["deposit", "withdrawal", "transfer_out"]
    closed = system.read_account(http, b, min_version=4)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert http.get(f"{system.read_api}/api/stats").json()["accounts"] >= 2
    assert system.projection(http)["mode"] == "broker"

    too_much = system.command(http, f"/api/accounts/{a}/withdraw", {"amount": "1000000.00"})
    assert too_much.status_code == 409
    assert too_much.headers["Content-Type"].startswith("application/problem+json")

    for api in (system.write_api, system.read_api):
        schema = http.get(f"{api}/api/schema", headers={"Accept": "application/json"})
        assert schema.status_code == 200 and "openapi" in schema.json(), api


def test_reads_see_writes_that_crossed_the_broker(system: ComposeSystem, http: requests.Session) -> None:
    """Each deposit read back at once with min_version: the projector container applied it from RabbitMQ."""
    account = system.open_account(http, "ryw")
    by_broker = system.applied("broker")
    for n in range(1, 21):
        deposited = system.command(http, f"/api/accounts/{account}/deposit", {"amount": "1.25"})
        assert deposited.status_code == 200, deposited.text
        read = system.read_account(http, account, min_version=deposited.json()["version"])
        assert read.status_code == 200, read.text
        assert Decimal(read.json()["balance"]) == Decimal("1.25") * n
    # Twenty deposits (the account's opening may have come before the counter was read).
    assert system.applied("broker") - by_broker >= 20
    assert system.applied("replication") == 0
    assert system.unpublished() == 0


def test_the_reporting_container_counts_every_event_once(
    system: ComposeSystem, http: requests.Session
) -> None:
    """The second subscriber in its container, with its own broker user from the definitions: healthy, live
    once an event after its start came, and its daily totals hold as many events as the write side."""
    system.open_account(http, "reporting", deposit="3.00")

    def counted() -> int:
        response = http.get(f"{system.read_api}/api/reports/daily", params={"page_size": 500}, timeout=10)
        assert response.status_code == 200, response.text
        return sum(row["events"] for row in response.json()["results"])

    eventually(lambda: counted() == system.count_events(), timeout=60, interval=1, what="reporting's totals")
    state = http.get(f"{system.read_api}/api/reports/subscription", timeout=10).json()
    assert state["history_events"] + state["live_events"] == system.count_events()
    assert probe(f"{system.reporting_url}/readyz")[0] == 200
    assert system.inspect("reporting", "{{.State.Health.Status}}") == "healthy"


def test_prometheus_scrapes_every_container(system: ComposeSystem, http: requests.Session) -> None:
    config = yaml.safe_load((REPO / "observability/prometheus/prometheus.compose.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}

    def query(expression: str) -> list[dict]:
        answer = http.get(f"{system.prometheus}/api/v1/query", params={"query": expression}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]["result"]

    def all_up() -> bool:
        up = {series["metric"]["job"]: series["value"][1] for series in query("up")}
        return up == dict.fromkeys(jobs, "1")

    eventually(all_up, timeout=60, interval=1, what=f"up == 1 for {sorted(jobs)}")
    # The lag series of CONTRACT.md, with the samples the earlier tests' events left.
    system.open_account(http, "lag", deposit="1.00")
    for series in ("cqrs_publish_lag_seconds_count", "cqrs_end_to_end_lag_seconds_count"):
        eventually(lambda s=series: query(f"{s} > 0"), timeout=60, interval=1, what=series)
