"""Read-your-writes waits are bounded: many waits in flight on one read-service leave readiness and plain
reads fast, and a wait past the bound answers 503 with Retry-After at once (CONTRACT.md, "Read API").

read-service runs under gunicorn as every packaging runs it (devkit/system_processes.py), on the
e2e read database, with two workers as in Compose and Kubernetes. Fifty clients ask for a version that
never comes; meanwhile /readyz and a plain account read are timed one after the other.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg2
import pytest
import requests

from devkit import system_processes
from devkit.metrics import sample
from devkit.processes import ServiceProcess, free_port
from tests.e2e.conftest import setting

WORKERS = 2
WAITS = 50
WAIT_MS = 10_000
PROBE_SECONDS = 6.0  # how long /readyz and reads are timed while the waits are in flight
PROBE_TIMEOUT = 5.0  # a probe that gets no answer counts as this slow
P99_LIMIT = 0.100
AT_ONCE = 1.0  # an over-bound wait answers within this


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    retry_after: str | None
    content_type: str


@dataclass(frozen=True)
class ReadService:
    api: str
    process: ServiceProcess
    account_id: uuid.UUID


@pytest.fixture(scope="module")
def read_service() -> Iterator[ReadService]:
    backends = system_processes.Backends(
        setting("WRITE_DATABASE_URL"),
        setting("READ_DATABASE_URL"),
        setting("TEST_WRITE_RABBITMQ_URL"),
        setting("TEST_READ_RABBITMQ_URL"),
    )
    account_id = _projected_account(backends.read_database_url)
    port = free_port()
    process = system_processes.web_service(
        "read-service", "read_service", port, backends, {"WEB_CONCURRENCY": str(WORKERS)}
    )
    api = f"http://127.0.0.1:{port}"
    try:
        system_processes.wait_until_ready(api, timeout=30)
        yield ReadService(api, process, account_id)
    finally:
        system_processes.stop([process])
        _forget(backends.read_database_url, account_id)


def _projected_account(read_database_url: str) -> uuid.UUID:
    """An account as the projector leaves it in the read model (the wait test needs none of the rest)."""
    account_id = uuid.uuid4()
    with psycopg2.connect(read_database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO account_view (account_id, owner, currency, balance, status, version, opened_at,"
            " updated_at) VALUES (%s, 'bounded', 'EUR', 0, 'open', 1, now(), now())",
            [str(account_id)],
        )
    connection.close()
    return account_id


def _forget(read_database_url: str, account_id: uuid.UUID) -> None:
    with psycopg2.connect(read_database_url) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM account_view WHERE account_id = %s", [str(account_id)])
    connection.close()


def _timed_get(session: requests.Session, url: str, timeout: float) -> Answer:
    started = time.monotonic()
    try:
        response = session.get(url, timeout=timeout)
    except requests.RequestException:
        return Answer(0, timeout, None, "")
    return Answer(
        response.status_code,
        time.monotonic() - started,
        response.headers.get("Retry-After"),
        response.headers.get("Content-Type", ""),
    )


def _refused(api: str) -> float:
    exposition = requests.get(f"{api}/metrics", timeout=5).text
    return sample(exposition, "cqrs_read_waits_refused_total") or 0.0


def _p99(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class WaitingClients:
    """`count` requests sent at once on connections of their own, their answers read by one thread with a
    selector: fifty client threads would contend for this process's GIL with the probes being timed."""

    def __init__(self, port: int, path: str, count: int) -> None:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        self.answers: list[Answer] = []
        self._selector = selectors.DefaultSelector()
        self._started = time.monotonic()
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(request)
            connection.setblocking(False)
            self._selector.register(connection, selectors.EVENT_READ, bytearray())
        self._reader = threading.Thread(target=self._read_all, args=(count,), daemon=True)
        self._reader.start()

    @property
    def answered(self) -> int:
        return len(self.answers)

    def join(self, timeout: float) -> None:
        self._reader.join(timeout)
        assert not self._reader.is_alive(), f"only {self.answered} waits answered"

    def _read_all(self, count: int) -> None:
        while len(self.answers) < count:
            for key, _ in self._selector.select(timeout=1.0):
                chunk = key.fileobj.recv(65536)
                if chunk:
                    key.data.extend(chunk)
                    continue
                self._selector.unregister(key.fileobj)
                key.fileobj.close()
                self.answers.append(_parsed(bytes(key.data), time.monotonic() - self._started))


def _parsed(raw: bytes, seconds: float) -> Answer:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
    headers = {name.lower(): value for name, value in headers.items()}
    return Answer(
        int(head[0].split()[1]), seconds, headers.get("retry-after"), headers.get("content-type", "")
    )


@pytest.mark.slow
def test_waits_in_flight_leave_readiness_and_reads_fast(read_service: ReadService) -> None:
    port = int(read_service.api.rsplit(":", 1)[1])
    account_path = f"/api/accounts/{read_service.account_id}"
    # A service in use: its threads hold their database connections, its listener listens.
    for warm_up in (account_path, f"{account_path}?min_version=2&wait_ms=100"):
        WaitingClients(port, warm_up, WAITS).join(timeout=30)
    refused_before = _refused(read_service.api)
    clients = WaitingClients(port, f"{account_path}?min_version=2&wait_ms={WAIT_MS}", WAITS)

    readiness: list[Answer] = []
    reads: list[Answer] = []
    probe_until = time.monotonic() + PROBE_SECONDS
    account_url = f"{read_service.api}{account_path}"
    with requests.Session() as session:
        while time.monotonic() < probe_until:
            readiness.append(_timed_get(session, f"{read_service.api}/readyz", PROBE_TIMEOUT))
            reads.append(_timed_get(session, account_url, PROBE_TIMEOUT))
        in_flight_after_probing = WAITS - clients.answered

    readiness_p99 = _p99([a.seconds for a in readiness])
    read_p99 = _p99([a.seconds for a in reads])
    print(
        f"\nwith {WAITS} waits in flight: /readyz p99 {readiness_p99 * 1000:.1f} ms over {len(readiness)}, "
        f"read p99 {read_p99 * 1000:.1f} ms over {len(reads)}"
    )
    assert all(a.status == 200 for a in readiness + reads), {a.status for a in readiness + reads}
    assert readiness_p99 < P99_LIMIT
    assert read_p99 < P99_LIMIT

    clients.join(timeout=WAIT_MS / 1000 + 20)
    waits = clients.answers
    rejected = [a for a in waits if a.seconds < AT_ONCE]
    held = [a for a in waits if a.seconds >= WAIT_MS / 1000]
    print(
        f"{len(rejected)} refused at once, {len(held)} held; refusals took "
        f"{sorted(round(a.seconds, 3) for a in waits if a.seconds < WAIT_MS / 1000)}"
    )
    # Some waits were admitted and were still waiting while the probes ran; the rest were refused at once.
    assert held and in_flight_after_probing >= len(held)
    assert len(rejected) + len(held) == WAITS
    # Operators see the refusals, summed over the workers.
    assert _refused(read_service.api) - refused_before == len(rejected)
    exposition = requests.get(f"{read_service.api}/metrics", timeout=5).text
    assert sample(exposition, "cqrs_read_waits_in_flight") == 0
    for answer in waits:
        assert answer.status == 503 and answer.retry_after is not None
        assert answer.content_type == "application/problem+json"
