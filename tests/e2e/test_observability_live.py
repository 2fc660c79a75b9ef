"""Observability of the running system: a real Prometheus scrapes the four processes and RabbitMQ.

The four processes are started as `make run` starts them (gunicorn with two workers each, the relay, the
projector), commands are driven through the write API, a poison message and a redelivered event are published,
and then through Prometheus's HTTP API every dashboard expression and every metric the alerts read must return
data. A few expressions only have data when something goes wrong: they are listed in DATA_DEPENDENT with the
reason. Last, one command's correlation id is followed through the logs of write-service, relay and projector.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pika
import psycopg2
import pytest
import requests
import yaml

from tests.observability_expressions import RULES, alert_rules, dashboard_expressions, metric_names

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = {"Authorization": "Bearer dev-token"}
RATE_INTERVAL = "30s"  # with 1 s scrapes, long enough to hold the whole drive below

# Expressions that have no series until something fails that this test does not break.
DATA_DEPENDENT = {
    "cqrs-api: Server errors (5xx) per endpoint (A)": "no 5xx is answered while the system is healthy",
    "cqrs-api: New connections and errors (B)": "django_db_errors_total exists only after a failed statement",
}

WRITE_DATABASE_URL = os.environ.get(
    "WRITE_DATABASE_URL", "postgres://cqrs_write:cqrs_write@127.0.0.1:5433/cqrs_write_test"
)
READ_DATABASE_URL = os.environ.get(
    "READ_DATABASE_URL", "postgres://cqrs_read:cqrs_read@127.0.0.1:5434/cqrs_read_test"
)
WRITE_RABBITMQ_URL = os.environ.get(
    "TEST_WRITE_RABBITMQ_URL", "amqp://write-service:write-service@127.0.0.1:5672/cqrs_test"
)
READ_RABBITMQ_URL = os.environ.get(
    "TEST_READ_RABBITMQ_URL", "amqp://read-service:read-service@127.0.0.1:5672/cqrs_test"
)
RABBITMQ_PROMETHEUS = os.environ.get("RABBITMQ_PROMETHEUS_ADDRESS", "127.0.0.1:15692")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@dataclass
class System:
    home: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def log_lines(self, name: str) -> list[dict]:
        lines = []
        for line in (self.home / f"{name}.log").read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue  # a line that is not JSON (a traceback printed by Python itself)
        return lines

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = (self.home / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    def query(self, promql: str) -> list[dict]:
        answer = requests.post(f"{self.url('prometheus')}/api/v1/query", data={"query": promql}, timeout=10)
        body = answer.json()
        assert body["status"] == "success", (promql, body)
        return body["data"]["result"]


def _prometheus_config(system: System, vhost: str) -> dict:
    def job(name: str, port_name: str) -> dict:
        return {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{system.ports[port_name]}"]}]}

    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in sorted(RULES.glob("*.yml"))],
        "scrape_configs": [
            job("write-service", "write-service"),
            job("read-service", "read-service"),
            job("relay", "relay"),
            job("projector", "projector"),
            {"job_name": "rabbitmq", "static_configs": [{"targets": [RABBITMQ_PROMETHEUS]}]},
            {
                "job_name": "rabbitmq-queues",
                "metrics_path": "/metrics/detailed",
                # Only this test's vhost: other vhosts' dead-letter queues are not this system's.
                "params": {"family": ["queue_coarse_metrics", "queue_consumer_count"], "vhost": [vhost]},
                "static_configs": [{"targets": [RABBITMQ_PROMETHEUS]}],
            },
        ],
    }


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> Iterator[System]:
    if subprocess.run(["which", "prometheus"], capture_output=True).returncode != 0:
        pytest.skip("prometheus is not installed (deploy/local/ensure-prometheus.sh installs it)")
    system = System(tmp_path_factory.mktemp("observability"))
    for name in ("write-service", "read-service", "relay", "projector", "prometheus"):
        system.ports[name] = _free_port()
    base = {
        **os.environ,
        "WRITE_DATABASE_URL": WRITE_DATABASE_URL,
        "READ_DATABASE_URL": READ_DATABASE_URL,
        "LOG_FORMAT": "json",
        "WEB_CONCURRENCY": "2",
        "PYTHONPATH": str(REPO / "services"),
    }
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for module in ("write_service", "read_service"):
        subprocess.run([BIN / "python", "-m", module, "migrate", "--no-input", "-v0"], env=base, check=True)
    gunicorn = [str(BIN / "gunicorn"), "-c", "python:cqrs_common.gunicorn_conf"]
    try:
        for service, module in (("write-service", "write_service"), ("read-service", "read_service")):
            system.start(
                service,
                [*gunicorn, "--bind", f"127.0.0.1:{system.ports[service]}", f"{module}.wsgi"],
                {**base, "SERVICE_NAME": service, "DJANGO_SETTINGS_MODULE": f"{module}.settings"},
            )
        # DEBUG: the relay and the projector log every event with its correlation id only at this level.
        system.start(
            "relay",
            [str(BIN / "python"), "-m", "write_service", "relay"],
            {
                **base,
                "SERVICE_NAME": "relay",
                "LOG_LEVEL": "DEBUG",
                "RABBITMQ_URL": WRITE_RABBITMQ_URL,
                "RELAY_METRICS_PORT": str(system.ports["relay"]),
                "RELAY_POLL_INTERVAL_SECONDS": "0.2",
            },
        )
        system.start(
            "projector",
            [
                str(BIN / "python"),
                "-m",
                "read_service",
                "projector",
                "--metrics-port",
                str(system.ports["projector"]),
            ],
            {**base, "SERVICE_NAME": "projector", "LOG_LEVEL": "DEBUG", "RABBITMQ_URL": READ_RABBITMQ_URL},
        )
        config = system.home / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(_prometheus_config(system, urlparse(READ_RABBITMQ_URL).path.lstrip("/")))
        )
        system.start(
            "prometheus",
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={system.home / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{system.ports['prometheus']}",
            ],
            dict(os.environ),
        )
        for name in ("write-service", "read-service"):
            _wait_for(lambda n=name: requests.get(f"{system.url(n)}/readyz", timeout=2).ok, f"{name} ready")
        for name in ("relay", "projector"):
            _wait_for(
                lambda n=name: requests.get(f"{system.url(n)}/metrics", timeout=2).ok, f"{name} metrics"
            )
        _wait_for(lambda: requests.get(f"{system.url('prometheus')}/-/ready", timeout=2).ok, "prometheus")
        yield system
    finally:
        system.stop()


def _command(system: System, path: str, body: dict, **headers: str) -> requests.Response:
    return requests.post(
        f"{system.url('write-service')}{path}", json=body, headers={**TOKEN, **headers}, timeout=10
    )


def _drive_commands(system: System) -> list[str]:
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


def _publish(body: bytes, message_id: str, event_type: str, correlation_id: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(WRITE_RABBITMQ_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            "cqrs.events",
            f"account.{event_type}",
            body,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                message_id=message_id,
                type=event_type,
                timestamp=int(time.time()),
                headers={"x-correlation-id": correlation_id},
            ),
            mandatory=True,
        )
    finally:
        connection.close()


def _redeliver_an_applied_event(account_id: str) -> None:
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
    _publish(
        json.dumps(event).encode(), event["event_id"], event["type"], event["correlation_id"] or "redelivery"
    )


def _remove_from_dead_letter_queue(message_id: str) -> None:
    """Take this test's poison message back out of the DLQ, leaving every other message where it was."""
    connection = pika.BlockingConnection(pika.URLParameters(READ_RABBITMQ_URL))
    try:
        channel = connection.channel()
        held = []
        while True:
            method, properties, _body = channel.basic_get("read-service.projector.dlq", auto_ack=False)
            if method is None:
                break
            if properties.message_id == message_id:
                channel.basic_ack(method.delivery_tag)
            else:
                held.append(method.delivery_tag)
        for tag in held:
            channel.basic_nack(tag, requeue=True)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def driven(system: System) -> Iterator[System]:
    accounts = _drive_commands(system)
    poison_id = str(uuid.uuid4())
    _publish(b"{not json", poison_id, "MoneyDeposited", "obs-poison")  # dead-lettered
    _redeliver_an_applied_event(accounts[0])
    # Wait until Prometheus holds what the drive caused (rabbitmq_prometheus refreshes every 5 s).
    _wait_for(lambda: system.query("cqrs_events_dead_lettered_total"), "the dead letter in Prometheus", 60)
    _wait_for(lambda: system.query("cqrs_events_duplicate_total > 0"), "the duplicate in Prometheus", 60)
    _wait_for(
        lambda: system.query('rabbitmq_detailed_queue_messages{queue="read-service.projector.dlq"} > 0'),
        "the dead-letter queue's depth in Prometheus",
        60,
    )
    _wait_for(lambda: system.query('cqrs_projection_mode{path="broker"} == 1'), "the projection mode", 30)
    yield system
    _remove_from_dead_letter_queue(poison_id)


def _still_empty(system: System, queries: dict[str, str], timeout: float = 20.0) -> list[str]:
    """The names of the queries that returned nothing, retried until `timeout`: rate() and increase() need
    two scrapes after the series appeared, and series appear as the drive reaches each process."""
    pending = dict(queries)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {name: promql for name, promql in pending.items() if not system.query(promql)}
        if pending:
            time.sleep(1)
    return sorted(pending)


def test_every_dashboard_expression_returns_data(driven):
    queries = {
        expression.source: expression.promql
        for expression in dashboard_expressions(rate_interval=RATE_INTERVAL)
        if expression.source not in DATA_DEPENDENT
    }
    assert len(queries) > 40
    assert _still_empty(driven, queries) == []


def test_every_metric_the_alerts_read_exists(driven):
    queries = {
        f"{rule['alert']}: {name}": name for rule in alert_rules() for name in metric_names(rule["expr"])
    }
    assert _still_empty(driven, queries) == []


def test_caused_conditions_fire_their_alert_expressions(driven):
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    dead_lettered = driven.query(rules["EventsDeadLettered"])
    assert {series["metric"]["reason"] for series in dead_lettered}
    dlq = driven.query(rules["DeadLetterQueueNotEmpty"])
    assert [series["metric"]["queue"] for series in dlq] == ["read-service.projector.dlq"]
    # And the healthy ones stay quiet.
    for quiet in ("ProjectorDown", "ProjectionOnFallbackPath", "ServiceDown", "OutboxEventTooOld"):
        assert driven.query(rules[quiet]) == [], quiet


def test_prometheus_evaluates_every_rule_without_error(driven):
    def all_evaluated() -> bool:
        groups = requests.get(f"{driven.url('prometheus')}/api/v1/rules", timeout=5).json()["data"]["groups"]
        return all(rule["health"] == "ok" for group in groups for rule in group["rules"])

    _wait_for(all_evaluated, "every rule evaluated with health ok", 15)


def test_gunicorn_workers_are_summed_into_one_metrics_page(driven):
    """Two workers answer requests; /metrics must count all of them whichever worker serves the scrape."""
    before = _responses(driven, "read-service")
    for _ in range(40):
        assert requests.get(f"{driven.url('read-service')}/healthz", timeout=5).ok
    for _ in range(5):  # any worker may answer the scrape: each must show the others' requests too
        assert _responses(driven, "read-service") >= before + 40


def _responses(system: System, service: str) -> float:
    text = requests.get(f"{system.url(service)}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("django_http_responses_total_by_status_total{")
    )


def test_one_commands_correlation_id_is_in_every_process_log(driven):
    correlation_id = f"obs-{uuid.uuid4().hex}"
    answer = _command(
        driven, "/api/accounts", {"owner": "obs-traced"}, **{"X-Correlation-ID": correlation_id}
    )
    assert answer.status_code == 201 and answer.headers["X-Correlation-ID"] == correlation_id
    account = answer.json()["account_id"]
    projected = requests.get(
        f"{driven.url('read-service')}/api/accounts/{account}", params={"min_version": 1}, timeout=15
    )
    assert projected.status_code == 200

    def seen_by(process: str) -> bool:
        return any(line.get("correlation_id") == correlation_id for line in driven.log_lines(process))

    for process in ("write-service", "relay", "projector"):
        _wait_for(lambda p=process: seen_by(p), f"{correlation_id} in the {process} log", 15)
        for line in driven.log_lines(process):
            assert line.get("service") == process, line
