"""The laboratory: guided experiments against a running cqrs-lab (`make experiment NAME=...`, docs/lab.md)."""
