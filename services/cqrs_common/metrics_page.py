"""One reader of a /metrics page (the Prometheus text format), on prometheus_client's own parser.

The services read one another's pages (read-service's live view, /lab/), and the tests, the lab and the
benchmark read them through devkit.metrics, which takes its parsing from here: one parser for everyone.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


class MetricsPage:
    """A page parsed once, asked for many samples."""

    def __init__(self, exposition: str) -> None:
        self._samples: list[Sample] = [
            found for family in text_string_to_metric_families(exposition) for found in family.samples
        ]

    def sample(self, name: str, **labels: str) -> float | None:
        """The sum of the samples called `name` (as exposed: `cqrs_events_applied_total`, `..._count`)
        whose labels include `labels`; None when the page has none."""
        values = [
            found.value
            for found in self._samples
            if found.name == name and all(found.labels.get(key) == value for key, value in labels.items())
        ]
        return sum(values) if values else None
