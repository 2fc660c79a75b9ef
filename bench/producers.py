"""Runs producer processes (bench/producer.py) side by side, starting them all at the same moment."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.infra import Databases
from devkit.processes import PYTHON, REPO

READY_TIMEOUT_SECONDS = 120


@dataclass(frozen=True, slots=True)
class ProducerTotals:
    commands: int
    events: int
    rejected: int
    started_at: float  # epoch seconds of the go signal


def run_producers(
    databases: Databases,
    *,
    count: int,
    seconds: float = 0.0,
    events: int = 0,
    accounts: int = 25,
    tick: Callable[[], None] = lambda: None,
) -> ProducerTotals:
    """`count` producers, each running `seconds` or making `events // count` events; `tick` is called while
    they run (the caller's progress)."""
    log_dir = Path(tempfile.mkdtemp(prefix="cqrs-bench-producers-"))
    args = ["--seconds", str(seconds)] if seconds else ["--events", str(max(events // count, 1))]
    producers: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        for seed in range(count):
            log = log_dir / f"producer-{seed}.log"
            with log.open("w") as stderr:
                process = subprocess.Popen(
                    [PYTHON, "-m", "bench.producer", *args, "--accounts", str(accounts), "--seed", str(seed)],
                    cwd=REPO,
                    env={
                        **os.environ,
                        "WRITE_DATABASE_URL": databases.write_database_url,
                        "LOG_FORMAT": "json",
                    },
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                )
            producers.append((process, log))
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for process, log in producers:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready" or time.monotonic() > deadline:
                raise RuntimeError(f"a producer did not start:\n{_tail(log)}")
        started_at = time.time()
        for process, _log in producers:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.close()
        while any(process.poll() is None for process, _log in producers):
            tick()
            time.sleep(0.1)
        summaries: list[dict[str, Any]] = []
        for process, log in producers:
            assert process.stdout is not None
            output = process.stdout.read()
            if process.returncode != 0:
                raise RuntimeError(f"a producer failed ({process.returncode}):\n{_tail(log)}")
            summaries.append(json.loads(output.strip().splitlines()[-1]))
    finally:
        for process, _log in producers:
            if process.poll() is None:
                process.kill()
                process.wait()
    for _process, log in producers:
        log.unlink(missing_ok=True)
    log_dir.rmdir()
    return ProducerTotals(
        commands=sum(s["commands"] for s in summaries),
        events=sum(s["events"] for s in summaries),
        rejected=sum(s["rejected"] for s in summaries),
        started_at=started_at,
    )


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
