"""Browsers may send commands from the live view's origins only, to /api/ only (CONTRACT.md, "CORS")."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

LAB_ORIGIN = "http://127.0.0.1:8002"


@pytest.fixture(autouse=True)
def lab_origin_allowed() -> None:
    # The default of LAB_ORIGINS; the packagings set theirs (tests/deploy checks they are set).
    assert LAB_ORIGIN in settings.CORS_ALLOWED_ORIGINS


def preflight(client: APIClient, path: str, origin: str, headers: str) -> dict[str, str]:
    response = client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers,
    )
    assert response.status_code == 200
    return {name.lower(): value for name, value in response.items()}


def test_a_preflight_from_the_lab_allows_what_a_command_sends() -> None:
    sent = "authorization,content-type,idempotency-key,if-match,x-correlation-id"
    headers = preflight(APIClient(), "/api/accounts", LAB_ORIGIN, sent)

    assert headers["access-control-allow-origin"] == LAB_ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    assert set(sent.split(",")) <= {h.strip() for h in headers["access-control-allow-headers"].split(",")}
    assert "access-control-allow-credentials" not in headers


def test_another_origin_is_not_allowed() -> None:
    headers = preflight(APIClient(), "/api/accounts", "http://elsewhere.example", "authorization")
    assert "access-control-allow-origin" not in headers


@pytest.mark.django_db
def test_a_command_from_the_lab_shows_its_answers_headers_to_the_page(api: APIClient) -> None:
    response = api.post("/api/accounts", {"owner": "cors"}, format="json", HTTP_ORIGIN=LAB_ORIGIN)

    assert response.status_code == 201
    assert response["Access-Control-Allow-Origin"] == LAB_ORIGIN
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert {"etag", "x-consistency-token", "x-correlation-id"} <= exposed


def test_nothing_outside_the_api_is_shared_with_other_origins() -> None:
    response = APIClient().get("/metrics", HTTP_ORIGIN=LAB_ORIGIN)
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response
