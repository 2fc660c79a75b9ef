"""Settings are read in one place: config.py, one accessor per setting, each naming its variable."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
CONFIG = SERVICES / "cqrs_common" / "config.py"


def _environment_reads(tree: ast.Module) -> list[str]:
    """`os.environ.get(...)`, `os.getenv(...)`, `os.environ[...]` read, `environ.Env(...)`: the calls
    that read a setting (setting a variable, or `setdefault` of Django's settings module, is not one)."""
    reads = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "environ.Env", "getenv"):
                reads.append(ast.unparse(node))
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ"
        ):
            reads.append(ast.unparse(node))
    return reads


def test_no_module_but_config_reads_the_environment() -> None:
    found = {
        path.relative_to(SERVICES).as_posix(): reads
        for path in SERVICES.rglob("*.py")
        if path != CONFIG
        and ".egg-info" not in str(path)
        and (reads := _environment_reads(ast.parse(path.read_text())))
    }
    assert found == {}


def test_every_accessor_names_its_variable() -> None:
    """No generic reader (`int_setting(name, default)`): a caller would then hold the name and default."""
    tree = ast.parse(CONFIG.read_text())
    reads = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "env"
    ]
    assert reads, "config.py reads nothing: the scan is broken"
    unnamed = [
        ast.unparse(n)
        for n in reads
        if not (n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value)
    ]
    assert unnamed == []
