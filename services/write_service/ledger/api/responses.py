"""The two shapes a command's answer takes: the result (with ETag and consistency token) or a problem.

Both are rendered to bytes here, once, so an idempotent retry can replay exactly these bytes.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer

from cqrs_common.web.problems import problem
from write_service.ledger.domain import (
    AccountNotFound,
    BusinessRuleViolation,
    DomainError,
    InvalidValue,
    VersionMismatch,
)

CONSISTENCY_TOKEN_HEADER = "X-Consistency-Token"
_renderer = JSONRenderer()


def etag(version: int) -> str:
    return f'"{version}"'


def command_response(status: int, body: dict[str, Any], account_id: UUID, version: int) -> HttpResponse:
    """`ETag` and `X-Consistency-Token` name the version the command left `account_id` at; the read side
    waits for that version when a client asks to read its own write."""
    response = HttpResponse(_renderer.render(body), status=status, content_type="application/json")
    response["ETag"] = etag(version)
    response[CONSISTENCY_TOKEN_HEADER] = f"{account_id}:{version}"
    return response


def problem_for(error: DomainError) -> HttpResponse:
    """CONTRACT.md, "Errors": 400 invalid value, 404 unknown account, 409 business rule, 412 stale version."""
    type_ = error.reason.replace("_", "-")
    title = error.reason.replace("_", " ").capitalize()
    if isinstance(error, InvalidValue):
        return problem(
            400,
            "The request body is invalid.",
            type_="validation-error",
            title="Validation failed",
            errors={error.field: [error.detail]},
        )
    if isinstance(error, AccountNotFound):
        return problem(404, error.detail, type_=type_, title=title)
    if isinstance(error, VersionMismatch):
        # The current ETag lets the client re-read and retry without guessing.
        return problem(412, error.detail, type_=type_, title=title, headers={"ETag": etag(error.actual)})
    if isinstance(error, BusinessRuleViolation):
        return problem(409, error.detail, type_=type_, title=title)
    raise TypeError(f"no HTTP mapping for {type(error).__name__}")
