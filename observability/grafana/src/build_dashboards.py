"""Writes the Grafana dashboards of cqrs-lab as JSON: `python observability/grafana/src/build_dashboards.py`.

The JSON files in ../dashboards/ are what Grafana loads (../provisioning/dashboards/cqrs-lab.yml); they
are generated here so every panel is built the same way (see dashboard_panels.py). Run this after an edit: a
test fails when the committed JSON differs from what it builds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from api_dashboard import api
from pipeline_dashboard import pipeline

OUT = Path(__file__).resolve().parent.parent / "dashboards"


def build() -> dict[str, dict[str, Any]]:
    return {"cqrs-pipeline.json": pipeline(), "cqrs-api.json": api()}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2) + "\n"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, board in build().items():
        (OUT / name).write_text(render(board))
        print(f"wrote {OUT / name}: {sum(p['type'] != 'row' for p in board['panels'])} panels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
