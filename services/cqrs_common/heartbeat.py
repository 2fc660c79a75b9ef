"""Health from the work itself: the relay's and the projector's loops beat; /readyz and /healthz read them.

A loop beats on every turn (each wait it makes is bounded, so an idle loop beats too) and says with each beat
what it is doing: `ok` (doing its work), `standby` (healthy, on purpose not working: a relay that is not the
leader) or `unavailable` (waiting for the database or the broker to come back). A loop that stopped beating is
stuck where it last beat: on a statement, a lock, a socket.

- readiness: every loop beat within `ready_seconds` and none is `unavailable`. 200 with `status` `ok`, or
  `standby` when a loop stands by; 503 with `status` `unavailable` otherwise.
- liveness: every loop beat within `live_seconds`. 200 `ok`; 503 `stuck` otherwise, and Kubernetes restarts
  the process.

A beat is a monotonic timestamp and two strings set by one attribute assignment, so the HTTP thread reads a
whole beat without a lock and the loops pay nothing for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "standby", "unavailable"]
OK: Status = "ok"
STANDBY: Status = "standby"
UNAVAILABLE: Status = "unavailable"


@dataclass(frozen=True, slots=True)
class Beat:
    at: float  # time.monotonic() of the beat
    state: str  # what the loop does, for the operator: "leader", "consuming", "database_unavailable", ...
    status: Status


class Heartbeat:
    """One loop's last beat. Until its first beat a loop is `starting` (unavailable) since its creation."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._beat = Beat(time.monotonic(), "starting", UNAVAILABLE)

    def beat(self, state: str, status: Status = OK) -> None:
        self._beat = Beat(time.monotonic(), state, status)

    def touch(self) -> None:
        """A beat that keeps the state: progress inside a long step (a batch of a large backlog)."""
        last = self._beat
        self._beat = Beat(time.monotonic(), last.state, last.status)

    @property
    def last(self) -> Beat:
        return self._beat


@dataclass(frozen=True, slots=True)
class HealthBounds:
    ready_seconds: float  # WORKER_READINESS_SECONDS
    live_seconds: float  # WORKER_LIVENESS_SECONDS


class WorkerHealth:
    """A process's loops and the bounds their beats are judged by; answers `/readyz` and `/healthz`."""

    def __init__(self, bounds: HealthBounds, *loops: Heartbeat) -> None:
        self.bounds = bounds
        self.loops = loops

    def readiness(self) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        beats = {loop.name: loop.last for loop in self.loops}
        stale = {name for name, beat in beats.items() if now - beat.at > self.bounds.ready_seconds}
        statuses = {UNAVAILABLE if name in stale else beat.status for name, beat in beats.items()}
        status = UNAVAILABLE if UNAVAILABLE in statuses else STANDBY if STANDBY in statuses else OK
        body = {
            "status": status,
            "bound_seconds": self.bounds.ready_seconds,
            "loops": _loops(beats, now, stale),
        }
        return (503 if status == UNAVAILABLE else 200), body

    def liveness(self) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        beats = {loop.name: loop.last for loop in self.loops}
        stuck = {name for name, beat in beats.items() if now - beat.at > self.bounds.live_seconds}
        body = {
            "status": "stuck" if stuck else OK,
            "bound_seconds": self.bounds.live_seconds,
            "loops": _loops(beats, now, stuck),
        }
        return (503 if stuck else 200), body


def _loops(beats: dict[str, Beat], now: float, late: set[str]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "state": beat.state,
            "status": beat.status,
            "seconds_since_beat": round(now - beat.at, 3),
            "late": name in late,
        }
        for name, beat in beats.items()
    }
