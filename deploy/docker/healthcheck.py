#!/usr/bin/env python3
"""Container health check: `cqrs-healthcheck [URL]` exits 0 when URL answers 2xx within the timeout.

The URL comes from the argument or from HEALTHCHECK_URL. The image ships no curl or wget, and Python is there
anyway; the standard library is enough. Used by the Dockerfile's HEALTHCHECK and by every app service in
docker-compose.yml (every one checks its /readyz).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 2.5


def check(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:8001/healthz")
    return check(url)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
