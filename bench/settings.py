"""What a run measures and for how long: the modes (`tiny` for the harness's own test, `quick` for
`make bench`, `full` for numbers worth comparing) and the targets the results are checked against."""

from __future__ import annotations

from dataclasses import dataclass

STEADY_RATE = 200  # commands per second through HTTP in the steady and outage scenarios
STEADY_LOW_RATE = 100  # the steady scenario's first phase


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    runs: int  # each scenario this many times; the headline number is the median
    drain_events: int
    sustained_seconds: float
    steady_seconds: float
    http_seconds: int
    outage_before_seconds: float  # steady load before the broker stops (the baseline lag)
    outage_seconds: float  # broker stopped
    outage_after_seconds: float  # steady load kept up after the lag is back to normal
    outage_max_recovery_seconds: float  # load stops this long after the broker is back, recovered or not
    accounts: int = 50  # accounts the HTTP scenarios spread their commands over
    producers: int = 4  # service-layer producer processes in the drain and sustained scenarios


MODES = {
    "tiny": Mode(
        name="tiny",
        runs=1,
        drain_events=600,
        sustained_seconds=2,
        steady_seconds=2,
        http_seconds=1,
        outage_before_seconds=1.5,
        outage_seconds=2,
        outage_after_seconds=1,
        outage_max_recovery_seconds=15,
        accounts=10,
        producers=2,
    ),
    "quick": Mode(
        name="quick",
        runs=1,
        drain_events=8_000,
        sustained_seconds=8,
        steady_seconds=10,
        http_seconds=5,
        outage_before_seconds=4,
        outage_seconds=10,
        outage_after_seconds=3,
        outage_max_recovery_seconds=30,
    ),
    "full": Mode(
        name="full",
        runs=3,
        drain_events=30_000,
        sustained_seconds=20,
        steady_seconds=20,
        http_seconds=10,
        outage_before_seconds=5,
        outage_seconds=10,
        outage_after_seconds=5,
        outage_max_recovery_seconds=60,
    ),
}


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    bound: float
    at_least: bool  # True: the result must be >= bound; False: <= bound

    def met(self, value: float | None) -> bool:
        if value is None:  # not measured, or (outage) not recovered while measured
            return False
        return value >= self.bound if self.at_least else value <= self.bound

    def describe(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.bound:,g}"


TARGETS = (
    Target("drain_events_per_s", 5_000, at_least=True),
    Target("sustained_events_per_s", 1_000, at_least=True),
    Target("steady_100_lag_p99_ms", 5, at_least=False),
    Target("steady_lag_p99_ms", 15, at_least=False),
    Target("http_deposit_rps", 300, at_least=True),
    Target("outage_recovery_s", 10, at_least=False),
)
