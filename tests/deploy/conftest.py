"""Fixtures of the offline deployment checks (tests/deploy): nothing here talks to the running system."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devkit.polling import eventually
from devkit.processes import ServiceProcess, free_port

REPO = Path(__file__).resolve().parents[2]


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (deploy/local/ensure-prometheus.sh installs it)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def empty_prometheus(tmp_path_factory) -> Iterator[str]:
    """A real Prometheus with an empty TSDB and no targets, on a free port: it parses and evaluates PromQL."""
    binary = require_binary("prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    (home / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    url = f"http://127.0.0.1:{free_port()}"
    argv = [
        binary,
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
    ]
    server = ServiceProcess("prometheus", argv, {}, log_path=home / "prometheus.log").start()

    def ready() -> bool:
        if not server.running:
            pytest.fail(f"prometheus exited:\n{server.output()}")
        return requests.get(f"{url}/-/ready", timeout=1).status_code == 200

    try:
        eventually(ready, timeout=30, interval=0.1, what="prometheus", ignoring=(requests.ConnectionError,))
        yield url
    finally:
        server.terminate(timeout=10)


# Fixtures of the packaging checks (Compose, kustomize, Tiltfile, Dockerfile) live with their helpers.
from packaging_support import base_objects, compose, private_postgres  # noqa: E402, F401
