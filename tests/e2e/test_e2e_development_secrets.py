"""With DJANGO_DEBUG off, every process refuses to start while a secret it uses still holds its development
value, naming the variables, unless ALLOW_DEVELOPMENT_SECRETS=true (then it says so once and starts).

Each process is started as its packaging starts it. No database or broker is needed: the refusal comes
before any connection.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from devkit.processes import PYTHON, REPO
from devkit.system_processes import GUNICORN, GUNICORN_CONFIG

SECRETS = ("DJANGO_SECRET_KEY", "CQRS_API_TOKENS", "WRITE_DATABASE_URL", "READ_DATABASE_URL", "RABBITMQ_URL")
# Values a real deployment would set: none is a development default.
REAL = {
    "DJANGO_SECRET_KEY": "k8vV0x2-not-a-development-key-7b1f0c9e4a",
    "CQRS_API_TOKENS": "0c5b9f7e2a6d4e81",
    "WRITE_DATABASE_URL": "postgres://cqrs_write:w-5a7c1e@127.0.0.1:5433/cqrs_write",
    "READ_DATABASE_URL": "postgres://cqrs_read:r-9d2b4f@127.0.0.1:5434/cqrs_read",
}
REAL_BROKER = {
    "write_service": "amqp://write-service:ws-3e8a@127.0.0.1:5672/cqrs",
    "read_service": "amqp://read-service:rs-6f1d@127.0.0.1:5672/cqrs",
}
WRITE_SIDE = {"DJANGO_SECRET_KEY", "CQRS_API_TOKENS", "WRITE_DATABASE_URL", "RABBITMQ_URL"}
READ_SIDE = {"DJANGO_SECRET_KEY", "READ_DATABASE_URL", "RABBITMQ_URL"}
# The development passwords on a port nothing listens on: a process that failed to refuse them would fail to
# connect at once, instead of reaching the databases and the broker of `make run`.
DEVELOPMENT_URLS = {
    "write_service": {
        "WRITE_DATABASE_URL": "postgres://cqrs_write:cqrs_write@127.0.0.1:9/cqrs_write",
        "RABBITMQ_URL": "amqp://write-service:write-service@127.0.0.1:9/cqrs",
    },
    "read_service": {
        "READ_DATABASE_URL": "postgres://cqrs_read:cqrs_read@127.0.0.1:9/cqrs_read",
        "RABBITMQ_URL": "amqp://read-service:read-service@127.0.0.1:9/cqrs",
    },
}


def environment(**settings: str) -> dict[str, str]:
    """The caller's environment without any secret or opt-in of its own, DEBUG off, JSON logs."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRETS and k not in ("ALLOW_DEVELOPMENT_SECRETS", "DJANGO_DEBUG")
    }
    # No metrics port: a relay or projector that failed to refuse must not take `make run`'s.
    quiet = {"RELAY_METRICS_PORT": "0", "PROJECTOR_METRICS_PORT": "0"}
    return {**inherited, **quiet, "DJANGO_DEBUG": "false", "LOG_FORMAT": "json", **settings}


def run(argv: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def log_lines(output: str, event: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and parsed.get("event") == event:
            lines.append(parsed)
    return lines


def assert_refused(result: subprocess.CompletedProcess[str], variables: set[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    refused = log_lines(output, "development_secrets_refused")
    assert len(refused) >= 1, output
    assert set(refused[0]["variables"]) == variables, refused[0]
    assert "ALLOW_DEVELOPMENT_SECRETS" in output
    for variable in variables:
        assert variable in refused[0]["detail"], refused[0]


@pytest.mark.parametrize(
    ("service", "argv", "variables"),
    [
        ("write_service", ["check"], WRITE_SIDE),
        ("write_service", ["relay"], WRITE_SIDE),
        ("read_service", ["check"], READ_SIDE),
        ("read_service", ["projector"], READ_SIDE),
    ],
    ids=["write-check", "relay", "read-check", "projector"],
)
def test_a_command_refuses_the_development_secrets(
    service: str, argv: list[str], variables: set[str]
) -> None:
    assert_refused(run([PYTHON, "-m", service, *argv], environment(**DEVELOPMENT_URLS[service])), variables)


@pytest.mark.parametrize(
    ("service", "variables"), [("write_service", WRITE_SIDE), ("read_service", READ_SIDE)]
)
def test_the_defaults_of_unset_variables_are_refused(service: str, variables: set[str]) -> None:
    assert_refused(run([PYTHON, "-m", service, "check"], environment()), variables)


@pytest.mark.parametrize(
    ("service", "variables"), [("write_service", WRITE_SIDE), ("read_service", READ_SIDE)]
)
def test_a_web_service_refuses_the_development_secrets(service: str, variables: set[str]) -> None:
    argv = [GUNICORN, "-c", GUNICORN_CONFIG, "--bind", "127.0.0.1:0", f"{service}.wsgi"]
    assert_refused(run(argv, environment(**DEVELOPMENT_URLS[service], WEB_CONCURRENCY="1")), variables)


def test_only_the_variables_still_on_development_values_are_named() -> None:
    env = environment(**REAL, RABBITMQ_URL="amqp://write-service:write-service@broker.example:5672/cqrs")
    assert_refused(run([PYTHON, "-m", "write_service", "check"], env), {"RABBITMQ_URL"})


def test_the_example_secret_key_counts_as_a_development_one() -> None:
    """.env.example and the Kubernetes base ship `...-change-me`: as public as the code's default."""
    example_key = {"DJANGO_SECRET_KEY": "dev-only-insecure-secret-key-change-me"}
    env = environment(**{**REAL, **example_key}, RABBITMQ_URL=REAL_BROKER["read_service"])
    assert_refused(run([PYTHON, "-m", "read_service", "check"], env), {"DJANGO_SECRET_KEY"})


@pytest.mark.parametrize("service", ["write_service", "read_service"])
def test_real_secrets_start_without_a_word(service: str) -> None:
    result = run([PYTHON, "-m", service, "check"], environment(**REAL, RABBITMQ_URL=REAL_BROKER[service]))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not log_lines(output, "development_secrets_in_use") and not log_lines(
        output, "development_secrets_refused"
    )


def test_the_opt_in_starts_with_one_warning_naming_the_secrets() -> None:
    env = environment(**DEVELOPMENT_URLS["write_service"], ALLOW_DEVELOPMENT_SECRETS="true")
    result = run([PYTHON, "-m", "write_service", "check"], env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    warnings = log_lines(output, "development_secrets_in_use")
    assert len(warnings) == 1, output
    assert warnings[0]["level"] == "warning"
    assert set(warnings[0]["variables"]) == WRITE_SIDE


def test_debug_on_is_a_development_machine() -> None:
    result = run([PYTHON, "-m", "write_service", "check"], environment(DJANGO_DEBUG="true"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not log_lines(output, "development_secrets_in_use") and not log_lines(
        output, "development_secrets_refused"
    )
