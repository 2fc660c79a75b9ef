"""Every packaging runs read-service with gthread workers whose read-your-writes waits leave threads free
(docs/CONTRACT.md, "Read API"): READ_WAIT_MAX_CONCURRENT below WEB_THREADS, the same numbers everywhere, and
the write-service on sync workers."""

from __future__ import annotations

from typing import Any

from packaging_support import container_env, find, native_programs, pod_spec

from devkit.system_processes import READ_SERVICE_THREADS

BOUND = ("WEB_THREADS", "READ_WAIT_MAX_CONCURRENT")


def _bound(environment: dict[str, Any]) -> tuple[int, int]:
    return int(environment["WEB_THREADS"]), int(environment["READ_WAIT_MAX_CONCURRENT"])


def _k8s_env(objects: tuple[dict[str, Any], ...], name: str) -> dict[str, Any]:
    return container_env(objects, pod_spec(find(objects, "Deployment", name))["containers"][0])


def test_waits_leave_threads_free_in_every_packaging(
    compose: dict[str, Any], base_objects: tuple[dict[str, Any], ...]
) -> None:
    packagings = {
        "compose": compose["services"]["read-service"]["environment"],
        "kubernetes": _k8s_env(base_objects, "read-service"),
        "native": native_programs()["read-service"].environment,
        "tests, benchmark, live system": READ_SERVICE_THREADS,
    }
    bounds = {name: _bound(environment) for name, environment in packagings.items()}
    assert len(set(bounds.values())) == 1, bounds
    threads, waits = next(iter(bounds.values()))
    assert 1 <= waits < threads


def test_write_service_keeps_sync_workers(
    compose: dict[str, Any], base_objects: tuple[dict[str, Any], ...]
) -> None:
    assert compose["services"]["write-service"]["environment"]["WEB_THREADS"] == "1"
    assert _k8s_env(base_objects, "write-service")["WEB_THREADS"] == "1"
    assert "WEB_THREADS" not in native_programs()["write-service"].environment  # the default: 1
