"""The system under measurement, started as a user starts it (tests/support/processes.py) on free ports:
write-service and read-service under gunicorn with their default settings, the relay and the projector.

The relay and the projector (the pipeline) are started and stopped on their own: the drain scenario
commits while they are down, and the outage scenario moves them to a private RabbitMQ node.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

from bench.infra import Databases
from tests.support.processes import PYTHON, ServiceProcess, eventually, free_port, relay_process

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
TOKEN = "bench-token"
START_TIMEOUT_SECONDS = 60


@dataclass
class BenchSystem:
    databases: Databases
    write_port: int = field(default_factory=free_port)
    read_port: int = field(default_factory=free_port)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)  # relay, projector: their /metrics
    _starts: int = 0

    @property
    def write_api(self) -> str:
        return f"http://127.0.0.1:{self.write_port}"

    @property
    def read_api(self) -> str:
        return f"http://127.0.0.1:{self.read_port}"

    def start_web(self) -> None:
        for name, package, port in (
            ("write-service", "write_service", self.write_port),
            ("read-service", "read_service", self.read_port),
        ):
            self.processes[name] = ServiceProcess(
                name,
                [
                    GUNICORN,
                    "-c",
                    "python:cqrs_common.gunicorn_conf",
                    f"--bind=127.0.0.1:{port}",
                    f"{package}.wsgi",
                ],
                {
                    "DJANGO_SETTINGS_MODULE": f"{package}.settings",
                    "WRITE_DATABASE_URL": self.databases.write_url,
                    "READ_DATABASE_URL": self.databases.read_url,
                    "RABBITMQ_URL": (
                        self.databases.write_broker_url
                        if package == "write_service"
                        else self.databases.read_broker_url
                    ),
                    "CQRS_API_TOKENS": TOKEN,
                },
            ).start()
        for api in (self.write_api, self.read_api):
            eventually(lambda api=api: _ready(api), timeout=START_TIMEOUT_SECONDS, what=f"{api}/readyz")

    def start_pipeline(self, write_broker_url: str, read_broker_url: str) -> float:
        """Starts the projector and the relay together; returns when both were ready (epoch seconds, from
        their own log lines: the projector connected to the broker, the relay leading)."""
        self._starts += 1
        self.metrics_ports = {"relay": free_port(), "projector": free_port()}
        projector = ServiceProcess(
            f"projector-{self._starts}",
            [PYTHON, "-m", "read_service", "projector"],
            {
                "READ_DATABASE_URL": self.databases.read_url,
                "RABBITMQ_URL": read_broker_url,
                "PROJECTOR_METRICS_PORT": str(self.metrics_ports["projector"]),
            },
        ).start()
        relay = relay_process(
            f"relay-{self._starts}",
            {
                "WRITE_DATABASE_URL": self.databases.write_url,
                "RABBITMQ_URL": write_broker_url,
                "RELAY_METRICS_PORT": str(self.metrics_ports["relay"]),
            },
        ).start()
        self.processes["projector"], self.processes["relay"] = projector, relay
        ready = [
            projector.wait_for_log("broker_connected", timeout=START_TIMEOUT_SECONDS),
            relay.wait_for_log("relay_leadership_acquired", timeout=START_TIMEOUT_SECONDS),
        ]
        return max(logged_at(line) for line in ready)

    def stop_pipeline(self) -> None:
        """SIGTERM to both at once (each finishes the batch in hand)."""
        stoppers = [
            threading.Thread(target=self.processes.pop(name).terminate)
            for name in ("relay", "projector")
            if name in self.processes
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def stop(self) -> None:
        self.stop_pipeline()
        for process in self.processes.values():
            process.terminate()
        self.processes.clear()

    def failed_processes(self) -> list[str]:
        return [name for name, process in self.processes.items() if not process.running]


def logged_at(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def _ready(api: str) -> bool:
    try:
        return requests.get(f"{api}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
