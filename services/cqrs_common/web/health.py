"""Liveness and readiness (CONTRACT.md).

/healthz checks nothing (the process answers); /readyz checks the service's own database.
"""

from __future__ import annotations

from django.db import connections
from django.http import HttpRequest, JsonResponse

from cqrs_common.logging import get_logger

log = get_logger(__name__)


def healthz(_request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(_request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure to reach the database means not ready
        log.warning("postgres_connection_failure", error=str(exc))
        checks["database"] = f"failing: {type(exc).__name__}"
        return JsonResponse({"status": "unavailable", "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})
