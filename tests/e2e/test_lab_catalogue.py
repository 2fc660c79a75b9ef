"""The laboratory's catalogue: every experiment is listed, runnable by name, documented and tested; the docs'
links lead somewhere. (No system needed.)"""

from __future__ import annotations

import importlib
import re
import subprocess

from devkit.processes import PYTHON, REPO
from lab.__main__ import EXPERIMENTS

DOCS = REPO / "docs"


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_the_list_names_every_experiment_and_a_wrong_name_is_refused() -> None:
    listed = _lab()
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == list(EXPERIMENTS)
    refused = _lab("no-such-experiment")
    assert refused.returncode == 2 and "eventual-consistency" in refused.stderr


def test_every_experiment_is_a_module_with_a_test_and_a_section_in_the_docs() -> None:
    guide = (DOCS / "lab.md").read_text()
    for name in EXPERIMENTS:
        module = importlib.import_module(f"lab.{name.replace('-', '_')}")
        assert callable(module.main) and module.__doc__
        # Tested in the tier of the system it needs: the native processes (e2e) or Compose (compose).
        module_test = f"test_lab_{name.replace('-', '_')}.py"
        tests = [REPO / "tests" / tier / module_test for tier in ("e2e", "compose")]
        assert any(test.is_file() for test in tests), name
        assert f"## {name}\n" in guide and f"make experiment NAME={name}" in guide


def test_every_relative_link_of_the_docs_leads_to_a_file() -> None:
    broken = []
    for document in DOCS.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" not in target and not (document.parent / target).exists():
                broken.append(f"{document.relative_to(REPO)} -> {target}")
    assert not broken
