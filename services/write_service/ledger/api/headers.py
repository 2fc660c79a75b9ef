"""The optional command headers: `If-Match: "<version>"` and `Idempotency-Key` (CONTRACT.md, "Write API").

A malformed header is a 400 naming the header, like a malformed field.
"""

from __future__ import annotations

import re

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

IF_MATCH = "If-Match"
IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
# `"3"` as the ETag is sent back; a bare 3 is accepted too. `*` matches any existing version.
_VERSION_TAG = re.compile(r'^(?:"(?P<quoted>[0-9]{1,10})"|(?P<bare>[0-9]{1,10}))$')


def expected_version(request: Request) -> int | None:
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


def idempotency_key(request: Request) -> str | None:
    value = request.headers.get(IDEMPOTENCY_KEY)
    if value is None:
        return None
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValidationError({IDEMPOTENCY_KEY: [f"Must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters."]})
    return value
