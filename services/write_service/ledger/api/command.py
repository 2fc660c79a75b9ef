"""What every command endpoint does around its service call: authentication, JSON only, headers,
idempotency, and turning domain errors into problem+json.

Order of checks: 401 (token), 415 (media type), 400 (body, then headers), 422 (key reused with another
request), then the command itself: 404, 412, 409 or success. Only answers of the command itself are stored
under an idempotency key; a request refused before it reaches the command leaves the key unused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from cqrs_common.logging import get_logger
from cqrs_common.web.problems import problem
from write_service.ledger.api import headers, idempotency
from write_service.ledger.api.authentication import BearerTokenAuthentication
from write_service.ledger.api.parsers import DecimalJSONParser
from write_service.ledger.api.responses import problem_for
from write_service.ledger.domain import DomainError

log = get_logger(__name__)

# Runs the service call given the expected version from If-Match, and renders the success response.
Command = Callable[[int | None], HttpResponse]


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
        expected_version = headers.expected_version(request)
        key = headers.idempotency_key(request)
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
