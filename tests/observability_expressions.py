"""Every PromQL expression the dashboards and the alert rules hold, ready to send to a Prometheus.

Shared by the offline checks (tests/deploy: every expression parses, every metric is known) and the live one
(tests/e2e: every expression returns data from the running system).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "observability" / "grafana" / "dashboards"
RULES = REPO / "observability" / "prometheus" / "rules"
OBSERVABILITY = REPO / "observability"
DASHBOARD_SOURCES = OBSERVABILITY / "grafana" / "src"

# Grafana's variables, replaced the way Grafana would with "All" selected and a short time range.
GRAFANA_DEFAULTS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Expression:
    source: str  # "cqrs-api: Request rate per endpoint (A)" or "alert OutboxEventTooOld"
    expr: str  # as written, with Grafana variables
    promql: str  # what Prometheus is sent


def dashboard_module(name: str):
    """A module of the dashboard builder (`build_dashboards`, `dashboard_panels`), which is no package."""
    return _module_in(DASHBOARD_SOURCES, name)


def observability_module(name: str):
    """A module of observability/ (`live_system`, `render_dashboard`), which is no package either."""
    return _module_in(OBSERVABILITY, name)


def _module_in(directory: Path, name: str):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    return importlib.import_module(name)


def to_promql(expr: str, rate_interval: str = "1m") -> str:
    values = {**GRAFANA_DEFAULTS, "__rate_interval": rate_interval}
    return _VARIABLE.sub(lambda m: values.get(m.group(1), ".*"), expr)


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict) -> list[dict]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in board.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_expressions(rate_interval: str = "1m") -> list[Expression]:
    found = []
    for board in dashboards().values():
        for panel in panels(board):
            for t in panel.get("targets", []):
                source = f"{board['uid']}: {panel['title']} ({t['refId']})"
                found.append(Expression(source, t["expr"], to_promql(t["expr"], rate_interval)))
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = _LABEL_VALUES.match(variable["definition"])
            assert match, f"{board['uid']}: variable {variable['name']} is not a label_values() query"
            selector = match.group("selector") or "up"
            source = f"{board['uid']}: variable {variable['name']}"
            found.append(Expression(source, selector, to_promql(selector)))
    return found


def alert_rules() -> list[dict]:
    rules = []
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def alert_expressions() -> list[Expression]:
    return [Expression(f"alert {r['alert']}", r["expr"], r["expr"]) for r in alert_rules() if "alert" in r]


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label names, functions and keywords left out)."""
    text = _STRINGS.sub('""', expr)
    text = _VARIABLE.sub("1m", text)  # `offset $__rate_interval`
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPINGS.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}
