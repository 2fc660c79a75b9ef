"""`python -m read_service projection_gaps`: accounts whose events wait for a missing predecessor."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from read_service.projections.gaps import pending_gaps


class Command(BaseCommand):
    help = "Show which accounts wait on which versions (events parked ahead of a missing predecessor)."

    def handle(self, *args: Any, **options: Any) -> None:
        gaps = pending_gaps()
        for gap in gaps:
            self.stdout.write(json.dumps(gap.to_dict()))
        self.stdout.write(f"{len(gaps)} account(s) waiting")
