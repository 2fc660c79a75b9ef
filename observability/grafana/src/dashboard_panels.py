"""Building blocks of the Grafana dashboards: panels, targets, variables and the grid layout.

Every panel gets the provisioned datasource by uid, a description, and, where an alert watches the same
metric, that alert's threshold (ALERT_THRESHOLDS, checked against rules/cqrs-alerts.yml by tests/deploy).
"""

from __future__ import annotations

from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "cqrs-prometheus"}
SCHEMA_VERSION = 39
MIB = 1024 * 1024
# The range every rate() uses: Grafana widens it to at least four scrape intervals.
RATE = "[$__rate_interval]"
# The selected pods (the `pod` variable). In Kubernetes each pod is a target with a `pod` label; natively and
# in Compose series have none, which `.*` (All) matches as well.
POD = 'pod=~"$pod"'

# Alert name -> (the literal after `>` in its expression, the number a panel draws as its red line).
ALERT_THRESHOLDS: dict[str, tuple[str, float]] = {
    "OutboxBacklogGrowing": ("100", 100),
    "OutboxEventTooOld": ("120", 120),
    "EndToEndLagHigh": ("1", 1),
    "ReportingLagHigh": ("60", 60),
    "DeadLetterQueueNotEmpty": ("0", 1),
    "ProjectionOnFallbackPath": ("", 1),  # `== 1`
    "ReplicationSlotRetainingWal": ("256 * 1024 * 1024", 256 * MIB),
    "ReplicationSlotNearLimit": ("768 * 1024 * 1024", 768 * MIB),
    "ApiErrorRateHigh": ("0.05", 0.05),
}


def threshold(alert: str) -> float:
    return ALERT_THRESHOLDS[alert][1]


def steps(*levels: tuple[float, str]) -> dict[str, Any]:
    """Absolute thresholds: green below the first level."""
    return {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}, *({"color": c, "value": v} for v, c in levels)],
    }


def target(expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
    }


def quantiles(
    metric: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.9, 0.99), selector: str = ""
) -> list[dict[str, Any]]:
    group = f"{by}, le" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    matchers = f"{{{selector}}}" if selector else ""
    return [
        target(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{matchers}[$__rate_interval])))",
            f"{prefix}p{round(q * 100)}",
            ref=chr(ord("A") + i),
        )
        for i, q in enumerate(qs)
    ]


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str,
    thresholds: dict[str, Any] | None = None,
    width: int = 12,
    stacked: bool = False,
    stepped: bool = False,
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineInterpolation": "stepAfter" if stepped else "linear",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        "thresholdsStyle": {"mode": "line" if thresholds else "off"},
    }
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "_width": width,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "color": {"mode": "palette-classic"},
                "custom": custom,
                "thresholds": thresholds or steps(),
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
    }


def stat(
    title: str,
    description: str,
    expr: str,
    unit: str,
    thresholds: dict[str, Any],
    mappings: list[dict[str, Any]] | None = None,
    width: int = 4,
    legend: str = "__auto",
) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "_width": width,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "color": {"mode": "thresholds"},
                "thresholds": thresholds,
                "mappings": mappings or [],
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
            "wideLayout": True,
            "showPercentChange": False,
        },
        "targets": [target(expr, legend)],
    }


def value_text(mapping: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Value mappings: {"1": ("text", "color")}."""
    return [
        {
            "type": "value",
            "options": {
                value: {"text": text, "color": color, "index": i}
                for i, (value, (text, color)) in enumerate(mapping.items())
            },
        }
    ]


def row(title: str, description: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "description": description, "collapsed": False, "panels": []}


def query_variable(name: str, label: str, query: str, all_value: str = ".*") -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,  # on time range change: new event types and queues appear without a reload
        "includeAll": True,
        "allValue": all_value,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


def pod_variable(query: str) -> dict[str, Any]:
    """The `pod` variable: one replica's series in Kubernetes (each pod is a target); empty elsewhere."""
    variable = query_variable("pod", "Pod", query)
    variable["description"] = "Kubernetes pods (one target each); natively and in Compose there are none."
    return variable


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place panels left to right in a 24-column grid; rows take a line of their own. Ids in order."""
    x = y = line_height = 0
    placed = []
    for panel_id, panel in enumerate(panels, start=1):
        panel = dict(panel)
        width = panel.pop("_width", 24)
        height = 1 if panel["type"] == "row" else (4 if panel["type"] == "stat" else 8)
        if panel["type"] == "row" or x + width > 24:
            x, y, line_height = 0, y + line_height, 0
        panel["id"] = panel_id
        panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        x, line_height = x + width, max(line_height, height)
        if panel["type"] == "row":
            x, y, line_height = 0, y + 1, 0
        placed.append(panel)
    return placed


def dashboard(uid: str, title: str, description: str, variables: list, panels: list, links: list) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["cqrs-lab"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,  # shared crosshair: a lag spike lines up with the backlog and the mode switch
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "refresh": "10s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": links,
        "templating": {"list": variables},
        "panels": layout(panels),
    }


def link_to(uid: str, title: str) -> dict[str, Any]:
    return {
        "type": "link",
        "title": title,
        "url": f"/d/{uid}",
        "icon": "dashboard",
        "keepTime": True,
        "includeVars": False,
        "asDropdown": False,
        "targetBlank": False,
        "tags": [],
        "tooltip": "",
    }
