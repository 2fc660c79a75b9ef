"""pika is imported only by the cqrs_common.messaging package (its docstring says why)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
MESSAGING = SERVICES / "cqrs_common" / "messaging"


def _imports_pika(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pika" for a in node.names):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "pika"
        ):
            return True
    return False


def test_only_the_messaging_package_imports_pika() -> None:
    modules = [p for p in SERVICES.rglob("*.py") if ".egg-info" not in str(p)]
    importers = {
        p.relative_to(SERVICES).as_posix() for p in modules if _imports_pika(ast.parse(p.read_text()))
    }
    outside = {p for p in importers if not p.startswith("cqrs_common/messaging/")}
    assert importers, "no module imports pika: the scan is broken"
    assert outside == set()
