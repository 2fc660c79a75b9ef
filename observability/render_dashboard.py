"""Render a Grafana dashboard of cqrs-lab to a PNG from a real Prometheus, laid out as Grafana lays it out.

Each panel's expressions are sent to Prometheus's range-query API exactly as the dashboard JSON holds them
(variables at "All", `$__rate_interval` computed as Grafana computes it) and drawn with matplotlib in the
panel's grid position, under the panel's title. Nothing is drawn that Prometheus did not return.

    python observability/render_dashboard.py --demo
        starts the system with a Prometheus and a private RabbitMQ node (live_system.py), drives the demo
        scenario (demo_scenario.py: traffic, a burst, a dead letter, a broker outage) and renders what
        Prometheus recorded: this is how docs/observability/pipeline-dashboard.png is made.
    python observability/render_dashboard.py --prometheus http://127.0.0.1:9090 --minutes 30
        the last 30 minutes of a running system (`make run` starts Prometheus on :9090).

The demo runs against WRITE_DATABASE_URL / READ_DATABASE_URL (the development databases by default); give it
databases no other relay or projector uses, migrated and subscribed (`make migrate`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import requests
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from panel_units import format_value

if TYPE_CHECKING:
    from demo_scenario import Annotation

matplotlib.use("Agg")  # files only, no display

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "observability" / "grafana" / "dashboards"
DEFAULT_OUTPUT = REPO / "docs" / "observability" / "pipeline-dashboard.png"

# Grafana's dark theme and its classic palette, so the picture reads like the real dashboard.
BACKGROUND, PANEL, GRID, TEXT, DIM = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e9e"
NAMED_COLORS = {
    "green": "#73bf69",
    "red": "#f2495c",
    "orange": "#ff9830",
    "yellow": "#fade2a",
    "blue": "#5794f2",
}
PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642"]
UNIT_HEIGHT_INCHES, FIGURE_WIDTH_INCHES = 0.34, 22.0
LEGEND_LINE = 0.0085  # of the figure's height
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    step: float  # seconds; also Grafana's $__interval
    scrape_interval: float

    @property
    def rate_interval(self) -> str:
        """Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)."""
        return f"{round(max(self.step + self.scrape_interval, 4 * self.scrape_interval))}s"


@dataclass(frozen=True)
class Series:
    label: str
    times: list[datetime]
    values: list[float]  # NaN where Prometheus has no sample


def to_promql(expr: str, window: Window) -> str:
    """A dashboard expression as Grafana sends it: every template variable at "All" (`.*`)."""
    values = {"__rate_interval": window.rate_interval, "__interval": f"{round(window.step)}s"}
    return _VARIABLE.sub(lambda m: values.get(m.group(1), ".*"), expr)


def legend(legend_format: str, labels: dict[str, str]) -> str:
    if legend_format in ("", "__auto"):
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
        return labels.get("__name__", "") + (f"{{{inner}}}" if inner else "") or "value"
    return _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), legend_format)


def query_series(prometheus: str, target: dict, window: Window) -> list[Series]:
    answer = requests.post(
        f"{prometheus}/api/v1/query_range",
        data={
            "query": to_promql(target["expr"], window),
            "start": window.start,
            "end": window.end,
            "step": window.step,
        },
        timeout=30,
    )
    body = answer.json()
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {target['expr']!r}: {body}")
    steps = round((window.end - window.start) / window.step) + 1
    grid = [window.start + i * window.step for i in range(steps)]
    times = [datetime.fromtimestamp(t, UTC) for t in grid]
    found = []
    for result in body["data"]["result"]:
        samples = {round((float(t) - window.start) / window.step): float(v) for t, v in result["values"]}
        values = [samples.get(i, math.nan) for i in range(steps)]
        found.append(Series(legend(target.get("legendFormat", ""), result["metric"]), times, values))
    return sorted(found, key=lambda s: s.label)


# ------------------------------------------------------------------------------------------------ drawing


def _color(name: str | None) -> str:
    return NAMED_COLORS.get(name or "", name or NAMED_COLORS["green"])


def _threshold_steps(panel: dict) -> list[tuple[float, str]]:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    return [(s["value"], _color(s["color"])) for s in steps if s["value"] is not None]


def _color_for(panel: dict, value: float) -> str:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    color = _color(steps[0]["color"]) if steps else NAMED_COLORS["green"]
    for step in steps[1:]:
        if value >= step["value"]:
            color = _color(step["color"])
    return color


def _mapped(panel: dict, value: float) -> tuple[str, str] | None:
    """A value mapping's (text, color) for `value`, if the panel maps it."""
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        for key, option in mapping.get("options", {}).items():
            if float(key) == value:
                return option["text"], _color(option.get("color"))
    return None


@dataclass(frozen=True)
class Grid:
    """Grafana's 24-column grid mapped onto the figure below its header (`top`, a fraction of its height)."""

    rows: int
    top: float

    def frame(self, panel: dict) -> tuple[float, float, float, float]:
        """The panel's rectangle in figure coordinates (left, bottom, width, height), with a small gutter."""
        grid, unit = panel["gridPos"], self.top / self.rows
        gutter_x, gutter_y = 0.003, 0.0025
        left, width = grid["x"] / 24 + gutter_x, grid["w"] / 24 - 2 * gutter_x
        height = grid["h"] * unit - 2 * gutter_y
        return left, self.top - grid["y"] * unit - gutter_y - height, width, height


def draw_row(fig: Figure, panel: dict, grid: Grid) -> None:
    left, bottom, _width, height = grid.frame(panel)
    fig.text(left, bottom + height / 2, panel["title"], color=TEXT, fontsize=13, weight="bold", va="center")


def draw_stat(fig: Figure, panel: dict, grid: Grid, series: list[Series]) -> None:
    """Grafana's stat with colorMode background and graphMode area: the last value, coloured by the
    thresholds (or its value mapping), over a sparkline of the range."""
    ax = fig.add_axes(grid.frame(panel))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    unit = panel["fieldConfig"]["defaults"].get("unit", "none")
    known = [v for v in (series[0].values if series else []) if not math.isnan(v)]
    if known:
        value = known[-1]
        text, color = _mapped(panel, value) or (format_value(value, unit), _color_for(panel, value))
        ax.set_facecolor(color)
        ax.fill_between(series[0].times, series[0].values, color="white", alpha=0.18, linewidth=0)
        ax.set_xlim(series[0].times[0], series[0].times[-1])
        ax.set_ylim(0, max(known) * 1.6 if max(known) > 0 else 1.0)
        text_color = "white"
    else:
        ax.set_facecolor(PANEL)
        text, text_color = "No data", DIM
    ax.text(0.04, 0.9, panel["title"], transform=ax.transAxes, color=text_color, fontsize=10, va="top")
    ax.text(0.5, 0.4, text, transform=ax.transAxes, color=text_color, fontsize=20, weight="bold", ha="center")


def draw_timeseries(
    fig: Figure, panel: dict, grid: Grid, series: list[Series], annotations: list[Annotation]
) -> None:
    left, bottom, width, height = grid.frame(panel)
    fig.add_artist(
        plt.Rectangle((left, bottom), width, height, transform=fig.transFigure, color=PANEL, zorder=0)
    )
    fig.text(left + 0.004, bottom + height - 0.004, panel["title"], color=TEXT, fontsize=10, va="top")
    columns = _legend_columns(series, width)
    legend_height = LEGEND_LINE * math.ceil(len(series) / columns) if series else 0.0
    ax = fig.add_axes(
        (left + 0.036, bottom + 0.014 + legend_height, width - 0.042, height - 0.038 - legend_height)
    )
    defaults = panel["fieldConfig"]["defaults"]
    custom, unit = defaults.get("custom", {}), defaults.get("unit", "none")
    span = (series[0].times[-1] - series[0].times[0]).total_seconds() if series else 0.0
    _style_axes(ax, unit, span)
    if not series:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, color=DIM, fontsize=12, ha="center", va="center")
        ax.set_yticks([])
        ax.set_xticks([])
        return
    ax.set_xlim(series[0].times[0], series[0].times[-1])
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    drawstyle = "steps-post" if custom.get("lineInterpolation") == "stepAfter" else "default"
    base = [0.0] * len(series[0].values)
    highest = 0.0
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        values = line.values
        if stacked:
            values = [b + (0.0 if math.isnan(v) else v) for b, v in zip(base, values, strict=True)]
            ax.fill_between(line.times, base, values, color=color, alpha=0.25, linewidth=0)
            base = values
        ax.plot(line.times, values, color=color, linewidth=1.3, drawstyle=drawstyle, label=line.label)
        highest = max([highest, *(v for v in values if not math.isnan(v))])
    ax.set_ylim(0, highest * 1.15 if highest > 0 else 1.0)  # every panel has min 0, as on the dashboard
    if custom.get("thresholdsStyle", {}).get("mode") == "line":
        _draw_thresholds(ax, panel, unit)
    for annotation in annotations:
        _draw_annotation(ax, annotation)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(left + 0.002, bottom + legend_height + 0.002),
        bbox_transform=fig.transFigure,
        ncol=columns,
        frameon=False,
        fontsize=7.5,
        labelcolor=TEXT,
        handlelength=1.2,
        columnspacing=1.2,
        borderaxespad=0,
    )


def _legend_columns(series: list[Series], width: float) -> int:
    """As many legend entries per line as fit the panel's width, as Grafana's list legend wraps them."""
    characters = width * FIGURE_WIDTH_INCHES * 72 / (7.5 * 0.6)  # 7.5 pt text, about 0.6 em a character
    longest = max((len(s.label) for s in series), default=1) + 6  # the line sample and the gap
    return max(1, min(len(series), int(characters // longest)))


def _style_axes(ax: Axes, unit: str, seconds: float) -> None:
    """Grafana's look; `seconds` is the time range's length (short ranges label seconds too)."""
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.grid(color=GRID, linewidth=0.6)
    ax.tick_params(colors=DIM, labelsize=7.5, length=0)
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=7, tz=UTC))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if seconds < 600 else "%H:%M", tz=UTC))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_value(v, unit)))


def _draw_thresholds(ax: Axes, panel: dict, unit: str) -> None:
    """The alert's line where it falls near the data's scale; named in a corner when it is far above it
    (stretching the axis to it would flatten the data into the bottom line)."""
    top = ax.get_ylim()[1]
    off_scale = []
    for value, color in _threshold_steps(panel):
        if value <= top * 2:
            ax.axhline(value, color=color, linestyle="--", linewidth=1.1, zorder=1.5)  # under the data
            top = max(top, value * 1.1)
        else:
            off_scale.append(format_value(value, unit))
    ax.set_ylim(0, top)
    if off_scale:
        ax.text(
            0.99,
            0.97,
            f"alert line{'s' if len(off_scale) > 1 else ''} at {' and '.join(off_scale)}, above this scale",
            transform=ax.transAxes,
            color=DIM,
            fontsize=7.5,
            ha="right",
            va="top",
        )


def _draw_annotation(ax: Axes, annotation: Annotation) -> None:
    start = datetime.fromtimestamp(annotation.start, UTC)
    if annotation.end is None:
        ax.axvline(start, color=NAMED_COLORS["blue"], linestyle=":", linewidth=1.2)
    else:
        ax.axvspan(start, datetime.fromtimestamp(annotation.end, UTC), color=NAMED_COLORS["red"], alpha=0.12)


def render(
    prometheus: str,
    window: Window,
    output: Path,
    dashboard: str = "cqrs-pipeline",
    annotations: list[Annotation] | None = None,
    note: str = "",
) -> Path:
    board = json.loads((DASHBOARDS / f"{dashboard}.json").read_text())
    panels = board["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header_units = 2.2
    fig = plt.figure(
        figsize=(FIGURE_WIDTH_INCHES, (rows + header_units) * UNIT_HEIGHT_INCHES), facecolor=BACKGROUND
    )
    grid = Grid(rows, rows / (rows + header_units))
    annotations = annotations or []
    for panel in panels:
        if panel["type"] == "row":
            draw_row(fig, panel, grid)
            continue
        series = [s for target in panel.get("targets", []) for s in query_series(prometheus, target, window)]
        if panel["type"] == "stat":
            draw_stat(fig, panel, grid, series)
        else:
            draw_timeseries(fig, panel, grid, series, annotations)
    _header(fig, board, window, annotations, note)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100, facecolor=BACKGROUND)
    plt.close(fig)
    return output


def _header(fig: Figure, board: dict, window: Window, annotations: list[Annotation], note: str) -> None:
    start = datetime.fromtimestamp(window.start, UTC).strftime("%Y-%m-%d %H:%M:%S")
    end = datetime.fromtimestamp(window.end, UTC).strftime("%H:%M:%S UTC")
    fig.text(0.006, 0.993, board["title"], color=TEXT, fontsize=17, weight="bold", va="top")
    fig.text(
        0.006,
        0.978,
        f"Rendered from Prometheus's range queries, {start} to {end}; step {window.step:g} s, "
        f"$__rate_interval {window.rate_interval}, every variable at All. {note}",
        color=DIM,
        fontsize=9.5,
        va="top",
    )
    marks = "   ".join(
        ("red span: " if a.end is not None else "dotted line: ")
        + f"{a.text} ({datetime.fromtimestamp(a.start, UTC):%H:%M:%S}"
        + (f" to {datetime.fromtimestamp(a.end, UTC):%H:%M:%S})" if a.end is not None else ")")
        for a in annotations
    )
    if marks:
        fig.text(0.994, 0.978, marks, color=DIM, fontsize=9.5, va="top", ha="right")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", action="store_true", help="run the system and the demo scenario first")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="without --demo")
    parser.add_argument("--minutes", type=float, default=15.0, help="without --demo: how far back")
    parser.add_argument("--scrape-interval", type=float, default=5.0, help="seconds (native: 5)")
    parser.add_argument("--dashboard", default="cqrs-pipeline", help="a file name in grafana/dashboards")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.demo:
        import demo_scenario

        with demo_scenario.running(scrape_interval=args.scrape_interval) as run:
            window = Window(run.started, run.ended, args.scrape_interval, args.scrape_interval)
            output = render(run.prometheus, window, args.output, args.dashboard, run.annotations, run.note)
    else:
        end = time.time()
        window = Window(end - args.minutes * 60, end, args.scrape_interval, args.scrape_interval)
        output = render(args.prometheus, window, args.output, args.dashboard)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
