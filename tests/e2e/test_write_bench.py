"""Deposits per second through the write-service under gunicorn, measured with wrk (prints numbers; run with
`-m bench`). One account takes every deposit, so row locks serialise the writes: the worst case."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
import requests

from devkit.polling import eventually
from devkit.processes import PYTHON, REPO, ServiceProcess, free_port

pytestmark = pytest.mark.bench

TOKEN = "bench-token"
DURATION_S = 10
CONNECTIONS = 8
WRITE_DATABASE_URL = os.environ.get(
    "WRITE_DATABASE_URL", "postgres://cqrs_write:cqrs_write@127.0.0.1:5433/cqrs_write_test"
)
DEPOSIT_SCRIPT = """
wrk.method = "POST"
wrk.path = "/api/accounts/{account_id}/deposit"
wrk.body = '{{"amount": "1.00"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
"""


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_deposits_per_second(tmp_path: Path) -> None:
    env = {"WRITE_DATABASE_URL": WRITE_DATABASE_URL}
    subprocess.run(
        [PYTHON, "-m", "write_service", "migrate", "--no-input", "-v", "0"],
        env={**os.environ, **env},
        cwd=REPO,
        check=True,
        timeout=120,
    )
    port = free_port()
    server = ServiceProcess(
        "write-service-bench",
        [
            PYTHON,
            "-m",
            "gunicorn",
            "-c",
            "python:cqrs_common.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "write_service.wsgi",
        ],
        {**env, "CQRS_API_TOKENS": TOKEN, "LOG_LEVEL": "WARNING"},
    ).start()
    try:
        base = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(f"{base}/healthz"), timeout=30, what="the write-service to start")
        opened = requests.post(
            f"{base}/api/accounts", json={"owner": "bench"}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        account_id = opened.json()["account_id"]
        script = tmp_path / "deposit.lua"
        script.write_text(DEPOSIT_SCRIPT.format(account_id=account_id, token=TOKEN))

        report = subprocess.run(
            ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "-s", str(script), base],
            capture_output=True,
            text=True,
            check=True,
            timeout=DURATION_S + 30,
        ).stdout
    finally:
        server.terminate()

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report)[1])
    completed = int(re.search(r"(\d+) requests in", report)[1])
    print(
        f"\nwrite-service: {rate:.0f} deposits/s on one account ({CONNECTIONS} connections, {DURATION_S} s)"
    )
    assert "Non-2xx" not in report and "Socket errors" not in report, report
    with psycopg2.connect(WRITE_DATABASE_URL) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT balance, version FROM accounts WHERE id = %s", [account_id])
        balance, version = cursor.fetchone()
    # Every deposit wrk saw answered is in the balance, each with its own version: none lost under load.
    assert balance >= Decimal(completed)
    assert version == balance + 1


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
