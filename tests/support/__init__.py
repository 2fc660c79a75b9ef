"""Helpers only the test tiers use (a private PostgreSQL server, a cut network path); what the benchmark, the
lab and the observability scripts use as well is in devkit/."""
