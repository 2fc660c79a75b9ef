"""What /api/schema says beyond the serializers: the problem body, the command headers, the answers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from cqrs_common.web.problem_body import PROBLEM_CONTENT_TYPE


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, the body of every 4xx and 5xx."""

    type = serializers.URLField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors per field (400 only).",
    )


COMMAND_HEADERS = [
    OpenApiParameter(
        "Idempotency-Key",
        str,
        OpenApiParameter.HEADER,
        description="1..255 characters. A retry with the same key and body returns the first response and "
        "changes nothing; the same key with another body is refused with 422.",
    ),
    OpenApiParameter(
        "X-Correlation-ID",
        str,
        OpenApiParameter.HEADER,
        description="Propagated into events and logs; generated when absent. Returned in every response.",
    ),
]
IF_MATCH_HEADER = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    description='Expected version of the account, as its ETag gives it ("3"); 412 if it differs.',
)


def result_headers(status: int) -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            "ETag", str, OpenApiParameter.HEADER, response=[status], description='"<version>" of the account'
        ),
        OpenApiParameter(
            "X-Consistency-Token",
            str,
            OpenApiParameter.HEADER,
            response=[status],
            description="<account_id>:<version>, for read-your-writes on the read side",
        ),
    ]


def problems(*statuses: int) -> dict[Any, Any]:
    """Problem responses; 401, 413 and 415 can answer any command."""
    every = sorted({*statuses, 401, 413, 415})
    return {(status, PROBLEM_CONTENT_TYPE): ProblemSerializer for status in every}
