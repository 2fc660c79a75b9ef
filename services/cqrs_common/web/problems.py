"""RFC 9457 problem+json for every 4xx/5xx answer (CONTRACT.md, "Errors").

`problem()` builds a response; `exception_handler` is DRF's hook, so validation, parse, auth and
unsupported-media errors from DRF come out in the same shape.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler

from cqrs_common.logging import get_logger
from cqrs_common.web.problem_body import PROBLEM_CONTENT_TYPE, problem_body

log = get_logger(__name__)


def problem(
    status: int,
    detail: str,
    *,
    type_: str | None = None,
    title: str | None = None,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    body = problem_body(status, detail, type_=type_, title=title)
    if errors:
        body["errors"] = errors
    response = HttpResponse(
        json.dumps(body, separators=(",", ":")), status=status, content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as `{"field": ["message", ...]}`."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(_flatten(value, name))
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            flat.update(_flatten(item, f"{prefix}[{index}]" if prefix else str(index)))
        return flat
    return {prefix or "non_field_errors": [str(detail)]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is unreachable, or the server dropped this worker's connection (a restart). Almost
        # always nothing was committed; only a connection lost during COMMIT leaves it unknown, which is
        # what Idempotency-Key is for. Django replaces the broken connection when this request ends.
        # Logged here, while the request's correlation id is bound: every 5xx leaves an error line.
        log.error("database_unavailable", error=str(exc).strip(), exception_type=type(exc).__name__)
        return problem(
            503,
            "The database is unavailable. Retry the request; an Idempotency-Key makes the retry safe.",
            type_="database-unavailable",
            title="Database unavailable",
            headers={"Retry-After": "1"},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    headers = {k: v for k, v in response.items() if k in {"WWW-Authenticate", "Retry-After", "Allow"}}
    if isinstance(exc, exceptions.ValidationError):
        return problem(
            400,
            "The request body is invalid.",
            type_="validation-error",
            title="Validation failed",
            errors=_flatten(exc.detail),
            headers=headers,
        )
    if isinstance(exc, exceptions.ParseError):
        return problem(400, str(exc.detail), type_="malformed-json", title="Malformed JSON", headers=headers)
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    return problem(response.status_code, str(detail), headers=headers)


def bad_request(request: Any, exception: Exception | None = None) -> HttpResponse:
    """Django's handler400 (e.g. a Host header outside ALLOWED_HOSTS), in problem+json like the rest."""
    return problem(400, "The request could not be understood.")


def not_found(request: Any, exception: Exception | None = None) -> HttpResponse:
    """Django's handler404 (a URL no view matches, e.g. an account id that is not a UUID)."""
    return problem(404, "There is nothing at this URL.")


def server_error(request: Any) -> HttpResponse:
    """Django's handler500, so even an unexpected failure answers in problem+json."""
    return problem(500, "The server failed to handle the request.")
