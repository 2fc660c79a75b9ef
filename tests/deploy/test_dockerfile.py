"""The Dockerfile and its helper scripts, checked without a Docker engine: the instructions are read as Docker
reads them, and the entrypoint and health check scripts are run for real."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging_support import REPO, native_argv

from devkit.polling import eventually
from devkit.processes import free_port

DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "deploy" / "docker" / "entrypoint.sh"
HEALTHCHECK = REPO / "deploy" / "docker" / "healthcheck.py"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def exec_form(value: str) -> list[str]:
    return json.loads(value)


def args_defaults() -> dict[str, str]:
    return dict(rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG" and "=" in rest)


def test_a_multi_stage_build_on_slim_python_311() -> None:
    bases = [rest.split()[0] for keyword, rest in instructions() if keyword == "FROM"]
    assert len(bases) >= 2, "dependencies are built in their own stage"
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args_defaults()[m.group(1)], base)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, so runAsNonRoot can verify it"
    assert any(keyword == "RUN" and f"--uid {uid}" in rest for keyword, rest in final_stage())


def test_runtime_dependencies_are_pinned_and_installed_from_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", requirement), f"{requirement} is not pinned"
    deps_stage = stages()[0]
    assert ("COPY", "pyproject.toml ./") in deps_stage
    install = " ".join(rest for keyword, rest in deps_stage if keyword == "RUN")
    assert "['project']['dependencies']" in install and "pip install" in install
    assert "optional-dependencies" not in install, "dev tools stay out of the image"


def test_the_healthcheck_uses_the_shipped_probe() -> None:
    checks = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    command = exec_form(checks[0].split("CMD", 1)[1].strip())
    copied = {
        Path(rest.split()[-1]).name: rest.split()[-2] for keyword, rest in final_stage() if keyword == "COPY"
    }
    assert copied[command[0]] == "deploy/docker/healthcheck.py"


def test_entrypoint_and_default_command_are_the_native_write_service() -> None:
    values = {keyword: rest for keyword, rest in final_stage() if keyword in ("ENTRYPOINT", "CMD")}
    assert exec_form(values["CMD"]) == native_argv("write-service")
    (entrypoint,) = exec_form(values["ENTRYPOINT"])
    assert ("COPY", f"deploy/docker/entrypoint.sh /usr/local/bin/{entrypoint}") in final_stage()


def test_every_copied_source_exists_and_is_in_the_build_context() -> None:
    for keyword, rest in instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [part for part in shlex.split(rest) if not part.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), source
            assert not ignored(source), f"{source} is excluded by .dockerignore"


def ignored(path: str) -> bool:
    """Docker's rule: the last .dockerignore pattern matching the path, or one of its parents, decides."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(glob).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if glob.startswith("**/"):
            regex = "(.*/)?" + fnmatch.translate(glob[3:]).replace(".*", "[^/]*")
        if any(re.match(regex, candidate) for candidate in candidates):
            verdict = not negated
    return verdict


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("pyproject.toml", False),
        ("services/write_service/settings.py", False),
        ("deploy/docker/entrypoint.sh", False),
        (".venv/bin/python", True),
        (".git/HEAD", True),
        (".env", True),
        ("tests/unit/test_events.py", True),
        ("var/supervisord.pid", True),
        ("services/write_service/__pycache__/settings.cpython-311.pyc", True),
        ("services/cqrs_lab.egg-info/PKG-INFO", True),
        ("deploy/k8s/base/secrets/write-side.env", True),
    ],
)
def test_the_build_context_holds_only_what_the_image_needs(path: str, excluded: bool) -> None:
    assert ignored(path) is excluded


# ---- deploy/docker/entrypoint.sh -----------------------------------------------------------------------


def test_the_entrypoint_execs_the_command_by_default() -> None:
    """The command replaces the entrypoint's shell: it has the shell's pid and gets signals directly."""
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "sh", "-c", "echo $$"], stdout=subprocess.PIPE, text=True
    )
    out, _ = process.communicate(timeout=10)
    assert int(out) == process.pid
    assert process.returncode == 0


def test_the_entrypoint_passes_the_exit_status_through() -> None:
    assert subprocess.run(["sh", str(ENTRYPOINT), "sh", "-c", "exit 7"], timeout=10).returncode == 7


@pytest.fixture
def restarting(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """The entrypoint in RESTART_ON_SYNC mode, running a command that logs each start and then sleeps."""
    starts, trigger = tmp_path / "starts", tmp_path / "trigger"
    command = f"echo started >> {starts}; exec sleep 60"
    env = {**os.environ, "RESTART_ON_SYNC": "1", "RESTART_TRIGGER_FILE": str(trigger)}
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "sh", "-c", command], env=env, text=True, stderr=subprocess.PIPE
    )
    yield process, starts, trigger
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def start_count(starts: Path) -> int:
    return len(starts.read_text().splitlines()) if starts.exists() else 0


def test_the_entrypoint_restarts_the_command_when_the_trigger_is_touched(restarting) -> None:  # type: ignore[no-untyped-def]
    process, starts, trigger = restarting
    eventually(lambda: start_count(starts) == 1, timeout=10, what="one start")
    time.sleep(0.05)  # a later modification time than the one recorded at start
    trigger.touch()
    eventually(lambda: start_count(starts) == 2, timeout=10, what="a second start")
    assert process.poll() is None, "the container keeps running across the restart"


def test_the_entrypoint_stops_the_command_on_sigterm(restarting) -> None:  # type: ignore[no-untyped-def]
    process, starts, _ = restarting
    eventually(lambda: start_count(starts) == 1, timeout=10, what="one start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM  # sleep's status after the forwarded SIGTERM
    leftover = subprocess.run(["pgrep", "-f", f"echo started >> {starts}"], capture_output=True, text=True)
    assert leftover.stdout == "", "the child was stopped with the entrypoint"


# ---- deploy/docker/healthcheck.py ----------------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[str]:
    """A local server: /ok answers 200, /unready 503."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        capture_output=True,
        text=True,
        timeout=10,
        env={**os.environ, **(env or {})},
    )


def test_healthcheck_passes_on_2xx(http_server: str) -> None:
    assert healthcheck(f"{http_server}/ok").returncode == 0


def test_healthcheck_fails_on_an_error_status(http_server: str) -> None:
    result = healthcheck(f"{http_server}/unready")
    assert result.returncode == 1
    assert "503" in result.stderr


def test_healthcheck_fails_when_nothing_listens() -> None:
    port = free_port()
    assert healthcheck(f"http://127.0.0.1:{port}/healthz").returncode == 1


def test_healthcheck_reads_its_url_from_the_environment(http_server: str) -> None:
    assert healthcheck(env={"HEALTHCHECK_URL": f"{http_server}/ok"}).returncode == 0
    assert healthcheck(env={"HEALTHCHECK_URL": f"{http_server}/unready"}).returncode == 1
