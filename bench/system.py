"""The system under measurement, started as a user starts it (devkit/system_processes.py) on free
ports: write-service and read-service under gunicorn with their default settings, the relay and the projector.

The relay and the projector (the pipeline) are started and stopped on their own: the drain scenario
commits while they are down, and the outage scenario moves them to a private RabbitMQ node. With
`projectors` > 1 (`--projectors`), that many projectors share the partitions, started together as
`make run PROJECTORS=N` starts them: `projector`, `projector-1`, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from bench.infra import Databases
from devkit import system_processes
from devkit.processes import free_port

TOKEN = "bench-token"
START_TIMEOUT_SECONDS = 60


@dataclass
class BenchSystem(system_processes.RunningSystem):
    databases: Databases
    projectors: int = 1
    metrics_ports: dict[str, int] = field(default_factory=dict)  # relay, projector(s): their /metrics
    _starts: int = 0

    def start_web(self) -> None:
        backends = self._backends(self.databases.write_broker_url, self.databases.read_broker_url)
        self.start_web_services(backends, {"CQRS_API_TOKENS": TOKEN})
        self.wait_until_web_ready(timeout=START_TIMEOUT_SECONDS)

    def start_pipeline(self, write_broker_url: str, read_broker_url: str) -> float:
        """Starts the projector and the relay together; returns when both were ready (epoch seconds, from
        their own log lines: the projector connected to the broker, the relay leading)."""
        self._starts += 1
        self.metrics_ports = {"relay": free_port()}
        backends = self._backends(write_broker_url, read_broker_url)
        projectors = []
        for ordinal, name in enumerate(self.projector_names):
            self.metrics_ports[name] = free_port()
            numbering = {"PROJECTOR_ORDINAL": str(ordinal), "PROJECTOR_REPLICAS": str(self.projectors)}
            projector = system_processes.projector(
                f"{name}-{self._starts}", backends, self.metrics_ports[name], numbering
            )
            self.processes[name] = projector
            projectors.append(projector)
        relay = system_processes.relay(f"relay-{self._starts}", backends, self.metrics_ports["relay"])
        self.processes["relay"] = relay
        ready = [
            *(
                p.wait_for_log(system_processes.PROJECTOR_READY_EVENT, timeout=START_TIMEOUT_SECONDS)
                for p in projectors
            ),
            relay.wait_for_log(system_processes.RELAY_READY_EVENT, timeout=START_TIMEOUT_SECONDS),
        ]
        return max(logged_at(line) for line in ready)

    @property
    def projector_names(self) -> list[str]:
        return ["projector", *(f"projector-{i}" for i in range(1, self.projectors))]

    def stop_pipeline(self) -> None:
        """SIGTERM to both at once (each finishes the batch in hand)."""
        system_processes.stop(
            [self.processes.pop(name) for name in ("relay", *self.projector_names) if name in self.processes]
        )

    def stop(self) -> None:
        self.stop_pipeline()
        system_processes.stop(self.processes.values())
        self.processes.clear()

    def _backends(self, write_broker_url: str, read_broker_url: str) -> system_processes.Backends:
        return replace(self.databases, write_broker_url=write_broker_url, read_broker_url=read_broker_url)

    def failed_processes(self) -> list[str]:
        return [name for name, process in self.processes.items() if not process.running]


def logged_at(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
