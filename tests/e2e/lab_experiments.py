"""Running a laboratory experiment (`python -m lab <name>`) against the system an end-to-end test started.

The experiment is a separate process, as when a person runs `make experiment`; it finds the system through
the variables lab/_support.py documents. Its last line, `result: {...}`, holds the numbers it printed, which
the tests compare with the databases and the APIs.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devkit.processes import PYTHON, REPO
from devkit.system_processes import reporting_broker_url
from tests.e2e.conftest import TOKEN, System


@dataclass(frozen=True)
class ExperimentRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.startswith("result: ")]
        assert lines, f"no result line:\n{self.stdout}\n{self.stderr}"
        return json.loads(lines[-1].removeprefix("result: "))

    def shows(self, label: str, value: Any) -> bool:
        """Whether an `Observed:` line reads `<label>  <value>` (so the prose says what the numbers say)."""
        return any(
            line.strip().startswith(label) and line.strip().removeprefix(label).strip().startswith(str(value))
            for line in self.stdout.splitlines()
        )


def lab_environment(system: System, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    relay, projector = system.processes["relay"].env, system.processes["projector"].env
    return {
        **os.environ,
        "LAB_WRITE_API": system.write_api,
        "LAB_READ_API": system.read_api,
        "LAB_API_TOKEN": TOKEN,
        "WRITE_DATABASE_URL": system.write_database_url,
        "READ_DATABASE_URL": system.read_database_url,
        "LAB_RABBITMQ_URL": system.read_broker_url,
        "LAB_REPORTING_RABBITMQ_URL": reporting_broker_url(system.read_broker_url),
        "LAB_RELAY_METRICS": f"http://127.0.0.1:{relay['RELAY_METRICS_PORT']}/metrics",
        "LAB_PROJECTOR_METRICS": f"http://127.0.0.1:{projector['PROJECTOR_METRICS_PORT']}/metrics",
        **(extra or {}),
    }


def run_experiment(
    system: System, name: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> ExperimentRun:
    completed = subprocess.run(
        [PYTHON, "-m", "lab", name, *args],
        cwd=REPO,
        env=lab_environment(system, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return ExperimentRun(completed.returncode, completed.stdout, completed.stderr)
