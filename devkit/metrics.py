"""A /metrics page fetched over HTTP, and its samples read with the services' own reader
(cqrs_common.metrics_page, on prometheus_client's parser)."""

from __future__ import annotations

import requests

from cqrs_common.metrics_page import MetricsPage


def scrape(url: str, timeout: float = 5.0) -> str | None:
    """The page at `url` (a process's /metrics); None while nothing answers there (starting, or gone)."""
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException:
        return None
    return response.text if response.ok else None


def sample(exposition: str, name: str, **labels: str) -> float | None:
    """The sum of the samples called `name` (as exposed: `cqrs_events_applied_total`, `..._seconds_count`)
    whose labels include `labels`; None when the page has none."""
    return MetricsPage(exposition).sample(name, **labels)


def sample_at(url: str, name: str, **labels: str) -> float | None:
    """`sample` of the page at `url`; None when nothing answers there or the page has no such sample."""
    exposition = scrape(url)
    return None if exposition is None else sample(exposition, name, **labels)
