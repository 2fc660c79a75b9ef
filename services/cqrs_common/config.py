"""The one place that reads settings from the environment.

Every process (write-service, read-service, relay, projector) and every packaging (native, Compose,
Kubernetes) is configured through these variables. Defaults are for local development only.
"""

from __future__ import annotations

import environ

env = environ.Env()

# Local development defaults; Compose and Kubernetes override every one of them.
DEFAULT_WRITE_DATABASE_URL = "postgres://cqrs_write:cqrs_write@127.0.0.1:5433/cqrs_write"
DEFAULT_READ_DATABASE_URL = "postgres://cqrs_read:cqrs_read@127.0.0.1:5434/cqrs_read"
DEFAULT_WRITE_RABBITMQ_URL = "amqp://write-service:write-service@127.0.0.1:5672/cqrs"
DEFAULT_READ_RABBITMQ_URL = "amqp://read-service:read-service@127.0.0.1:5672/cqrs"
DEFAULT_SECRET_KEY = "dev-only-insecure-secret-key"
DEFAULT_API_TOKEN = "dev-token"
# Secret keys as public as the default: the one .env.example and the Kubernetes base ship.
DEVELOPMENT_SECRET_KEYS = frozenset({DEFAULT_SECRET_KEY, "dev-only-insecure-secret-key-change-me"})


def database(var: str, default: str, conn_max_age: int) -> dict:
    """A Django DATABASES entry from a URL variable, with persistent connections (4x faster here).

    CONN_HEALTH_CHECKS (off by default, as in Django) would add a `SELECT 1` round trip to every request:
    measured here, about a quarter of a deposit's time in the worker. Without it, a connection the server
    dropped (a database restart) fails the one request that finds it, with 503 and nothing written
    (cqrs_common.web.problems), and Django replaces it at the end of that request.
    """
    config = env.db_url(var, default=default)
    config["CONN_MAX_AGE"] = conn_max_age
    config["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
    return config


def django_common() -> dict:
    """Settings both Django projects read the same way."""
    return {
        "SECRET_KEY": env.str("DJANGO_SECRET_KEY", default=DEFAULT_SECRET_KEY),
        "DEBUG": env.bool("DJANGO_DEBUG", default=False),
        "ALLOWED_HOSTS": env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"]),
        "CONN_MAX_AGE": env.int("CONN_MAX_AGE", default=300),
    }


def api_tokens() -> frozenset[str]:
    return frozenset(t.strip() for t in env.list("CQRS_API_TOKENS", default=[DEFAULT_API_TOKEN]) if t.strip())


def allow_development_secrets() -> bool:
    """Start with DJANGO_DEBUG off though secrets hold development values (cqrs_common.development_secrets).

    Off unless set: a deployment that forgot a secret stops instead of running with a public one.
    """
    return env.bool("ALLOW_DEVELOPMENT_SECRETS", default=False)


def log_format() -> str:
    """`json`, `console`, or `auto` (console at a terminal, JSON otherwise)."""
    return env.str("LOG_FORMAT", default="auto")


def log_level() -> str:
    return env.str("LOG_LEVEL", default="INFO")


def access_log_enabled() -> bool:
    """gunicorn's per-request `request_served` lines; off by default (the request metrics say the same)."""
    return env.bool("ACCESS_LOG", default=False)


def web_threads() -> int:
    """Threads per gunicorn worker: 1 runs sync workers (write-service), more runs gthread (read-service,
    whose read-your-writes waits sleep in a thread while the worker's other threads serve)."""
    return env.int("WEB_THREADS", default=1)


def read_wait_max_concurrent() -> int:
    """Read-your-writes waits one read-service process holds at once; one more is refused with 503 at once.
    Below WEB_THREADS, so waiting never takes every thread from /readyz and plain reads."""
    return env.int("READ_WAIT_MAX_CONCURRENT", default=4)


def read_wait_max_ms() -> int:
    """The longest `wait_ms` a read accepts (CONTRACT.md, "Read API"); a larger one is refused with 400."""
    return env.int("READ_WAIT_MAX_MS", default=30_000)


def prometheus_multiproc_dir() -> str | None:
    """Where gunicorn workers share their metrics; the gunicorn config picks a fresh one when unset."""
    return env.str("PROMETHEUS_MULTIPROC_DIR", default="") or None


def service_name(default: str) -> str:
    """The name a process logs under and reports in metrics (`write-service`, `relay`, ...)."""
    return env.str("SERVICE_NAME", default=default)


def rabbitmq_url(default: str) -> str:
    return env.str("RABBITMQ_URL", default=default)


def relay_leadership_timeout() -> float:
    """Seconds PostgreSQL keeps a silent relay's session, and so its leadership (an advisory lock), after the
    relay's host stopped answering (a partition, a power loss): the server's TCP keepalives and user timeout
    on that session end it, and a standby takes over. Without them the kernel's defaults hold the lock for
    15 minutes (a connection with unacknowledged data) to over 2 hours (an idle one)."""
    return env.float("RELAY_LEADERSHIP_TIMEOUT_SECONDS", default=10.0)


def relay_database_timeout() -> float:
    """Seconds the relay waits on a database that stopped answering before it drops its session and stands
    by (libpq's keepalives and TCP user timeout). Longer than the leadership timeout: by the time a cut-off
    relay gives up, the server has already handed the leadership to a standby."""
    return env.float("RELAY_DATABASE_TIMEOUT_SECONDS", default=20.0)


def int_setting(name: str, default: int) -> int:
    return env.int(name, default=default)


def float_setting(name: str, default: float) -> float:
    return env.float(name, default=default)


def str_setting(name: str, default: str) -> str:
    return env.str(name, default=default)
