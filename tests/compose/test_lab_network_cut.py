"""The network-cut experiment (lab/network_cut.py) against the Compose system, run as a person runs it
(`python -m lab network-cut` with LAB_SYSTEM=compose), its numbers checked against the system."""

from __future__ import annotations

import json
import subprocess

import requests

from devkit.processes import PYTHON, REPO
from tests.compose.conftest import PROJECT, ComposeSystem


def test_the_network_cut_experiment(system: ComposeSystem, http: requests.Session) -> None:
    run = subprocess.run(
        [PYTHON, "-m", "lab", "network-cut", "--cut-seconds", "10"],
        cwd=REPO,
        env={**system.env, "LAB_SYSTEM": "compose", "COMPOSE_PROJECT_NAME": PROJECT},
        capture_output=True,
        text=True,
        timeout=290,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("result: ")]
    assert lines, run.stdout + run.stderr
    result = json.loads(lines[-1].removeprefix("result: "))
    assert run.returncode == 0, run.stdout + run.stderr

    # docker-compose.yml's networks: each side reaches its own database and the broker, not the other's.
    assert result["reach"]["write-service"] == {"write-db": True, "read-db": False, "rabbitmq": True}
    assert result["reach"]["relay"] == {"write-db": True, "read-db": False, "rabbitmq": True}
    assert result["reach"]["read-service"] == {"write-db": False, "read-db": True, "rabbitmq": True}
    assert result["reach"]["projector"] == {"write-db": False, "read-db": True, "rabbitmq": True}
    # Cut off from the broker, the read side was served fresh through replication, then the broker came back.
    output = run.stdout
    assert result["cut_networks"] == [f"{PROJECT}_monitoring", f"{PROJECT}_read"], output
    assert result["deposits"] > 0 and result["stale_reads"] == 0, output
    assert result["applied_during_cut"]["replication"] > 0, output
    assert result["broker_back_seconds"] is not None and result["consistent"] is True, output
    system.assert_read_side_exact(http)
