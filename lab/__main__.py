"""`python -m lab <experiment> [options]` (or `make experiment NAME=<experiment> ARGS="..."`).

Without a name it lists the experiments. Each is one module of this package with a `main(argv)`; the name on
the command line is the module's with dashes (`eventual-consistency` runs `lab/eventual_consistency.py`).
"""

from __future__ import annotations

import importlib
import os
import sys

EXPERIMENTS = (
    "eventual-consistency",
    "concurrency",
    "poison-message",
    "broker-outage",
    "rebuild",
    "scale",
    "network-cut",
    "late-subscriber",
    "schema-evolution",
)


def main(argv: list[str]) -> int:
    # The experiments run commands (`python -m read_service dlq`, a second projector) against the system
    # `make run` runs, on its development secrets: without this, DEBUG off, they would refuse to start.
    os.environ.setdefault("ALLOW_DEVELOPMENT_SECRETS", "true")
    if not argv or argv[0] in {"-h", "--help", "list"}:
        print("Experiments (make experiment NAME=<name>; docs/lab.md explains each):")
        for name in EXPERIMENTS:
            module = importlib.import_module(f"lab.{name.replace('-', '_')}")
            print(f"  {name:22} {(module.__doc__ or '').strip().splitlines()[0]}")
        return 0
    name = argv[0].replace("_", "-")
    if name not in EXPERIMENTS:
        print(f"unknown experiment {argv[0]!r}; one of: {', '.join(EXPERIMENTS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"lab.{name.replace('-', '_')}")
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
