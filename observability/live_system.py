"""The whole system on free ports with a real Prometheus scraping it, as `make run` runs it.

Used by the live observability test (tests/e2e/test_observability_live.py) and by the dashboard rendering
(render_dashboard.py). Write-service and read-service run under gunicorn with two workers each, beside the
relay, the projector and the reporting subscriber; each process writes JSON log lines to `<home>/<name>.log`.
Prometheus loads the alert rules and scrapes the five processes and RabbitMQ's rabbitmq_prometheus plugin
under the job names every packaging uses, so dashboards and rules work unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from devkit import system_processes
from devkit.polling import eventually
from devkit.private_rabbitmq import PrivateRabbitMQ, enabled_plugins
from devkit.processes import DEVELOPMENT_SECRETS_ALLOWED, PYTHON, REPO, ServiceProcess, free_port

RULES = REPO / "observability" / "prometheus" / "rules"
PROCESSES = ("write-service", "read-service", "relay", "projector", "reporting")
READY_AT = {
    "write-service": "/readyz",
    "read-service": "/readyz",
    "relay": "/metrics",
    "projector": "/metrics",
    "reporting": "/metrics",
    "prometheus": "/-/ready",
}


class PrometheusMissing(RuntimeError):
    """No `prometheus` binary on PATH (deploy/local/ensure-prometheus.sh installs Debian's)."""


@dataclass(frozen=True)
class Environment(system_processes.Backends):
    """What the system runs against: its two databases, each side's broker URL, and RabbitMQ's metrics."""

    rabbitmq_metrics: str  # host:port of the rabbitmq_prometheus plugin
    vhost: str  # the only vhost whose queues are scraped: other vhosts' dead letters are not this system's
    scrape_interval: str = "1s"


# What a server that is still starting answers: no connection, or a refused one.
NOT_YET = (requests.RequestException, OSError)


@dataclass
class LiveSystem:
    home: Path
    environment: Environment
    debug_logs: bool = False  # the relay and the projector log each event (with its correlation id) at DEBUG
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    # ------------------------------------------------------------------------------------------ start, stop

    def start(self) -> LiveSystem:
        """Migrates both databases, starts the five processes and Prometheus, and waits until all answer."""
        if shutil.which("prometheus") is None:
            raise PrometheusMissing("prometheus is not installed (deploy/local/ensure-prometheus.sh)")
        for name in (*PROCESSES, "prometheus"):
            self.ports[name] = free_port()
        base = self._base_env()
        for module in ("write_service", "read_service"):
            subprocess.run(
                [PYTHON, "-m", module, "migrate", "--no-input", "-v0"], env=base, check=True, cwd=REPO
            )
        try:
            self._start_processes()
            for name, path in READY_AT.items():
                url = f"{self.url(name)}{path}"
                eventually(lambda url=url: requests.get(url, timeout=2).ok, 30, 0.2, url, NOT_YET)
            # One relay leads per database: a standby here would leave this system's events to another one.
            eventually(
                self._relay_leads,
                30,
                0.2,
                "the relay to lead (no other relay may run on this write database)",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _relay_leads(self) -> bool:
        return bool(self.processes["relay"].logged(system_processes.RELAY_READY_EVENT))

    def stop(self) -> None:
        system_processes.stop(self.processes.values())

    def _base_env(self) -> dict[str, str]:
        """The migrations' environment: the processes are given theirs by system_processes."""
        env = {
            **os.environ,
            "WRITE_DATABASE_URL": self.environment.write_database_url,
            "READ_DATABASE_URL": self.environment.read_database_url,
            "LOG_FORMAT": "json",
            **DEVELOPMENT_SECRETS_ALLOWED,
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # as for the processes: see system_processes
        return env

    def _start_processes(self) -> None:
        env = self.environment
        web = {"WEB_CONCURRENCY": "2"}
        for name, package in (("write-service", "write_service"), ("read-service", "read_service")):
            self.processes[name] = system_processes.web_service(
                name, package, self.ports[name], env, web, self._log(name)
            )
        pipeline = {"LOG_LEVEL": "DEBUG" if self.debug_logs else "INFO"}
        self.processes["relay"] = system_processes.relay(
            "relay",
            env,
            self.ports["relay"],
            {**pipeline, "RELAY_POLL_INTERVAL_SECONDS": "0.2"},
            self._log("relay"),
        )
        self.processes["projector"] = system_processes.projector(
            "projector", env, self.ports["projector"], pipeline, self._log("projector")
        )
        # On the read side's broker URL: a private node has one user for everyone.
        self.processes["reporting"] = system_processes.reporting(
            "reporting",
            env,
            self.ports["reporting"],
            env.read_broker_url,
            env=pipeline,
            log_path=self._log("reporting"),
        )
        config = self.home / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.prometheus_config()))
        self.processes["prometheus"] = ServiceProcess(
            "prometheus",
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={self.home / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
            ],
            {},
            log_path=self._log("prometheus"),
        ).start()

    def _log(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def prometheus_config(self) -> dict:
        """prometheus.native.yml's jobs, pointed at this system's ports."""

        def job(name: str, target: str, **extra: Any) -> dict:
            return {"job_name": name, "static_configs": [{"targets": [target]}], **extra}

        rabbitmq = self.environment.rabbitmq_metrics
        interval = self.environment.scrape_interval
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(path) for path in sorted(RULES.glob("*.yml"))],
            "scrape_configs": [
                *(job(name, f"127.0.0.1:{self.ports[name]}") for name in PROCESSES),
                job("rabbitmq", rabbitmq),
                job(
                    "rabbitmq-queues",
                    rabbitmq,
                    metrics_path="/metrics/detailed",
                    params={
                        "family": ["queue_coarse_metrics", "queue_consumer_count"],
                        "vhost": [self.environment.vhost],
                    },
                ),
                job("prometheus", f"127.0.0.1:{self.ports['prometheus']}"),
            ],
        }

    # ------------------------------------------------------------------------------------------ inspection

    def query(self, promql: str) -> list[dict]:
        """An instant query's result vector (an empty list when the expression has no data)."""
        answer = requests.post(f"{self.url('prometheus')}/api/v1/query", data={"query": promql}, timeout=30)
        body = answer.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus refused {promql}: {body}")
        return body["data"]["result"]

    def log_lines(self, name: str) -> list[dict]:
        lines = []
        for line in self._log(name).read_text().splitlines():
            try:
                parsed = json.loads(line)
            except ValueError:
                continue  # a line that is not JSON (a traceback printed by Python itself)
            if isinstance(parsed, dict):
                lines.append(parsed)
        return lines


def private_broker_with_metrics() -> PrivateRabbitMQ:
    """A RabbitMQ node of its own (devkit/private_rabbitmq.py) with the rabbitmq_prometheus plugin on a free
    port: a broker this system may stop and start, with the metrics the dashboards read."""
    node = PrivateRabbitMQ()
    node.metrics_address = f"127.0.0.1:{free_port()}"
    host, port = node.metrics_address.split(":")
    (node.base / "enabled_plugins").write_text(enabled_plugins("rabbitmq_prometheus"))
    with (node.base / "rabbitmq.conf").open("a") as conf:  # written (and owned) by PrivateRabbitMQ
        conf.write(f"prometheus.tcp.ip = {host}\nprometheus.tcp.port = {port}\n")
    return node
