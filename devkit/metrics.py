"""One reader of a /metrics page (the Prometheus text format), on prometheus_client's own parser."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


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
    values = [
        found.value
        for family in text_string_to_metric_families(exposition)
        for found in family.samples
        if found.name == name and all(found.labels.get(key) == value for key, value in labels.items())
    ]
    return sum(values) if values else None


def sample_at(url: str, name: str, **labels: str) -> float | None:
    """`sample` of the page at `url`; None when nothing answers there or the page has no such sample."""
    exposition = scrape(url)
    return None if exposition is None else sample(exposition, name, **labels)
