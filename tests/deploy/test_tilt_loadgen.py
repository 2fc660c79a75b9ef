"""deploy/tilt/loadgen.py (the Tiltfile's load-generator button), run against a stand-in of the two APIs that
answers as CONTRACT.md says: it must drive the write API with its token and check the read side."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from packaging_support import REPO

LOADGEN = REPO / "deploy" / "tilt" / "loadgen.py"


class ContractStandIn(http.server.BaseHTTPRequestHandler):
    """Accounts with versions; every request is recorded as (method, path template, authorization)."""

    versions: dict[str, int]
    seen: list[tuple[str, str, str | None]]
    read_status = 200

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        parts = self.path.strip("/").split("/")
        self.seen.append(
            (
                "POST",
                "/".join(p if i != 2 else "{id}" for i, p in enumerate(parts)),
                self.headers.get("Authorization"),
            )
        )
        if self.path == "/api/accounts":
            account = str(uuid.uuid4())
            self.versions[account] = 1
            self.answer(201, {"account_id": account, "version": 1})
        elif self.path == "/api/transfers":
            source, target = body["from_account"], body["to_account"]
            self.versions[source] += 1
            self.versions[target] += 1
            self.answer(
                201,
                {
                    "transfer_id": str(uuid.uuid4()),
                    "from_account": {"account_id": source, "version": self.versions[source]},
                    "to_account": {"account_id": target, "version": self.versions[target]},
                },
            )
        else:
            account = parts[2]
            self.versions[account] += 1
            self.answer(
                200, {"account_id": account, "version": self.versions[account], "balance": body["amount"]}
            )

    def do_GET(self) -> None:
        account = self.path.split("/")[3].split("?")[0]
        self.seen.append(
            ("GET", self.path.split("?")[0].replace(account, "{id}"), self.headers.get("Authorization"))
        )
        self.answer(self.read_status, {"account_id": account, "version": self.versions[account]})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, type[ContractStandIn]]]:
    handler = type("Handler", (ContractStandIn,), {"versions": {}, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def loadgen(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(LOADGEN), "--write-url", url, "--read-url", url, "--token", "t0ken", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_it_opens_accounts_moves_money_and_reads_its_last_write(
    api: tuple[str, type[ContractStandIn]],
) -> None:
    url, handler = api
    result = loadgen(url, "--accounts", "3", "--max-requests", "40", "--seconds", "20")
    assert result.returncode == 0, result.stderr
    kinds = {(method, path) for method, path, _ in handler.seen}
    assert kinds == {
        ("POST", "api/accounts"),
        ("POST", "api/accounts/{id}/deposit"),
        ("POST", "api/transfers"),
        ("GET", "/api/accounts/{id}"),
    }
    writes = [auth for method, _, auth in handler.seen if method == "POST"]
    assert len(writes) == 3 + 40 and set(writes) == {"Bearer t0ken"}
    assert "40 commands" in result.stdout


def test_it_fails_when_the_read_side_does_not_catch_up(api: tuple[str, type[ContractStandIn]]) -> None:
    url, handler = api
    handler.read_status = 503
    result = loadgen(url, "--accounts", "2", "--max-requests", "5")
    assert result.returncode == 1
    assert "503" in result.stdout
