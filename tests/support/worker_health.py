"""The relay's and the projector's /readyz and /healthz (CONTRACT.md), as a probe sees them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def probe(url: str, timeout: float = 3.0) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of a health endpoint; (0, {}) while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except OSError:
        return 0, {}
