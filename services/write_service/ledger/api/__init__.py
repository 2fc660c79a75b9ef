"""HTTP entry points of the write side: DRF views that turn requests into service calls and domain errors
into problem+json (CONTRACT.md, "Write API")."""
