"""The results of a run: medians over the runs (with their spread), the machine and its load, the targets,
written as JSON (bench/results/<date>.json and latest.json) and as a markdown table (latest.md)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import cpu, stages
from bench.scenarios.common import ScenarioResult
from bench.settings import TARGETS, Mode
from bench.stats import median_and_spread
from devkit.processes import REPO

# Rows of the table: result key, label, unit, decimals.
ROWS = (
    ("drain_events_per_s", "drain", "events/s", 0),
    ("sustained_events_per_s", "sustained, end to end", "events/s", 0),
    ("sustained_lag_p99_ms", "sustained, lag p99", "ms", 1),
    ("steady_100_commands_per_s", "steady, rate reached (asked: 100/s)", "commands/s", 0),
    ("steady_100_lag_p50_ms", "steady 100/s, lag p50", "ms", 1),
    ("steady_100_lag_p99_ms", "steady 100/s, lag p99", "ms", 1),
    ("steady_commands_per_s", "steady, rate reached (asked: 200/s)", "commands/s", 0),
    ("steady_lag_p50_ms", "steady 200/s, lag p50", "ms", 1),
    ("steady_lag_p95_ms", "steady 200/s, lag p95", "ms", 1),
    ("steady_lag_p99_ms", "steady 200/s, lag p99", "ms", 1),
    ("http_deposit_rps", "HTTP deposits", "req/s", 0),
    ("http_deposit_latency_p99_ms", "HTTP deposits, latency p99", "ms", 1),
    ("http_read_rps", "HTTP account reads", "req/s", 0),
    ("http_read_latency_p99_ms", "HTTP account reads, latency p99", "ms", 1),
    ("outage_max_lag_s", "outage, maximum lag", "s", 2),
    ("outage_recovery_s", "outage, broker back to normal lag", "s", 2),
)


def summarize(
    mode: Mode,
    results: dict[str, list[ScenarioResult]],
    *,
    started: datetime,
    loads: dict[str, dict[str, float]],
    environment: dict[str, Any],
) -> dict[str, Any]:
    metrics: dict[str, list[Any]] = {}
    for runs in results.values():
        for result in runs:
            for key, value in result.metrics.items():
                metrics.setdefault(key, []).append(value)
    summary: dict[str, Any] = {"date": started.isoformat(timespec="seconds"), "mode": mode.name}
    spread: dict[str, Any] = {}
    for key, values in metrics.items():
        summary[key], spread[key] = median_and_spread(values)
        if spread[key] is not None:
            spread[key]["runs"] = values
    summary["runs"] = mode.runs
    summary["spread"] = spread
    summary["targets"] = {
        target.key: {"target": target.describe(), "met": target.met(summary[target.key])}
        for target in TARGETS
        if target.key in summary  # measured (a scenario left out with --only has no row)
    }
    summary["machine"] = machine(loads)
    summary["environment"] = environment
    summary["settings"] = {
        "drain_events": mode.drain_events,
        "sustained_seconds": mode.sustained_seconds,
        "steady_seconds": mode.steady_seconds,
        "http_seconds": mode.http_seconds,
        "outage_seconds": mode.outage_seconds,
        "accounts": mode.accounts,
        "producers": mode.producers,
    }
    summary["scenarios"] = {
        name: [{**result.metrics, **result.details} for result in runs] for name, runs in results.items()
    }
    return summary


def machine(loads: dict[str, dict[str, float]]) -> dict[str, Any]:
    highest = max((load["max"] for load in loads.values()), default=os.getloadavg()[0])
    # `seconds` of each step are kept beside its load: a slow step on a busy machine explains itself.
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_1m_max": round(highest, 2),
        "load_average_now": [round(value, 2) for value in os.getloadavg()],
        "load_average_by_step": {
            step: {key: round(value, 2) for key, value in load.items()} for step, load in loads.items()
        },
    }


def write(summary: dict[str, Any], directory: Path) -> list[Path]:
    return write_files(directory, summary["date"], summary, markdown(summary))


def write_files(directory: Path, date: str, data: Any, table: str, prefix: str = "") -> list[Path]:
    """`<prefix><date>.json` and `latest<-prefix>.json` with `data`, `latest<-prefix>.md` with `table`."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(date).strftime("%Y-%m-%dT%H%M%S")
    latest = f"latest-{prefix}" if prefix else "latest"
    text = json.dumps(data, indent=2) + "\n"
    written = [
        directory / f"{prefix}-{stamp}.json" if prefix else directory / f"{stamp}.json",
        directory / f"{latest}.json",
        directory / f"{latest}.md",
    ]
    written[0].write_text(text)
    written[1].write_text(text)
    written[2].write_text(table)
    return written


def markdown(summary: dict[str, Any]) -> str:
    full = summary["runs"] > 1
    header = "| scenario | result | target | met |" + (" spread (min - max) |" if full else "")
    lines = [
        f"# Benchmark: {summary['mode']} mode, {summary['date']}",
        "",
        machine_line(summary),
        "",
        header,
        "|---|---:|---|---|" + ("---|" if full else ""),
    ]
    targets = summary["targets"]
    for key, label, unit, decimals in ROWS:
        if key not in summary:
            continue
        value = summary[key]
        target = targets.get(key)
        met = "" if target is None else ("yes" if target["met"] else "**no**")
        result = "n/a" if value is None else f"{number(value, decimals)} {unit}"
        row = f"| {label} | {result} | {target['target'] if target else ''} | {met} |"
        if full:
            spread = summary["spread"].get(key)
            row += (
                f" {number(spread['min'], decimals)} - {number(spread['max'], decimals)} |"
                if spread
                else " |"
            )
        lines.append(row)
    lines += [
        "",
        _settings_line(summary),
        *_path_lines(summary),
        *_stage_lines(summary),
        *_cpu_lines(summary),
        "",
    ]
    return "\n".join(lines)


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "services") else "")


def machine_line(summary: dict[str, Any]) -> str:
    """The machine, how busy it was before the run (during it, the run's own processes load it), and the
    PostgreSQL round trip measured before the run."""
    machine, environment = summary["machine"], summary["environment"]
    before = machine.get("load_average_by_step", {}).get("set-up", {}).get("start")
    round_trip = environment.get("postgresql_round_trip_ms")
    return (
        f"{machine['cores']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB;"
        + (f" 1-minute load average {before} before the run," if before is not None else "")
        + f" up to {machine['load_average_1m_max']} during it, its own processes included"
        + (
            " (the machine was busy with other work: numbers are noisy)"
            if before is not None and before > 1.0
            else ""
        )
        + (
            f"; PostgreSQL round trip (SELECT 1 after 5 ms idle) {round_trip} ms before the run"
            if round_trip
            else ""
        )
        + f". Code at {environment.get('commit', '?')}."
    )


def _settings_line(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    runs = summary["runs"]
    return (
        f"{f'Medians of {runs} runs' if runs > 1 else 'One run'}. Drain of {settings['drain_events']:,}"
        f" events, sustained {settings['sustained_seconds']:g} s with {settings['producers']} producers,"
        f" steady {settings['steady_seconds']:g} s at 100/s then at 200/s,"
        f" wrk {settings['http_seconds']} s each,"
        f" broker down {settings['outage_seconds']:g} s. Lag = applied_at - occurred_at in the read database."
    )


def _path_lines(summary: dict[str, Any]) -> list[str]:
    """Which path applied the events of each scenario (the projector falls back to the replicated table)."""
    shares = []
    for name, runs in summary["scenarios"].items():
        counts: dict[str, int] = {}
        for run in runs:
            for path, count in run.get("paths", {}).items():
                counts[path] = counts.get(path, 0) + count
        total = sum(counts.values())
        if total:
            shares.append(name + " " + ", ".join(f"{n / total:.0%} {p}" for p, n in sorted(counts.items())))
    streaming = summary["environment"].get("replication_streaming_at_start")
    lines = ["", "Events applied by path: " + "; ".join(shares) + "."] if shares else []
    if not streaming:
        lines += ["", "The replication stream into the read database was not running at the start."]
    return lines


STAGE_LABELS = {
    "occurred_to_confirmed": "commit to RabbitMQ's confirm",
    "published_to_applied": "publish to applied",
    "occurred_to_applied": "commit to applied",
}


def _stage_lines(summary: dict[str, Any]) -> list[str]:
    """The steady scenario's lag split by the pipeline's own histograms (medians over the runs), with the
    write path's own share (the paced client's command latency) and the stage that holds the p99."""
    runs = summary["scenarios"].get("steady", [])
    lines = []
    for label, pick in (("100/s", lambda run: run.get("at_100", {})), ("200/s", lambda run: run)):
        phases = [pick(run) for run in runs]
        figures = {
            stage: _medians([(phase.get("stages_ms") or {}).get(stage) for phase in phases])
            for stage in STAGE_LABELS
        }
        command = _medians([phase.get("command_latency_ms") for phase in phases])
        parts = [
            f"{STAGE_LABELS[stage]} {number(values['p50'], 1)} / {number(values['p99'], 1)} ms"
            for stage, values in figures.items()
            if values["p50"] is not None
        ]
        if not parts:
            continue
        if command["p50"] is not None:
            answered = f"{number(command['p50'], 1)} / {number(command['p99'], 1)} ms"
            parts.insert(0, f"command answered {answered}")
        owner = stages.tail_owner(figures)
        tail = f"; the larger p99 of the two steps: {STAGE_LABELS[owner]}" if owner else ""
        lines.append(f"- at {label}: " + "; ".join(parts) + tail + ".")
    if not lines:
        return []
    return [
        "",
        "Steady lag by stage, p50 / p99 (the relay's and the projector's histograms, interpolated inside"
        " their buckets; the command from the paced client):",
        *lines,
    ]


# Scenarios in which the broker is up the whole time: what the replication path costs when nothing needs it.
HEALTHY_BROKER_SCENARIOS = ("sustained", "steady")


def _cpu_lines(summary: dict[str, Any]) -> list[str]:
    """Each scenario's CPU by process group (medians over the runs, in cores), and what the replication
    fallback's own processes cost while the broker is healthy."""
    lines, fallback = [], []
    for name, runs in summary["scenarios"].items():
        shares = median_shares([run.get("cpu_cores") or {} for run in runs])
        if not shares:
            continue
        ranked = sorted(shares.items(), key=lambda item: -item[1])
        listed = ", ".join(f"{group} {value:.2f}" for group, value in ranked if value >= 0.01)
        lines.append(f"- {name}: {listed} (all {sum(shares.values()):.2f})")
        if name in HEALTHY_BROKER_SCENARIOS:
            sender, applier = (shares.get(group, 0.0) for group in cpu.FALLBACK_GROUPS)
            split = f"walsender {sender:.2f}, apply worker {applier:.2f}"
            fallback.append(f"{name} {sender + applier:.2f} ({split})")
    if not lines:
        return []
    paused = summary["environment"].get("subscriptions_paused") or []
    result = [
        "",
        "CPU by process group during each scenario, in cores (1.00 = one core busy; bench/cpu.py):",
        *lines,
    ]
    if fallback:
        result += [
            "",
            "The replication fallback with the broker healthy, in cores: " + "; ".join(fallback) + "."
            " The projector's reading of the replica is inside the projector's figure.",
        ]
    if paused:
        result += ["", "Other subscriptions paused during the run: " + ", ".join(paused) + "."]
    return result


def median_shares(runs: list[dict[str, float]]) -> dict[str, float]:
    groups = {group for run in runs for group in run}
    return {group: statistics.median(run.get(group, 0.0) for run in runs) for group in groups}


def _medians(figures: list[dict[str, float | None] | None]) -> dict[str, float | None]:
    """p50 and p99, each the median over the runs that have it."""
    medians: dict[str, float | None] = {}
    for figure in ("p50", "p99"):
        present = [value for f in figures if f and (value := f.get(figure)) is not None]
        medians[figure] = statistics.median(present) if present else None
    return medians


def number(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{value:,.{decimals}f}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None
