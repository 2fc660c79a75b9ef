"""Observability of the running system: a real Prometheus scrapes the four processes and RabbitMQ.

The four processes are started as `make run` starts them (observability/live_system.py) on a RabbitMQ node of
their own with the rabbitmq_prometheus plugin, which the test stops for a while. Commands are driven through
the write API, and then through Prometheus's HTTP API every dashboard expression and every metric the alerts
read must return data. Some expressions only have data when something goes wrong; CAUSED names each, with
what the drive does to cause it for real, and the caused value must be above 0. Alerts need their condition
to last minutes: their thresholds are tested by promtool (observability/prometheus/tests); here the
conditions the drive causes must show in the alert's expression, and the healthy ones stay quiet
(NOT_CAUSED says why each other alert is not caused). Last, one command's correlation id is followed
through the logs of write-service, relay and projector.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg2
import pytest
import requests

from devkit import messages
from devkit.metrics import sample
from devkit.polling import eventually
from tests.observability_expressions import (
    alert_rules,
    dashboard_expressions,
    metric_names,
    observability_module,
)

live_system = observability_module("live_system")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOKEN = {"Authorization": "Bearer dev-token"}
RATE_INTERVAL = "30s"  # with 1 s scrapes, long enough to hold the whole drive below

# Dashboard expressions without data while the system is healthy, and how the drive causes each condition.
CAUSED = {
    "cqrs-api: Server errors (5xx) per endpoint (A)": "a read whose database session is terminated while the"
    " statement runs (what a failover or an operator's pg_terminate_backend does) answers 503, twice",
    "cqrs-api: New connections and errors (B)": "the same reads' failed statements count in"
    " django_db_errors_total",
    "cqrs-pipeline: Dead-lettered messages (A)": "two unparseable messages published to cqrs.events are"
    " dead-lettered",
}
# Alerts whose condition the drive causes: their expression must return data.
CAUSED_ALERTS = {
    "EventsDeadLettered": "the unparseable messages above",
    "DeadLetterQueueNotEmpty": "the unparseable messages wait in both subscribers' dead-letter queues",
    "ProjectionOnFallbackPath": "the RabbitMQ node is stopped: the projector follows the replicated events",
    "ServiceDown": "the same stopped node does not answer its scrape",
}
# Alerts whose condition is not caused here, and why; promtool's unit tests make each of them fire.
NOT_CAUSED = {
    "OutboxBacklogGrowing": "needs over 100 events waiting and rising for 5 minutes",
    "OutboxEventTooOld": "needs publishing stuck for 2 minutes",
    "EndToEndLagHigh": "needs a p99 commit-to-read-DB lag over 1 s for 5 minutes",
    "ProjectorDown": "needs the projector down, which the later tests of this module need running",
    "ProjectorStalled": "needs the projector applying nothing while events wait, for 5 minutes",
    "ProjectorFailing": "needs a failure none of the projector's checks foresees (a bug, a changed database)",
    "ReplicationSlotRetainingWal": "needs 256 MiB of WAL held for a subscription that stopped consuming",
    "ReplicationSlotNearLimit": "needs 768 MiB of WAL held for a subscription that stopped consuming",
    "ApiErrorRateHigh": "needs 5 % of a service's responses to be 5xx for 5 minutes",
    "RelayBlockedByBroker": "needs RabbitMQ to block publishing for 2 minutes (a chaos scenario)",
    "ReportingLagHigh": "needs reporting a minute behind, or counting nothing while events wait, for 10 min",
}
QUIET = ("ProjectorDown", "ProjectionOnFallbackPath", "ServiceDown", "OutboxEventTooOld")

WRITE_DATABASE_URL = os.environ.get(
    "WRITE_DATABASE_URL", "postgres://cqrs_write:cqrs_write@127.0.0.1:5433/cqrs_write_test"
)
READ_DATABASE_URL = os.environ.get(
    "READ_DATABASE_URL", "postgres://cqrs_read:cqrs_read@127.0.0.1:5434/cqrs_read_test"
)


def _wait_for(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    eventually(check, timeout, interval=0.2, what=what, ignoring=live_system.NOT_YET)


def _replication_slots() -> set[str]:
    """The slots of the write database: the read database's subscription (deploy/local/replication.sh)."""
    with psycopg2.connect(WRITE_DATABASE_URL) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database()")
        slots = {slot for (slot,) in cursor.fetchall()}
    connection.close()
    return slots


@pytest.fixture(scope="module")
def broker() -> Iterator:
    """A RabbitMQ node of this module's own, with its metrics plugin: the test stops it for a while."""
    node = live_system.private_broker_with_metrics()
    node.start()
    yield node
    node.destroy()


@pytest.fixture(scope="module")
def system(tmp_path_factory, broker) -> Iterator:
    if not _replication_slots():
        pytest.fail(
            "the write database has no replication slot, so the replication panels have no data:"
            " `make migrate-test` runs deploy/local/replication.sh"
        )
    environment = live_system.Environment(
        write_database_url=WRITE_DATABASE_URL,
        read_database_url=READ_DATABASE_URL,
        write_broker_url=broker.url,
        read_broker_url=broker.url,
        rabbitmq_metrics=broker.metrics_address,
        vhost="/",
    )
    system = live_system.LiveSystem(tmp_path_factory.mktemp("observability"), environment, debug_logs=True)
    try:
        system.start()
    except live_system.PrometheusMissing as exc:
        pytest.skip(str(exc))
    yield system
    system.stop()


def _command(system, path: str, body: dict, **headers: str) -> requests.Response:
    return requests.post(
        f"{system.url('write-service')}{path}", json=body, headers={**TOKEN, **headers}, timeout=10
    )


def _drive_commands(system) -> list[str]:
    """Commands of every kind, a few refused ones, and reads that wait for the projection."""
    accounts = []
    for owner in ("obs-alice", "obs-bob", "obs-carol"):
        answer = _command(system, "/api/accounts", {"owner": owner, "currency": "EUR"})
        assert answer.status_code == 201, answer.text
        accounts.append(answer.json()["account_id"])
    for round_ in range(5):
        for account in accounts:
            assert (
                _command(system, f"/api/accounts/{account}/deposit", {"amount": "10.00"}).status_code == 200
            )
        assert (
            _command(system, f"/api/accounts/{accounts[0]}/withdraw", {"amount": "1.00"}).status_code == 200
        )
        transfer = {"from_account": accounts[1], "to_account": accounts[2], "amount": f"{round_ + 1}.00"}
        assert _command(system, "/api/transfers", transfer).status_code == 201
    assert _command(system, f"/api/accounts/{accounts[0]}/deposit", {"amount": "-1"}).status_code == 400
    assert _command(system, f"/api/accounts/{uuid.uuid4()}/deposit", {"amount": "1.00"}).status_code == 404
    assert (
        _command(system, f"/api/accounts/{accounts[0]}/withdraw", {"amount": "999999.00"}).status_code == 409
    )
    for account in accounts:
        answer = requests.get(
            f"{system.url('read-service')}/api/accounts/{account}", params={"min_version": 6}, timeout=15
        )
        assert answer.status_code == 200, answer.text
    assert requests.get(f"{system.url('read-service')}/api/stats", timeout=5).ok
    return accounts


def _read_on_a_terminated_session(system) -> requests.Response:
    """A read whose database session is terminated while its statement runs.

    The statement is held in place by an exclusive lock on account_view (the read-service's role owns the
    table); its session is found by the account id in its text and terminated, as a failover or an operator
    would. The read fails and answers 503 (database unavailable, retry).
    """
    account_id = str(uuid.uuid4())  # no such account: it only names the statement
    locker = psycopg2.connect(READ_DATABASE_URL)
    terminator = psycopg2.connect(READ_DATABASE_URL)
    terminator.autocommit = True
    try:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE account_view IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(max_workers=1) as pool:
            read = pool.submit(
                requests.get, f"{system.url('read-service')}/api/accounts/{account_id}", timeout=30
            )

            def terminated() -> bool:
                with terminator.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND wait_event_type = 'Lock' AND query LIKE %s",
                        [f"%{account_id}%"],
                    )
                    return bool(cursor.fetchall())

            _wait_for(terminated, "the read's statement waiting for the lock", 15)
            locker.rollback()
            return read.result(timeout=30)
    finally:
        locker.close()
        terminator.close()


def _cause_server_errors(system) -> list[requests.Response]:
    """Two failed reads, the second once Prometheus has the first: a counter's series is born at 1, which
    rate() cannot see, so only the second one shows as a rate above 0."""
    first = _read_on_a_terminated_session(system)
    _wait_for(
        lambda: system.query('django_http_responses_total_by_status_total{job="read-service", status="503"}'),
        "the first 503 in Prometheus",
    )
    return [first, _read_on_a_terminated_session(system)]


def _publish(broker_url: str, body: bytes, message_id: str, event_type: str, correlation_id: str) -> None:
    messages.publish(broker_url, messages.message(body, event_type, message_id, correlation_id))


def _dead_letter_twice(system, broker_url: str) -> None:
    """Two unparseable messages, the second once Prometheus has the first (see _cause_server_errors)."""
    _publish(broker_url, b"{not json", str(uuid.uuid4()), "MoneyDeposited", "obs-poison")
    _wait_for(lambda: system.query("cqrs_events_dead_lettered_total"), "the dead letter in Prometheus", 60)
    _publish(broker_url, b"{not json", str(uuid.uuid4()), "MoneyDeposited", "obs-poison")


def _redeliver_an_applied_event(broker_url: str, account_id: str) -> None:
    """Publish an event the projector already applied: it must be counted as a duplicate."""
    with psycopg2.connect(WRITE_DATABASE_URL) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_id, event_type, schema_version, aggregate_type, aggregate_id, aggregate_version,"
            " position, occurred_at, correlation_id, causation_id, data FROM events"
            " WHERE aggregate_id = %s ORDER BY aggregate_version LIMIT 1",
            [account_id],
        )
        row = cursor.fetchone()
    connection.close()
    keys = ["event_id", "type", "schema_version", "aggregate_type", "aggregate_id", "aggregate_version"]
    event = dict(
        zip([*keys, "position", "occurred_at", "correlation_id", "causation_id", "data"], row, strict=True)
    )
    event["event_id"], event["aggregate_id"] = str(event["event_id"]), str(event["aggregate_id"])
    event["occurred_at"] = event["occurred_at"].isoformat().replace("+00:00", "Z")
    correlation_id = event["correlation_id"] or "redelivery"
    _publish(broker_url, json.dumps(event).encode(), event["event_id"], event["type"], correlation_id)


def _broker_outage(system, broker) -> dict[str, list[dict]]:
    """Stops the RabbitMQ node until Prometheus sees what that causes, with a command committed meanwhile,
    and starts it again. Returns what the alert expressions answered during the outage."""
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    broker.stop()
    try:
        opened = _command(system, "/api/accounts", {"owner": "obs-during-outage"})
        assert opened.status_code == 201, opened.text  # commands wait in the outbox
        account = opened.json()["account_id"]
        answer = requests.get(  # the projector brings it from the replicated events table
            f"{system.url('read-service')}/api/accounts/{account}", params={"min_version": 1}, timeout=15
        )
        assert answer.status_code == 200, answer.text
        expected = {
            "ProjectionOnFallbackPath": rules["ProjectionOnFallbackPath"],
            "ServiceDown": rules["ServiceDown"],
            "applied through replication": 'sum(cqrs_events_applied_total{path="replication"}) > 0',
        }
        for name, promql in expected.items():
            _wait_for(lambda q=promql: system.query(q), f"{name} in Prometheus")
        seen = {name: system.query(promql) for name, promql in expected.items()}
    finally:
        broker.start()
    _wait_for(lambda: system.query('up{job="rabbitmq"} == 1'), "RabbitMQ scraped again", 60)
    _wait_for(lambda: system.query('cqrs_projection_mode{path="broker"} == 1'), "the broker path again", 60)
    return seen


@dataclass
class Driven:
    system: live_system.LiveSystem
    server_errors: list[requests.Response]
    caused: dict[str, float] = field(default_factory=dict)  # CAUSED expression -> its highest value seen
    during_outage: dict[str, list[dict]] = field(default_factory=dict)  # alert -> its expression's answer

    def query(self, promql: str) -> list[dict]:
        return self.system.query(promql)


def _highest_value(system, promql: str, timeout: float = 30.0) -> float:
    """The highest value `promql` reaches within `timeout` (0 when it never has data); stops once above 0."""
    deadline, highest = time.monotonic() + timeout, 0.0
    while time.monotonic() < deadline and highest <= 0:
        highest = max([highest, *(float(series["value"][1]) for series in system.query(promql))])
        time.sleep(0.5)
    return highest


@pytest.fixture(scope="module")
def driven(system, broker) -> Driven:
    accounts = _drive_commands(system)
    _dead_letter_twice(system, broker.url)
    _redeliver_an_applied_event(broker.url, accounts[0])
    drive = Driven(system, _cause_server_errors(system))
    # The caused conditions, read at once: each rate holds them for RATE_INTERVAL only.
    expressions = {e.source: e.promql for e in dashboard_expressions(rate_interval=RATE_INTERVAL)}
    for source in CAUSED:
        drive.caused[source] = _highest_value(system, expressions[source])
    drive.during_outage = _broker_outage(system, broker)
    # Wait until Prometheus holds the rest of what the drive caused (rabbitmq_prometheus refreshes every 5 s).
    _wait_for(lambda: system.query("cqrs_events_duplicate_total > 0"), "the duplicate in Prometheus", 60)
    _wait_for(
        lambda: system.query('rabbitmq_detailed_queue_messages{queue="read-service.projector.dlq"} > 0'),
        "the dead-letter queue's depth in Prometheus",
        60,
    )
    return drive


def _still_empty(driven: Driven, queries: dict[str, str], timeout: float = 20.0) -> list[str]:
    """The names of the queries that returned nothing, retried until `timeout`: rate() and increase() need
    two scrapes after the series appeared, and series appear as the drive reaches each process."""
    pending = dict(queries)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {name: promql for name, promql in pending.items() if not driven.query(promql)}
        if pending:
            time.sleep(1)
    return sorted(pending)


def test_every_dashboard_expression_returns_data(driven):
    queries = {e.source: e.promql for e in dashboard_expressions(rate_interval=RATE_INTERVAL)}
    assert set(CAUSED) <= set(queries), "a caused expression is no longer on a dashboard"
    assert len(queries) > 40
    assert _still_empty(driven, queries) == []


def test_caused_conditions_show_on_their_panels(driven):
    assert {source: value for source, value in driven.caused.items() if value <= 0} == {}


def test_server_errors_answer_problem_json_and_are_logged_with_their_correlation_id(driven):
    for answer in driven.server_errors:
        assert answer.status_code == 503, answer.text
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert answer.headers["Retry-After"] == "1"
        correlation_id = answer.headers["X-Correlation-ID"]
        logged = [
            line
            for line in driven.system.log_lines("read-service")
            if line.get("correlation_id") == correlation_id and line.get("level") == "error"
        ]
        assert logged, f"no error line with correlation id {correlation_id} in the read-service log"


def test_every_metric_the_alerts_read_exists(driven):
    queries = {
        f"{rule['alert']}: {name}": name for rule in alert_rules() for name in metric_names(rule["expr"])
    }
    assert _still_empty(driven, queries) == []


def test_every_alert_is_caused_or_says_why_not():
    alerts = {rule["alert"] for rule in alert_rules()}
    assert set(CAUSED_ALERTS) | set(NOT_CAUSED) == alerts
    assert not set(CAUSED_ALERTS) & set(NOT_CAUSED)


def test_caused_conditions_fire_their_alert_expressions(driven):
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    dead_lettered = driven.query(rules["EventsDeadLettered"])
    assert {series["metric"]["reason"] for series in dead_lettered}
    dlq = driven.query(rules["DeadLetterQueueNotEmpty"])
    # Both consumers of cqrs.events got the unparseable messages, and each refused them into its own DLQ.
    assert sorted(series["metric"]["queue"] for series in dlq) == [
        "read-service.projector.dlq",
        "reporting.daily-totals.dlq",
    ]
    # During the outage: the fallback path, and RabbitMQ (only RabbitMQ) down.
    assert driven.during_outage["ProjectionOnFallbackPath"]
    assert [series["metric"]["job"] for series in driven.during_outage["ServiceDown"]] == ["rabbitmq"]
    assert driven.during_outage["applied through replication"]
    # And once RabbitMQ is back, the healthy ones are quiet.
    for quiet in QUIET:
        assert driven.query(rules[quiet]) == [], quiet


def test_replication_panels_have_the_write_databases_slot_and_the_broker_path(driven):
    slots = {series["metric"]["slot"] for series in driven.query("cqrs_replication_slot_retained_bytes")}
    assert slots == _replication_slots()
    modes = {series["metric"]["path"]: series["value"][1] for series in driven.query("cqrs_projection_mode")}
    assert modes == {"broker": "1", "replication": "0"}


def test_prometheus_evaluates_every_rule_without_error(driven):
    def all_evaluated() -> bool:
        url = f"{driven.system.url('prometheus')}/api/v1/rules"
        groups = requests.get(url, timeout=5).json()["data"]["groups"]
        return all(rule["health"] == "ok" for group in groups for rule in group["rules"])

    _wait_for(all_evaluated, "every rule evaluated with health ok", 15)


def test_gunicorn_workers_are_summed_into_one_metrics_page(driven):
    """Two workers answer requests; /metrics must count all of them whichever worker serves the scrape."""
    system = driven.system
    before = _responses(system, "read-service")
    for _ in range(40):
        assert requests.get(f"{system.url('read-service')}/healthz", timeout=5).ok
    for _ in range(5):  # any worker may answer the scrape: each must show the others' requests too
        assert _responses(system, "read-service") >= before + 40


def _responses(system, service: str) -> float:
    exposition = requests.get(f"{system.url(service)}/metrics", timeout=5).text
    return sample(exposition, "django_http_responses_total_by_status_total") or 0.0


def test_one_commands_correlation_id_is_in_every_process_log(driven):
    system = driven.system
    correlation_id = f"obs-{uuid.uuid4().hex}"
    headers = {"X-Correlation-ID": correlation_id}
    answer = _command(system, "/api/accounts", {"owner": "obs-traced"}, **headers)
    assert answer.status_code == 201 and answer.headers["X-Correlation-ID"] == correlation_id
    account = answer.json()["account_id"]
    projected = requests.get(
        f"{system.url('read-service')}/api/accounts/{account}", params={"min_version": 1}, timeout=15
    )
    assert projected.status_code == 200

    def seen_by(process: str) -> bool:
        return any(line.get("correlation_id") == correlation_id for line in system.log_lines(process))

    for process in ("write-service", "relay", "projector"):
        _wait_for(lambda p=process: seen_by(p), f"{correlation_id} in the {process} log", 15)
        for line in system.log_lines(process):
            assert line.get("service") == process, line
