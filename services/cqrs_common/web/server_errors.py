"""What gunicorn answers itself, before Django sees a request (a request line over `limit_request_line`,
header fields too large, a request it cannot parse): problem+json like every other error (CONTRACT.md,
"Errors"), instead of gunicorn's HTML page. `install()` runs from gunicorn_conf, in the arbiter before it
forks workers.

gunicorn's workers write those answers through `gunicorn.util.write_error`, its one seam for them; the
replacement keeps its contract (status line, `Connection: close`, a body of the given length).
"""

from __future__ import annotations

import json
import socket

from gunicorn import util

from cqrs_common.web.problem_body import PROBLEM_CONTENT_TYPE, problem_body


def write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps(problem_body(status_int, mesg or reason, title=reason), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    util.write_error = write_problem
