"""The shape of a problem+json body (RFC 9457), without Django: Django's error answers (`problems.problem`)
and the ones gunicorn writes itself before Django sees a request (`server_errors`) build it here."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://cqrs-lab.example/problems/"


def problem_body(
    status: int, detail: str, *, type_: str | None = None, title: str | None = None
) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + (type_ or slug(status)),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }


def slug(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "-")
