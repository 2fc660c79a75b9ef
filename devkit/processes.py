"""One process launcher: a process of the system started as a user starts it (`python -m write_service
relay`, gunicorn, ...), its JSON log lines read as it runs; and `free_port` for the servers it listens on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from devkit import code_path
from devkit.polling import eventually

REPO = Path(__file__).resolve().parents[1]
PYTHON = str(Path(sys.executable))
# The systems tests, the benchmark and the lab start run on development secrets (test databases, the local
# clusters' passwords) with DJANGO_DEBUG off, which every process refuses unless told this is a development
# machine (cqrs_common/development_secrets.py). A launcher adds this to the environment it gives.
DEVELOPMENT_SECRETS_ALLOWED = {"ALLOW_DEVELOPMENT_SECRETS": "true"}


def free_port() -> int:
    """A port nothing listens on now (the OS picks it), for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceProcess:
    """One process of the system, its stderr log lines (JSON) collected in the background, and copied to
    `log_path` when one is given (a file to read after the run, or while it goes on)."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        own = {"LOG_FORMAT": "json", "SERVICE_NAME": name, **DEVELOPMENT_SECRETS_ALLOWED}
        self.env = {**os.environ, **own, **env}
        self.log_path = log_path
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> ServiceProcess:
        # Opened here, not in the thread: the file exists as soon as the process does.
        log = self.log_path.open("w") if self.log_path is not None else None
        # Asked to record the modules its work runs (a test that follows one command through the system).
        argv = code_path.traced(self.argv) if code_path.OUTPUT_VARIABLE in self.env else self.argv
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a signal to the test's process group never reaches it
        )
        threading.Thread(target=self._collect, args=(log,), daemon=True, name=f"log-{self.name}").start()
        return self

    def _collect(self, log: TextIO | None) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if log is not None:
                log.write(line)
                log.flush()  # each line readable at once, as a test polls the file for an event
            with self._lock:
                self.raw.append(line.rstrip("\n"))
                try:
                    parsed = json.loads(line)
                except ValueError:
                    continue
                if isinstance(parsed, dict):
                    self.lines.append(parsed)
        if log is not None:
            log.close()

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                line
                for line in self.lines
                if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
            ]

    def wait_for_log(self, event: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            if (
                self.process is not None
                and self.process.poll() is not None
                and not self.logged(event, **fields)
            ):
                raise AssertionError(f"{self.name} exited ({self.process.returncode}):\n{self.output()}")
            found = self.logged(event, **fields)
            return found[0] if found else None

        try:
            return eventually(seen, timeout, what=f"{self.name} to log {event}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} output ---\n{self.output()}") from None

    def output(self, last: int = 60) -> str:
        with self._lock:
            return "\n".join(self.raw[-last:])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a machine or container dies."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL if it does not stop in time)."""
        assert self.process is not None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


def relay_process(name: str, env: Mapping[str, str], log_path: Path | None = None) -> ServiceProcess:
    return ServiceProcess(name, [PYTHON, "-m", "write_service", "relay"], env, log_path=log_path)
