"""The other processes' /metrics pages, fetched with a short timeout: a page that does not answer is a
process shown as down, never an error of the live view."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from cqrs_common.metrics_page import MetricsPage

SCRAPE_TIMEOUT_SECONDS = 0.5


def metrics_page(url: str, timeout: float = SCRAPE_TIMEOUT_SECONDS) -> MetricsPage | None:
    """The parsed page at `url`, or None when nothing answers there in time (or not with 200)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return MetricsPage(text)


def metrics_pages(urls: Mapping[str, str]) -> dict[str, MetricsPage | None]:
    """Every page of `urls` (name -> URL) at once, so one silent process costs the timeout once, not once
    per process."""
    with ThreadPoolExecutor(max_workers=max(1, len(urls)), thread_name_prefix="lab-scrape") as pool:
        futures = {name: pool.submit(metrics_page, url) for name, url in urls.items()}
        return {name: future.result() for name, future in futures.items()}
