"""The write-service under gunicorn, as deployed: what only a real HTTP server shows. A chunked body (no
Content-Length) is read, and refused with 413 past 64 KiB like any other body; what gunicorn refuses itself
(a request line or a header too long) is answered in problem+json."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from devkit.processes import ServiceProcess, free_port
from devkit.system_processes import GUNICORN, GUNICORN_CONFIG, wait_until_ready

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    port = free_port()
    argv = [GUNICORN, "-c", GUNICORN_CONFIG, "--bind", f"127.0.0.1:{port}", "write_service.wsgi"]
    env = {"WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING"}
    process = ServiceProcess("write-service-test", argv, env).start()
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=20)
        yield "127.0.0.1", port
    finally:
        process.terminate(timeout=15)


def _post_chunked(
    server: tuple[str, int], token: str, path: str, chunks: list[bytes]
) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body=iter(chunks),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def _post(server: tuple[str, int], token: str, path: str, body: dict) -> dict:
    status, answer, _ = _post_raw(server, token, path, body)
    assert status in (200, 201)
    return answer


def test_a_chunked_body_is_read(server, token: str) -> None:
    account_id = _post(server, token, "/api/accounts", {"owner": "chunky"})["account_id"]

    status, _, body = _post_chunked(
        server, token, f"/api/accounts/{account_id}/deposit", [b'{"amount"', b': "7.25"}']
    )

    assert status == 200, body
    assert json.loads(body)["balance"] == "7.25"


def test_a_chunked_body_over_64_kib_is_413(server, token: str) -> None:
    from write_service.ledger import models

    account_id = _post(server, token, "/api/accounts", {"owner": "chunky"})["account_id"]
    padding = [b" " * 8192] * 9  # 72 KiB of whitespace: valid JSON if it were accepted

    status, content_type, body = _post_chunked(
        server, token, f"/api/accounts/{account_id}/deposit", [b'{"amount": "1.00"', *padding, b"}"]
    )

    assert status == 413
    assert content_type == "application/problem+json"
    assert json.loads(body)["status"] == 413
    assert models.Account.objects.get(pk=account_id).version == 1


def _post_raw(server: tuple[str, int], token: str, path: str, body: dict) -> tuple[int, dict, str | None]:
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read()), response.getheader("Retry-After")
    finally:
        connection.close()


def test_a_dropped_database_connection_answers_503_once_then_reconnects(server, token: str) -> None:
    """Without per-request health checks (CONN_HEALTH_CHECKS off), the request that finds its persistent
    connection dropped by the server gets a retryable 503, changes nothing, and the next one reconnects."""
    from django.db import connection

    from write_service.ledger import models

    account_id = _post(server, token, "/api/accounts", {"owner": "dropped"})["account_id"]
    with connection.cursor() as cursor:  # the worker's idle connection: the only other one on this database
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        assert cursor.fetchone()[0] == 1

    status, body, retry_after = _post_raw(
        server, token, f"/api/accounts/{account_id}/deposit", {"amount": "5.00"}
    )

    assert (status, body["status"], retry_after) == (503, 503, "1")
    assert body["type"].endswith("/database-unavailable")
    assert models.Account.objects.get(pk=account_id).version == 1
    status, body, _ = _post_raw(server, token, f"/api/accounts/{account_id}/deposit", {"amount": "5.00"})
    assert (status, body["balance"]) == (200, "5.00")


def _get(server: tuple[str, int], path: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict]:
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        connection.close()


def test_a_request_line_over_8190_bytes_is_414_in_problem_json(server) -> None:
    # gunicorn refuses it before Django sees it; its answer is problem+json like every other error.
    status, content_type, body = _get(server, "/api/accounts?" + "x" * 9000)
    assert (status, content_type) == (414, "application/problem+json")
    assert body["status"] == 414 and body["type"].endswith("/problems/request-uri-too-long")
    assert "8190" in body["detail"]


def test_a_header_field_over_its_limit_is_431_in_problem_json(server) -> None:
    status, content_type, body = _get(server, "/healthz", {"X-Correlation-ID": "c" * 9000})
    assert (status, content_type) == (431, "application/problem+json")
    assert body["status"] == 431 and body["title"] == "Request Header Fields Too Large"
