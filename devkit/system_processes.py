"""The system's processes, launched as a user launches them, on ports the caller chooses.

write-service and read-service run under gunicorn with the configuration every packaging uses
(`-c python:cqrs_common.gunicorn_conf`); the relay is `python -m write_service relay` and the projector
`python -m read_service projector`, each with its /metrics on a given port; the reporting subscriber
(`python -m read_service reporting`) by the tests and experiments that look at it. The command lines and
the variables each process is given live here once, for the three places that run the whole system: the
end-to-end tests (tests/e2e/conftest.py), the benchmark (bench/system.py) and the live observability system
(observability/live_system.py). What differs between them (an API token, a worker count, a log level, a log
file) is passed in by the caller.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from devkit.polling import eventually
from devkit.processes import PYTHON, ServiceProcess, free_port, relay_process

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
GUNICORN_CONFIG = "python:cqrs_common.gunicorn_conf"

# What each pipeline process logs once it does its work: the projector consumes from its queue once it is
# connected, and only the relay that holds the outbox's leadership publishes (a standby waits).
PROJECTOR_READY_EVENT = "broker_connected"
RELAY_READY_EVENT = "relay_leadership_acquired"
REPORTING_READY_EVENT = "reporting_subscribed"

# read-service as every packaging runs it (docker-compose.yml, deploy/k8s, deploy/local/supervisord.conf):
# gthread workers, of whose threads read-your-writes waits may take at most half.
READ_SERVICE_THREADS = {"WEB_THREADS": "8", "READ_WAIT_MAX_CONCURRENT": "4"}

# Not inherited from the caller's environment: gunicorn_conf makes a private multiprocess directory per run
# when it is unset, whereas one inherited directory would be shared by both web services (each adding up the
# other's metrics, each emptying it when it starts) and would switch the relay and the projector to
# multiprocess mode.
_NOT_INHERITED = ("PROMETHEUS_MULTIPROC_DIR",)


@dataclass(frozen=True)
class Backends:
    """What one system's processes connect to: its two databases, and its broker as each side's user sees
    it (one vhost, two users)."""

    write_database_url: str
    read_database_url: str
    write_broker_url: str
    read_broker_url: str


@dataclass(kw_only=True)
class RunningSystem:
    """A system's processes by role ("write-service", "read-service", "relay", "projector") and the ports its
    web services listen on (free ones unless given). The end-to-end tests' System and the benchmark's
    BenchSystem extend it with their own setup and helpers."""

    write_port: int = field(default_factory=free_port)
    read_port: int = field(default_factory=free_port)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def write_api(self) -> str:
        return f"http://127.0.0.1:{self.write_port}"

    @property
    def read_api(self) -> str:
        return f"http://127.0.0.1:{self.read_port}"

    def start_web_services(
        self, backends: Backends, env: Mapping[str, str], workers: Mapping[str, int] | None = None
    ) -> None:
        """Starts write-service and read-service on their ports, with `env` and their number of gunicorn
        workers from `workers` by name (gunicorn_conf's default where none is given); returns at once,
        `wait_until_web_ready` waits for them."""
        for name, package, port in (
            ("write-service", "write_service", self.write_port),
            ("read-service", "read_service", self.read_port),
        ):
            count = (workers or {}).get(name)
            own = {**env, "WEB_CONCURRENCY": str(count)} if count is not None else env
            self.processes[name] = web_service(name, package, port, backends, own)

    def wait_until_web_ready(self, timeout: float) -> None:
        wait_until_ready(self.write_api, self.read_api, timeout=timeout)


def web_service(
    name: str,
    package: str,
    port: int,
    backends: Backends,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> ServiceProcess:
    """write-service (`package` write_service) or read-service (read_service) under gunicorn on
    127.0.0.1:`port`, started; `wait_until_ready` waits until it answers."""
    broker = backends.write_broker_url if package == "write_service" else backends.read_broker_url
    own = {"DJANGO_SETTINGS_MODULE": f"{package}.settings", "RABBITMQ_URL": broker}
    if package == "read_service":
        own.update(READ_SERVICE_THREADS)
    argv = [GUNICORN, "-c", GUNICORN_CONFIG, "--bind", f"127.0.0.1:{port}", f"{package}.wsgi"]
    return _started(ServiceProcess(name, argv, _environment(backends, own, env), log_path=log_path))


def wait_until_ready(*apis: str, timeout: float) -> None:
    """Waits until every web service (its base URL) answers /readyz with 200: its own database answers
    (readiness checks nothing else; the broker is the relay's and the projector's concern)."""
    for api in apis:
        eventually(lambda api=api: _ready(api), timeout=timeout, what=f"{api}/readyz")


def relay(
    name: str,
    backends: Backends,
    metrics_port: int,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> ServiceProcess:
    """The outbox relay, started, publishing to the write side's broker; it leads once it logs
    RELAY_READY_EVENT."""
    own = {"RABBITMQ_URL": backends.write_broker_url, "RELAY_METRICS_PORT": str(metrics_port)}
    return _started(relay_process(name, _environment(backends, own, env), log_path=log_path))


def projector(
    name: str,
    backends: Backends,
    metrics_port: int,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> ServiceProcess:
    """The projector, started, consuming from the read side's broker once it logs PROJECTOR_READY_EVENT."""
    own = {"RABBITMQ_URL": backends.read_broker_url, "PROJECTOR_METRICS_PORT": str(metrics_port)}
    argv = [PYTHON, "-m", "read_service", "projector"]
    return _started(ServiceProcess(name, argv, _environment(backends, own, env), log_path=log_path))


def reporting(
    name: str,
    backends: Backends,
    metrics_port: int,
    broker_url: str,
    *,
    subscription: str = "daily-totals",
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> ServiceProcess:
    """The reporting subscriber (`python -m read_service reporting`), started on the broker as its own user
    sees it (`reporting_broker_url`); it has bound its queue once it logs REPORTING_READY_EVENT."""
    own = {"RABBITMQ_URL": broker_url, "REPORTING_METRICS_PORT": str(metrics_port)}
    argv = [PYTHON, "-m", "read_service", "reporting", "--subscription", subscription]
    return _started(ServiceProcess(name, argv, _environment(backends, own, env), log_path=log_path))


def reporting_broker_url(read_broker_url: str) -> str:
    """The reporting user's URL on the broker and vhost of `read_broker_url` (deploy/local/infra.sh gives it
    the development password `reporting`)."""
    parts = urlsplit(read_broker_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"reporting:reporting@{host}"))


def stop(processes: Iterable[ServiceProcess], timeout: float = 20.0) -> None:
    """SIGTERM to every process at once (each finishes what it has in hand) and waits for all of them; one
    still running after `timeout` seconds gets SIGKILL."""
    stoppers = [threading.Thread(target=process.terminate, args=(timeout,)) for process in processes]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()


def _environment(
    backends: Backends, own: Mapping[str, str], extra: Mapping[str, str] | None
) -> dict[str, str]:
    # Both database URLs go to every process, so none of them follows a URL inherited from the caller's
    # environment to another system's database.
    return {
        "WRITE_DATABASE_URL": backends.write_database_url,
        "READ_DATABASE_URL": backends.read_database_url,
        **own,
        **(extra or {}),
    }


def _started(process: ServiceProcess) -> ServiceProcess:
    for variable in _NOT_INHERITED:
        process.env.pop(variable, None)
    return process.start()


def _ready(api: str) -> bool:
    try:
        return requests.get(f"{api}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
