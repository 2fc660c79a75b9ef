"""WSGI wrapper that gives Django a Content-Length for bodies sent with `Transfer-Encoding: chunked`.

Django reads exactly CONTENT_LENGTH bytes and treats a request without one as having no body, so a chunked
body would silently vanish (and a huge one would slip past the 64 KiB limit unseen). This reads at most
limit + 1 bytes into memory and sets CONTENT_LENGTH to what it read: a body over the limit then carries
CONTENT_LENGTH = limit + 1 and `BodyLimitMiddleware` refuses it with 413 like any other.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ChunkedBodyBuffer:
    def __init__(self, app: WSGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            body = _read_at_most(environ["wsgi.input"], self.limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _read_at_most(stream: Any, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)
