"""Django/DRF pieces both web services share: problem+json errors, correlation ids, health checks."""
