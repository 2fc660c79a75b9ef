"""Middleware both web services run: correlation ids and the 64 KiB body limit."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from cqrs_common import logging as cqrs_logging
from cqrs_common.web.problems import problem

CORRELATION_HEADER = "X-Correlation-ID"
# Accept what a client or gateway sends if it is a sane token; anything else is replaced, not echoed.
_VALID_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def correlation_id_from(request: HttpRequest) -> str:
    supplied = request.headers.get(CORRELATION_HEADER, "")
    return supplied if _VALID_CORRELATION_ID.match(supplied) else str(uuid.uuid4())


class CorrelationIdMiddleware:
    """Binds the request's correlation id to every log line and returns it in the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        correlation_id = correlation_id_from(request)
        request.correlation_id = correlation_id  # type: ignore[attr-defined]
        cqrs_logging.clear_context()
        cqrs_logging.bind_correlation_id(correlation_id)
        try:
            response = self.get_response(request)
        finally:
            cqrs_logging.clear_context()
        response[CORRELATION_HEADER] = correlation_id
        return response


class BodyLimitMiddleware:
    """413 before the view runs when Content-Length says the body is too big.

    Django itself raises `RequestDataTooBig` only when the body is read; checking the header first answers
    early and in problem+json. A chunked body (no Content-Length) is given one by
    `cqrs_common.web.chunked.ChunkedBodyBuffer` in the WSGI entry point, so this check covers it too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return problem(413, f"The request body is larger than {limit} bytes.", type_="payload-too-large")
        return self.get_response(request)
