"""Several projector counts side by side (`--projectors 1,2,4`): one summary per count, compared in one table.

Each count is a run of its own (the system started with that many projectors, the same scenarios, the same
runs); the table puts their medians in columns, with the events parked (the safety net: zero when the
partitions keep each account's events on one projector) and where the two cores went, so a gain or its
absence explains itself. Written to bench/results/scaleout-<date>.json, latest-scaleout.json and
latest-scaleout.md; the single-count files (latest.json, latest.md) are left as they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import report

# Rows: result key, label, unit, decimals (the keys of report.ROWS that the scale-out scenarios produce).
RESULT_ROWS = (
    ("drain_events_per_s", "drain", "events/s", 0),
    ("sustained_events_per_s", "sustained, end to end", "events/s", 0),
    ("sustained_lag_p99_ms", "sustained, lag p99", "ms", 1),
)
PROJECTOR_GROUP = "projector"  # projector, projector-1, ... in bench/cpu.py's groups
SHOWN_GROUPS = ("write-db", "read-db", "rabbitmq", "relay", "load (benchmark, producers, wrk)")


def write(summaries: dict[int, dict[str, Any]], directory: Path) -> list[Path]:
    data = {str(count): summary for count, summary in summaries.items()}
    first = summaries[min(summaries)]
    return report.write_files(directory, first["date"], data, markdown(summaries), prefix="scaleout")


def markdown(summaries: dict[int, dict[str, Any]]) -> str:
    counts = sorted(summaries)
    first = summaries[counts[0]]
    columns = [f"{count} projector{'s' if count > 1 else ''}" for count in counts]
    lines = [
        f"# Benchmark: projectors {', '.join(map(str, counts))}, {first['mode']} mode, {first['date']}",
        "",
        report.machine_line(first),
        "",
        "| | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for key, label, unit, decimals in RESULT_ROWS:
        if any(key in summaries[count] for count in counts):
            cells = [_result(summaries[count], key, unit, decimals) for count in counts]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for scenario in _scenarios(summaries):
        lines.append(
            f"| {scenario}: events parked | "
            + " | ".join(str(parked(summaries[count], scenario)) for count in counts)
            + " |"
        )
        cores = {count: _cores(summaries[count], scenario) for count in counts}
        lines.append(
            f"| {scenario}: CPU of the projectors, each | "
            + " | ".join(_projector_cell(cores[count]) for count in counts)
            + " |"
        )
        for group in SHOWN_GROUPS:
            if any(group in cores[count] for count in counts):
                lines.append(
                    f"| {scenario}: CPU of {group} | "
                    + " | ".join(f"{cores[count].get(group, 0.0):.2f}" for count in counts)
                    + " |"
                )
        lines.append(
            f"| {scenario}: CPU of the whole machine | "
            + " | ".join(f"{sum(cores[count].values()):.2f}" for count in counts)
            + " |"
        )
    runs = first["runs"]
    lines += [
        "",
        f"{f'Medians of {runs} runs' if runs > 1 else 'One run'} per column, each column a run of its own"
        " with that many projectors sharing the partitions; CPU in cores (1.00 = one core busy;"
        " bench/cpu.py), medians over the runs. Events parked: summed over the runs and projectors.",
        "",
    ]
    return "\n".join(lines)


def parked(summary: dict[str, Any], scenario: str) -> int:
    return sum(run.get("parked") or 0 for run in summary["scenarios"].get(scenario, []))


def projector_cores(cores: dict[str, float]) -> list[float]:
    """Each projector's share, in the order of their names (projector, projector-1, ...)."""
    names = sorted(
        (group for group in cores if group == PROJECTOR_GROUP or group.startswith(f"{PROJECTOR_GROUP}-")),
        key=lambda group: int(group.rpartition("-")[2]) if group != PROJECTOR_GROUP else 0,
    )
    return [cores[name] for name in names]


def _projector_cell(cores: dict[str, float]) -> str:
    each = projector_cores(cores)
    if not each:
        return "n/a"
    listed = " + ".join(f"{value:.2f}" for value in each)
    return listed if len(each) == 1 else f"{sum(each):.2f} ({listed})"


def _scenarios(summaries: dict[int, dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for summary in summaries.values():
        seen += [name for name in summary["scenarios"] if name not in seen]
    return seen


def _cores(summary: dict[str, Any], scenario: str) -> dict[str, float]:
    runs = summary["scenarios"].get(scenario, [])
    return report.median_shares([run.get("cpu_cores") or {} for run in runs])


def _result(summary: dict[str, Any], key: str, unit: str, decimals: int) -> str:
    if key not in summary:
        return ""
    value = summary[key]
    text = "n/a" if value is None else f"{report.number(value, decimals)} {unit}"
    spread = summary["spread"].get(key)
    if spread and summary["runs"] > 1:
        text += f" ({report.number(spread['min'], decimals)} - {report.number(spread['max'], decimals)})"
    return text
