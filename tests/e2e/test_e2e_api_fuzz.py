"""Schema-driven fuzzing of both APIs: schemathesis generates requests from each service's own /api/schema
and sends them to the running system (gunicorn, real databases, the relay and the projector).

Every answer must be no 5xx, carry a status code and a content type the schema documents, have a body that
matches the schema for that status, and refuse invalid input (wrong types, values out of range, strings with
NUL or lone surrogates) with a 4xx. schemathesis runs as its command line `st run` (its pytest loader does
not work with this pytest); its report is printed when a run fails, with the seed that reproduces it.

Bounded time: MAX_EXAMPLES per operation and phase, a timeout per request and per run, and read-service
started with READ_WAIT_MAX_MS of FUZZ_WAIT_MAX_MS, so its schema allows no longer read-your-writes wait and
no example can hold a request longer than that.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import TOKEN, System, setting, system_on

ST = str(Path(sys.executable).parent / "st")
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 50
FUZZ_WAIT_MAX_MS = 200
REQUEST_TIMEOUT_SECONDS = 10
RUN_TIMEOUT_SECONDS = 420
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)


@pytest.fixture(scope="module")
def fuzzed_system() -> Iterator[System]:
    yield from system_on(
        setting("TEST_WRITE_RABBITMQ_URL"),
        setting("TEST_READ_RABBITMQ_URL"),
        web_env={"READ_WAIT_MAX_MS": str(FUZZ_WAIT_MAX_MS)},
    )


def fuzz(api: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`st run` against `api`'s own schema; the finished process and how long it took."""
    argv = [
        ST,
        "--config-file",
        str(CONFIG),
        "run",
        f"{api}/api/schema",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--request-timeout",
        str(REQUEST_TIMEOUT_SECONDS),
        "--workers",
        "2",
        "--suppress-health-check",
        "all",
        *extra,
    ]
    started = time.monotonic()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, cwd="/")
    return run, time.monotonic() - started


def _cases(report: str) -> str:
    """The report's count of generated test cases ("612 generated, ...")."""
    lines = report.splitlines()
    counts = [lines[i + 1].strip() for i, line in enumerate(lines[:-1]) if line.strip() == "Test cases:"]
    return counts[0] if counts else "no summary"


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_write_api_conforms_to_its_schema(fuzzed_system: System) -> None:
    run, seconds = fuzz(fuzzed_system.write_api, "--header", f"Authorization: Bearer {TOKEN}")
    print(f"\nwrite API fuzzed in {seconds:.0f} s: {_cases(run.stdout)}")
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_read_api_conforms_to_its_schema_in_bounded_time(fuzzed_system: System) -> None:
    run, seconds = fuzz(fuzzed_system.read_api)
    print(f"\nread API fuzzed in {seconds:.0f} s: {_cases(run.stdout)}")
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
