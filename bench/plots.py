"""PNG plots of the last run: lag over time (steady and outage), the lag histogram (steady and sustained) and
events applied per second by path (drain, sustained, outage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scenarios.common import ScenarioResult

PATH_COLOURS = {"broker": "tab:blue", "replication": "tab:orange"}


def draw(results: dict[str, list[ScenarioResult]], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    last = {name: runs[-1].series for name, runs in results.items() if runs}
    written = []
    for name, draw_one in (
        ("latest-lag.png", _lag_over_time),
        ("latest-lag-histogram.png", _lag_histogram),
        ("latest-throughput.png", _throughput),
    ):
        figure = draw_one(pyplot, last)
        if figure is None:
            continue
        path = directory / name
        figure.savefig(path, dpi=100)
        pyplot.close(figure)
        written.append(path)
    return written


def _lag_over_time(pyplot: Any, series: dict[str, dict]) -> Any:
    panels = [name for name in ("steady", "outage") if series.get(name, {}).get("lag")]
    if not panels:
        return None
    figure, axes = pyplot.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for axis, name in zip(axes[:, 0], panels, strict=True):
        points = series[name]["lag"]
        axis.plot([t for t, _ in points], [lag for _, lag in points], ".", markersize=2, alpha=0.6)
        axis.set_title(f"{name}: commit to applied, per event")
        axis.set_xlabel("seconds since the load started (commit time)")
        axis.set_ylabel("lag (ms)")
        if name == "outage":
            axis.set_yscale("log")
            _mark_moments(axis, series[name].get("marks", {}), linestyle="--")
            axis.axhline(series[name]["normal_lag_ms"], color="tab:green", linewidth=1, label="normal lag")
            axis.legend(loc="upper left", fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _lag_histogram(pyplot: Any, series: dict[str, dict]) -> Any:
    panels = [name for name in ("steady", "sustained") if series.get(name, {}).get("lag")]
    if not panels:
        return None
    figure, axes = pyplot.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, name in zip(axes[0], panels, strict=True):
        lags = sorted(lag for _, lag in series[name]["lag"])
        cut = lags[min(int(len(lags) * 0.995), len(lags) - 1)]  # the far tail would squash the rest
        axis.hist([lag for lag in lags if lag <= cut], bins=60, color="tab:blue")
        for q, style in ((0.50, "-"), (0.95, "--"), (0.99, ":")):
            value = lags[min(int(len(lags) * q), len(lags) - 1)]
            axis.axvline(
                value, color="black", linestyle=style, linewidth=1, label=f"p{int(q * 100)} {value:.1f} ms"
            )
        axis.set_title(f"{name}: lag of {len(lags):,} events (to p99.5)")
        axis.set_xlabel("commit to applied (ms)")
        axis.set_ylabel("events")
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _throughput(pyplot: Any, series: dict[str, dict]) -> Any:
    panels = [name for name in ("drain", "sustained", "outage") if series.get(name, {}).get("throughput")]
    if not panels:
        return None
    figure, axes = pyplot.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
    for axis, name in zip(axes[:, 0], panels, strict=True):
        throughput = series[name]["throughput"]
        committed = throughput["committed"]
        if name != "drain":  # a drain's commits happened before the pipeline ran
            axis.plot(*zip(*committed, strict=True), color="grey", linestyle="--", label="committed")
        for path, counts in sorted(throughput["applied"].items()):
            axis.plot(*zip(*counts, strict=True), color=PATH_COLOURS.get(path), label=f"applied via {path}")
        _mark_moments(axis, series[name].get("marks", {}), linestyle=":")
        origin = "relay and projector ready" if name == "drain" else "the load started"
        axis.set_title(f"{name}: events per second")
        axis.set_xlabel(f"seconds since {origin}")
        axis.set_ylabel(f"events/s ({throughput['window_s']:.2g} s average)")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _mark_moments(axis: Any, marks: dict[str, float], linestyle: str) -> None:
    """A labelled vertical line at each moment of a scenario (broker down, broker back, ...)."""
    for label, at in marks.items():
        axis.axvline(at, color="grey", linestyle=linestyle, linewidth=1)
        axis.annotate(
            label, (at, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=8
        )
