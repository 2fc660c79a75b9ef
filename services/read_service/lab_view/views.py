"""The page /lab/ and its data /lab/api/pipeline."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from cqrs_common import config
from read_service.lab_view.pipeline import pipeline_snapshot

POLL_INTERVAL_MS = 1000


@require_GET
def lab_page(request: HttpRequest) -> HttpResponse:
    write_api = config.lab_write_api_url().rstrip("/")
    response = render(
        request,
        "lab_view/index.html",
        {"write_api": write_api, "poll_interval_ms": POLL_INTERVAL_MS},
    )
    response["Content-Security-Policy"] = content_security_policy(write_api)
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


def content_security_policy(write_api: str) -> str:
    """Scripts and styles from this server's files only (nothing inline, so an injected string can run
    nothing); requests to this server and to the write API, where the page's commands go."""
    parts = urlsplit(write_api)
    write_origin = f"{parts.scheme}://{parts.netloc}"
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' {write_origin}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


@require_GET
def pipeline(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(pipeline_snapshot())
    response["Cache-Control"] = "no-store"
    return response
