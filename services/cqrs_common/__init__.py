"""Code shared by both services: the event contract, messaging, logging, metrics and environment settings."""
