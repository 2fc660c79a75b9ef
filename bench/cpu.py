"""Where the two cores go during a scenario: CPU time by process group, read from /proc.

Every process on the machine is put in one group when it is first seen: the system's four processes with
their children (gunicorn's workers), each PostgreSQL cluster (found by its postmaster) with its replication
processes apart (the run's own walsender and apply worker: the fallback path; other pairs' walsenders:
subscriptions nothing uses during the run), RabbitMQ, the benchmark's own load (this process, its
producers, wrk) and everything else. A sampler thread reads each process's utime + stime every
SAMPLE_SECONDS, so a producer or a backend that lives for part of the scenario is counted up to its last
sample (a short-lived connection's backend may be missed: at most SAMPLE_SECONDS of its time).

A group's figure is CPU seconds per wall second: 1.0 is one core busy, 2.0 both.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_SECONDS = 0.25
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
# `postgres: 15/cqrs_write: walsender cqrs_replicator 127.0.0.1(44210) START_REPLICATION`
_POSTGRES_TITLE = re.compile(r"postgres: [^:]+: (?P<what>.*)")

FALLBACK_GROUPS = ("replication: walsender", "replication: apply worker")


@dataclass(frozen=True, slots=True)
class Roles:
    """The pids that name the groups. Clusters are given by their postmaster's pid."""

    # write-service, read-service, relay, projector: the process each started, asked at every sample (the
    # outage scenario restarts the pipeline mid-scenario)
    system: Callable[[], Mapping[str, int]]
    postmasters: Mapping[str, int]  # write-db, read-db
    walsender: int | None  # the run's own subscription's, on the write cluster
    apply_worker: int | None  # the run's own subscription's, on the read cluster
    own: int = field(default_factory=os.getpid)


@dataclass(frozen=True, slots=True)
class _Process:
    parent: int
    command: str  # comm, or the process title for PostgreSQL's


class CpuMeter:
    """Samples in the background between `start` and `stop`; `stop` returns each group's share of a core."""

    def __init__(self, roles: Roles) -> None:
        self._roles = roles
        self._group: dict[int, str] = {}
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-meter")
        self._began = 0.0
        self.wall = 0.0  # seconds from start to stop

    def start(self) -> CpuMeter:
        self._began = time.monotonic()
        self._sample(first=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stopping.set()
        self._thread.join()
        self._sample()
        wall = self.wall = time.monotonic() - self._began
        shares: dict[str, float] = {}
        for pid, last in self._last.items():
            group = self._group[pid]
            shares[group] = shares.get(group, 0.0) + last - self._first.get(pid, 0.0)
        return {group: round(seconds / wall, 4) for group, seconds in sorted(shares.items()) if wall > 0}

    def _run(self) -> None:
        while not self._stopping.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        processes = _processes()
        system = self._roles.system()
        for pid in processes:
            used = _cpu_seconds(pid)
            if used is None:
                continue  # gone since the listing
            if pid not in self._group:
                self._group[pid] = _group_of(pid, processes, system, self._roles)
                # Born during the scenario: all of its time is the scenario's.
                self._first[pid] = used if first else 0.0
            self._last[pid] = used


def _group_of(pid: int, processes: Mapping[int, _Process], system: Mapping[str, int], roles: Roles) -> str:
    if pid == roles.walsender:
        return FALLBACK_GROUPS[0]
    if pid == roles.apply_worker:
        return FALLBACK_GROUPS[1]
    command = processes[pid].command
    for ancestor in _lineage(pid, processes):
        for name, root in system.items():
            if ancestor == root:
                return name
        for name, postmaster in roles.postmasters.items():
            if ancestor == postmaster:
                return "other pairs' walsenders" if "walsender" in command else name
        if ancestor == roles.own:
            return "load (benchmark, producers, wrk)"
        if processes[ancestor].command == "beam.smp":
            return "rabbitmq"
    return "rest of the machine"


def _lineage(pid: int, processes: Mapping[int, _Process]) -> list[int]:
    """The process and its ancestors, nearest first."""
    chain = []
    while pid in processes and pid not in chain:
        chain.append(pid)
        pid = processes[pid].parent
    return chain


def _processes() -> dict[int, _Process]:
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if command.startswith("postgres"):
            title = _title(entry)
            if match := _POSTGRES_TITLE.match(title):
                command = match["what"]
        found[int(entry.name)] = _Process(parent, command)
    return found


def _title(entry: Path) -> str:
    try:
        return (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command: state, ppid, ... utime is the 12th field, stime the 13th (proc(5): 14 and 15).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
