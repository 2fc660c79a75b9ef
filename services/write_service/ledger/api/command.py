"""What every command endpoint does around its service call: authentication, JSON only (parsed with
amounts as `Decimal`), the optional headers, idempotency, and the two shapes of its answer: the result (with
ETag and consistency token) or a problem+json, rendered to bytes once so an idempotent retry replays them.

Order of checks: 401 (token), 415 (media type), 400 (body, then headers: a malformed `If-Match` or
`Idempotency-Key` names the header, like a malformed field), 422 (key reused with another request), then the
command itself: 404, 412, 409 or success. Only answers of the command itself are stored under an idempotency
key; a request refused before it reaches the command leaves the key unused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.exceptions import ParseError, UnsupportedMediaType, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from cqrs_common.logging import get_logger
from cqrs_common.web.problems import problem
from write_service.ledger.api import idempotency
from write_service.ledger.api.authentication import BearerTokenAuthentication
from write_service.ledger.domain import (
    AccountNotFound,
    BusinessRuleViolation,
    DomainError,
    InvalidValue,
    VersionMismatch,
)

log = get_logger(__name__)

# Runs the service call given the expected version from If-Match, and renders the success response.
Command = Callable[[int | None], HttpResponse]


# ------------------------------------------------------------------------------------------------ the body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class DecimalJSONParser(BaseParser):
    """JSON bodies with numbers as `Decimal`: an amount of 0.1 must stay 0.1, never 0.1000000000000000055."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


# --------------------------------------------------------------------------------------------- the command


class CommandApi(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [DecimalJSONParser]

    def validated(self, request: Request, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        _require_json(request)
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def execute(self, request: Request, command: Command) -> HttpResponse:
        expected_version = _expected_version(request)
        key = _idempotency_key(request)
        if key is None:
            return _run(command, expected_version)
        request_fingerprint = idempotency.fingerprint(
            request.method, request.path, expected_version, request.data
        )
        client = request.user.client_id
        with transaction.atomic():
            stored = idempotency.claim(client, key, request_fingerprint)
            if stored is None:
                # The command's own transaction.atomic() nests as a savepoint: a refused command rolls
                # back to it and its problem response is still stored with the key.
                response = _run(command, expected_version)
                idempotency.record(client, key, response)
                return response
        if stored.fingerprint != request_fingerprint:
            return problem(
                422,
                "This Idempotency-Key was already used with a different request.",
                type_="idempotency-key-reused",
                title="Idempotency key reused",
            )
        log.info("command_replayed", idempotency_key=key, status=stored.status_code)
        return idempotency.replay(stored)


def _run(command: Command, expected_version: int | None) -> HttpResponse:
    try:
        return command(expected_version)
    except DomainError as error:
        return problem_for(error)


def _require_json(request: Request) -> None:
    """415 for any declared media type but JSON, and for a body that declares none.

    DRF alone would read a body without Content-Type as empty, silently dropping it.
    """
    content_type = request.META.get("CONTENT_TYPE", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type:
        if media_type != "application/json":
            raise UnsupportedMediaType(content_type)
    elif _declared_length(request) > 0:
        raise UnsupportedMediaType("", detail="A request body must be sent as application/json.")


def _declared_length(request: Request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


# --------------------------------------------------------------------------------------------- the headers

IF_MATCH = "If-Match"
IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
# `"3"` as the ETag is sent back; a bare 3 is accepted too. `*` matches any existing version.
_VERSION_TAG = re.compile(r'^(?:"(?P<quoted>[0-9]{1,10})"|(?P<bare>[0-9]{1,10}))$')


def _expected_version(request: Request) -> int | None:
    value = request.headers.get(IF_MATCH)
    if value is None:
        return None
    value = value.strip()
    if value == "*":
        return None
    match = _VERSION_TAG.match(value)
    if match is None:
        raise ValidationError({IF_MATCH: ['Must be one version as the ETag gives it, such as "3".']})
    return int(match["quoted"] or match["bare"])


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get(IDEMPOTENCY_KEY)
    if value is None:
        return None
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValidationError({IDEMPOTENCY_KEY: [f"Must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters."]})
    return value


# ----------------------------------------------------------------------------------------------- the answer

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
