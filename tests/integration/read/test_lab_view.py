"""The live view (/lab/): its page, and /lab/api/pipeline assembled from real /metrics pages, the broker and
the read database (CONTRACT.md, "The live view")."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from django.test import Client
from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

from devkit.processes import free_port
from read_service.lab_view import broker_depth
from read_service.projections.apply import BROKER, REPLICATION, apply_events
from tests.integration.read.replica_log import LoggedAccount, ReplicaLog, replica_log_fixture  # noqa: F401

WRITE_API = "http://127.0.0.1:18001"


@pytest.fixture(autouse=True)
def nothing_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every metrics target on a port where nothing listens, unless a test serves a page there; the broker
    asked afresh by every poll."""
    for variable in ("LAB_WRITE_METRICS_URL", "LAB_RELAY_METRICS_URL", "LAB_PROJECTOR_METRICS_URL"):
        monkeypatch.setenv(variable, f"http://127.0.0.1:{free_port()}/metrics")
    monkeypatch.setenv("LAB_WRITE_API_URL", WRITE_API)
    monkeypatch.setattr(broker_depth, "_cached", None)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def serve_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, CollectorRegistry], None]]:
    """Serves a registry as the /metrics page of a process the live view reads (its LAB_*_METRICS_URL)."""
    servers = []

    def serve(variable: str, registry: CollectorRegistry) -> None:
        server = make_server("127.0.0.1", 0, make_wsgi_app(registry), handler_class=_Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv(variable, f"http://127.0.0.1:{server.server_port}/metrics")

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def pipeline() -> dict[str, Any]:
    response = Client().get("/lab/api/pipeline")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self.tags and self.tags[-1][0] == "script" and data.strip():
            self.inline_script = True


@pytest.mark.django_db
def test_the_page_runs_only_its_own_files_and_talks_only_to_itself_and_the_write_api() -> None:
    response = Client().get("/lab/")

    assert response.status_code == 200
    policy = dict(part.split(" ", 1) for part in response["Content-Security-Policy"].split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == "'self'"
    assert policy["connect-src"] == f"'self' {WRITE_API}"
    assert "unsafe" not in response["Content-Security-Policy"]
    page = _Tags()
    page.feed(response.content.decode())
    assert not page.inline_script
    assert not [tag for tag, attrs in page.tags if tag == "style" or "style" in attrs]
    assert not [attrs for _tag, attrs in page.tags if any(name.startswith("on") for name in attrs)]
    body = next(attrs for tag, attrs in page.tags if tag == "body")
    assert body["data-write-api"] == WRITE_API and body["data-pipeline-url"] == "/lab/api/pipeline"
    # Its script and stylesheet are served, as the files they are.
    assets = [attrs.get("src") or attrs.get("href") for tag, attrs in page.tags if tag in ("script", "link")]
    assert sorted(assets) == ["/lab/static/lab_view/lab.css", "/lab/static/lab_view/lab.js"]
    for asset, kind in zip(sorted(assets), ("text/css", "text/javascript"), strict=True):
        served = Client().get(asset)
        assert served.status_code == 200 and served["Content-Type"].startswith(kind), asset
        assert b"".join(served.streaming_content)


@pytest.mark.django_db
def test_every_form_control_has_a_label() -> None:
    page = _Tags()
    page.feed(Client().get("/lab/").content.decode())
    labelled = {attrs["for"] for tag, attrs in page.tags if tag == "label" and "for" in attrs}
    controls = [attrs["id"] for tag, attrs in page.tags if tag in ("input", "select") and "id" in attrs]
    # The checkbox sits inside its label; every other control is named by a label's `for`.
    assert set(controls) - labelled == {"remember-token"}


@pytest.mark.django_db
def test_processes_that_do_not_answer_are_shown_down_not_as_an_error() -> None:
    snapshot = pipeline()

    assert snapshot["write_service"] == {"up": False}
    assert snapshot["relay"] == {"up": False}
    assert snapshot["projector"] == {"up": False, "mode": None}
    assert snapshot["active_path"] is None
    # The broker of the test settings and the read database do answer.
    assert snapshot["broker"]["up"] is True
    assert snapshot["read_db"]["up"] is True


@pytest.mark.django_db
def test_a_broker_that_does_not_answer_is_down(settings: Any) -> None:
    settings.RABBITMQ_URL = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    assert pipeline()["broker"] == {"up": False, "queue_depth": None, "dead_letter_depth": None}


@pytest.mark.django_db
def test_the_figures_come_from_the_processes_metrics_pages(
    serve_metrics: Callable[[str, CollectorRegistry], None],
) -> None:
    relay = CollectorRegistry()
    Gauge("cqrs_outbox_backlog", "", registry=relay).set(42)
    Gauge("cqrs_outbox_oldest_age_seconds", "", registry=relay).set(3.5)
    Counter("cqrs_events_published", "", ["type"], registry=relay).labels(type="MoneyDeposited").inc(7)
    Gauge("cqrs_replication_slot_retained_bytes", "", ["slot"], registry=relay).labels(slot="s").set(4096)
    Gauge("cqrs_broker_blocked", "", registry=relay).set(0)
    projector = CollectorRegistry()
    applied = Counter("cqrs_events_applied", "", ["type", "path"], registry=projector)
    applied.labels(type="MoneyDeposited", path="broker").inc(5)
    applied.labels(type="AccountOpened", path="replication").inc(2)
    Counter("cqrs_events_dead_lettered", "", ["reason"], registry=projector).labels(reason="too_large").inc()
    mode = Gauge("cqrs_projection_mode", "", ["path"], registry=projector)
    mode.labels(path="broker").set(0)
    mode.labels(path="replication").set(1)
    write = CollectorRegistry()
    requests = Counter("django_http_requests_total_by_method", "", ["method"], registry=write)
    requests.labels(method="POST").inc(9)
    requests.labels(method="GET").inc(100)
    serve_metrics("LAB_RELAY_METRICS_URL", relay)
    serve_metrics("LAB_PROJECTOR_METRICS_URL", projector)
    serve_metrics("LAB_WRITE_METRICS_URL", write)

    snapshot = pipeline()

    assert snapshot["write_service"] == {"up": True, "commands_total": 9}
    assert snapshot["relay"] == {
        "up": True,
        "outbox_backlog": 42,
        "outbox_oldest_age_seconds": 3.5,
        "published_total": 7,
        "slot_retained_bytes": 4096,
        "broker_blocked": False,
    }
    assert snapshot["projector"] == {
        "up": True,
        "mode": "replication",
        "applied_total": {"broker": 5, "replication": 2},
        "duplicates_total": 0,
        "dead_lettered_total": 1,
    }
    assert snapshot["active_path"] == "replication"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", snapshot["generated_at"])


def test_the_last_events_show_the_path_that_applied_them_and_the_recent_lag(replica_log: ReplicaLog) -> None:
    alice, bob = LoggedAccount("alice"), LoggedAccount("bob")
    by_broker = [alice.opened(), alice.deposited("10.00")]
    by_replica = [bob.opened()]
    waiting = alice.deposited("5.00")
    replica_log.append([*by_broker, *by_replica, waiting])
    apply_events(by_broker, path=BROKER)
    apply_events(by_replica, path=REPLICATION)

    read_db = pipeline()["read_db"]

    assert read_db["up"] is True
    events = read_db["recent_events"]
    assert [e["event_id"] for e in events] == [
        str(e.event_id) for e in (waiting, *by_replica, *by_broker[::-1])
    ]
    assert [e["path"] for e in events] == [None, "replication", "broker", "broker"]
    assert events[0]["applied_at"] is None and events[0]["lag_seconds"] is None
    assert all(e["correlation_id"] == "test-correlation" for e in events)
    assert events[1]["type"] == "AccountOpened" and events[1]["aggregate_id"] == str(bob.account_id)
    # The three applied events occurred minutes ago (the test's clock) and were applied just now.
    lag = read_db["lag"]
    assert lag["events"] == 3 and lag["window_seconds"] == 10
    assert 60 < lag["p50"] <= lag["p99"] < 3600
