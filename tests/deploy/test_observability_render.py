"""The dashboard rendering (observability/render_dashboard.py), checked offline against an empty Prometheus.

The PNG in docs/observability is made from a real run (`render_dashboard.py --demo`); here the parts that
decide what it shows are checked: expressions sent as Grafana sends them, units as Grafana prints them, the
grid as Grafana lays it out, and a whole render from a Prometheus without data.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from tests.observability_expressions import DASHBOARDS, observability_module

render_dashboard = observability_module("render_dashboard")
panel_units = observability_module("panel_units")


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.0042, "s", "4.2 ms"),
        (0.25, "s", "250 ms"),
        (12.5, "s", "12.5 s"),
        (150, "s", "2.5 min"),
        (0, "s", "0 s"),
        (0.0000315, "s", "31.5 µs"),
        (300 * 1024 * 1024, "bytes", "300 MiB"),
        (56, "bytes", "56 B"),
        (12.345, "reqps", "12.3 req/s"),
        (1500, "ops", "1.5K ops/s"),
        (0.05, "percentunit", "5%"),
        (3, "short", "3"),
        (math.nan, "short", "-"),
    ],
)
def test_values_are_printed_as_grafana_prints_their_unit(value, unit, text):
    assert panel_units.format_value(value, unit) == text


def test_rate_interval_is_grafanas():
    # max($__interval + scrape interval, 4 x scrape interval)
    assert render_dashboard.Window(0, 600, step=5, scrape_interval=5).rate_interval == "20s"
    assert render_dashboard.Window(0, 86400, step=60, scrape_interval=5).rate_interval == "65s"


def test_expressions_are_sent_with_every_variable_at_all():
    window = render_dashboard.Window(0, 600, step=5, scrape_interval=5)
    expr = 'sum by (type) (rate(m{type=~"$type", vhost=~"${vhost}"}[$__rate_interval]))'
    assert render_dashboard.to_promql(expr, window) == 'sum by (type) (rate(m{type=~".*", vhost=~".*"}[20s]))'


def test_legends_fill_in_labels_as_grafana_does():
    labels = {"__name__": "up", "job": "relay", "instance": "127.0.0.1:9101"}
    assert render_dashboard.legend("applied {{ job }}", labels) == "applied relay"
    assert render_dashboard.legend("__auto", labels) == 'up{instance="127.0.0.1:9101", job="relay"}'
    assert render_dashboard.legend("", {}) == "value"


@pytest.mark.parametrize("name", ["cqrs-pipeline.json", "cqrs-api.json"])
def test_panels_keep_their_grid_places_without_overlapping(name):
    panels = json.loads((DASHBOARDS / name).read_text())["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    grid = render_dashboard.Grid(rows, top=0.95)
    frames = {f"{p['id']} {p['title']}": grid.frame(p) for p in panels}
    for title, (left, bottom, width, height) in frames.items():
        assert left >= 0 and left + width <= 1 and bottom >= 0 and bottom + height <= 0.95, title
    for a, (al, ab, aw, ah) in frames.items():
        for b, (bl, bb, bw, bh) in frames.items():
            overlap = al < bl + bw and bl < al + aw and ab < bb + bh and bb < ab + ah
            assert a == b or not overlap, (a, b)


def test_every_panel_renders_from_an_empty_prometheus(empty_prometheus, tmp_path):
    """Each expression is accepted by the range-query API and each panel type is drawn ("No data")."""
    end = time.time()
    window = render_dashboard.Window(end - 300, end, step=5, scrape_interval=5)
    output = render_dashboard.render(empty_prometheus, window, tmp_path / "pipeline.png")
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert output.stat().st_size > 50_000  # a 2200-pixel-wide figure of 27 panels, not an empty canvas
