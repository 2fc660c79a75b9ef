"""The one place that reads settings from the environment.

Every process (write-service, read-service, relay, projector) and every packaging (native, Compose,
Kubernetes) is configured through these variables. Defaults are for local development only.

Each setting has its own accessor here, with its variable's name, its default and why: callers never name a
variable. The packaging tests (tests/deploy) find which process reads which variable by where each accessor
is called, so an accessor reads its variables by literal name.
"""

from __future__ import annotations

import environ

env = environ.Env()

# Local development defaults; Compose and Kubernetes override every one of them.
DEFAULT_WRITE_DATABASE_URL = "postgres://cqrs_write:cqrs_write@127.0.0.1:5433/cqrs_write"
DEFAULT_READ_DATABASE_URL = "postgres://cqrs_read:cqrs_read@127.0.0.1:5434/cqrs_read"
DEFAULT_WRITE_RABBITMQ_URL = "amqp://write-service:write-service@127.0.0.1:5672/cqrs"
DEFAULT_READ_RABBITMQ_URL = "amqp://read-service:read-service@127.0.0.1:5672/cqrs"
# The reporting subscriber's broker user (deploy/local/infra.sh); its process gets it as RABBITMQ_URL.
DEFAULT_REPORTING_RABBITMQ_URL = "amqp://reporting:reporting@127.0.0.1:5672/cqrs"
DEFAULT_SECRET_KEY = "dev-only-insecure-secret-key"
DEFAULT_API_TOKEN = "dev-token"
# Secret keys as public as the default: the one .env.example and the Kubernetes base ship.
DEVELOPMENT_SECRET_KEYS = frozenset({DEFAULT_SECRET_KEY, "dev-only-insecure-secret-key-change-me"})


def write_database(conn_max_age: int) -> dict:
    """The write database (ledger, events, outbox) as a Django DATABASES entry."""
    return _database(env.db_url("WRITE_DATABASE_URL", default=DEFAULT_WRITE_DATABASE_URL), conn_max_age)


def read_database(conn_max_age: int) -> dict:
    """The read database (read models, the replicated event log) as a Django DATABASES entry."""
    return _database(env.db_url("READ_DATABASE_URL", default=DEFAULT_READ_DATABASE_URL), conn_max_age)


def _database(config: dict, conn_max_age: int) -> dict:
    """A Django DATABASES entry with persistent connections (4x faster here).

    CONN_HEALTH_CHECKS (off by default, as in Django) would add a `SELECT 1` round trip to every request:
    measured here, about a quarter of a deposit's time in the worker. Without it, a connection the server
    dropped (a database restart) fails the one request that finds it, with 503 and nothing written
    (cqrs_common.web.problems), and Django replaces it at the end of that request.
    """
    config["CONN_MAX_AGE"] = conn_max_age
    config["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
    return config


def django_common() -> dict:
    """Settings both Django projects read the same way."""
    return {
        # Django's signing key (no sessions here, but Django needs one); a public default is refused unless
        # development secrets are allowed.
        "SECRET_KEY": env.str("DJANGO_SECRET_KEY", default=DEFAULT_SECRET_KEY),
        # Off: tracebacks and settings in error pages are for a developer's machine only.
        "DEBUG": env.bool("DJANGO_DEBUG", default=False),
        # Local addresses only, so a default never answers for a public name.
        "ALLOWED_HOSTS": env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"]),
        # Seconds a database connection is reused across requests (see `_database`).
        "CONN_MAX_AGE": env.int("CONN_MAX_AGE", default=300),
    }


def api_tokens() -> frozenset[str]:
    """Bearer tokens the write API accepts, comma-separated so a token can be rotated without downtime; the
    public default is refused unless development secrets are allowed."""
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
    """The root log level; INFO keeps the lifecycle events (started, published, dead-lettered)."""
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
    """The name a process logs under and reports in metrics; `default` is the process's own (`relay`, ...)."""
    return env.str("SERVICE_NAME", default=default)


def write_rabbitmq_url() -> str:
    """The write side's broker user: it may only declare and publish to the events exchange. Several nodes
    of a cluster: their URLs separated by commas (cqrs_common.messaging.connection)."""
    return env.str("RABBITMQ_URL", default=DEFAULT_WRITE_RABBITMQ_URL)


def read_rabbitmq_url() -> str:
    """The read side's broker user: it owns the topology and consumes the projector's queues. Several nodes
    of a cluster: their URLs separated by commas (cqrs_common.messaging.connection)."""
    return env.str("RABBITMQ_URL", default=DEFAULT_READ_RABBITMQ_URL)


def idempotency_key_ttl_seconds() -> int:
    """How long an Idempotency-Key replays its first answer (CONTRACT.md); a day, as is common for payment
    APIs."""
    return env.int("IDEMPOTENCY_KEY_TTL_SECONDS", default=24 * 3600)


# ------------------------------------------------------------------------------------------- gunicorn


def web_bind() -> str:
    """The address gunicorn listens on when its command line names none (the packagings always name one)."""
    return env.str("BIND", default="127.0.0.1:8000")


def web_concurrency() -> int:
    """gunicorn worker processes per web service; the default suits a development machine (size it to the
    host's cores)."""
    return env.int("WEB_CONCURRENCY", default=4)


def gunicorn_timeout() -> int:
    """Seconds before gunicorn kills a sync worker stuck on one request: longer than the longest
    read-your-writes wait (READ_WAIT_MAX_MS) plus its query."""
    return env.int("GUNICORN_TIMEOUT", default=45)


# ---------------------------------------------------------------------------------------------- relay


def relay_metrics_port() -> int:
    """Where the relay serves /metrics; 0 serves none (two relays on one host need two ports)."""
    return env.int("RELAY_METRICS_PORT", default=9101)


def relay_batch_size() -> int:
    """Events the relay reads, publishes and confirms at once: a large batch amortises the confirm round
    trip."""
    return env.int("RELAY_BATCH_SIZE", default=1000)


def relay_poll_interval() -> float:
    """Seconds the relay sleeps between looks at the outbox when no commit notification woke it (a
    notification missed around a reconnect is found this late at most)."""
    return env.float("RELAY_POLL_INTERVAL_SECONDS", default=1.0)


def relay_max_backoff() -> float:
    """The cap, in seconds, of the relay's exponential backoff between broker or database retries: an outage
    that ends is noticed within it."""
    return env.float("RELAY_MAX_BACKOFF_SECONDS", default=5.0)


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


# ------------------------------------------------------------------------- relay and projector: health


def worker_readiness_seconds() -> float:
    """A relay or projector loop that has not beaten for longer than this is not ready (/readyz, CONTRACT.md).
    10 s: twice the longest wait a healthy loop makes between two beats (a 5 s retry backoff; idle waits and
    a standby's lock retries take 1 s), and above the lock timeout, so a loop waiting on a lock turns unready
    only once it waited longer than any lock this system holds in normal operation."""
    return env.float("WORKER_READINESS_SECONDS", default=10.0)


def worker_liveness_seconds() -> float:
    """A relay or projector loop that has not beaten for longer than this is stuck: /healthz answers 503 and
    Kubernetes restarts the process. 60 s: above the statement timeout (30 s) and RabbitMQ's
    blocked-connection timeout (30 s), so whatever those bound fails and is retried by the loop before a
    restart is asked for; a loop past it is stuck where nothing bounds it."""
    return env.float("WORKER_LIVENESS_SECONDS", default=60.0)


def worker_statement_timeout_seconds() -> float:
    """PostgreSQL's `statement_timeout` on the relay's and the projector's sessions: a statement running
    longer is cancelled, and the loop logs it and retries instead of hanging. 30 s: the workers' statements
    take milliseconds (the longest, the relay's count of a million-event backlog, about a second), and below
    the liveness bound, so the loop recovers before Kubernetes would restart it."""
    return env.float("WORKER_STATEMENT_TIMEOUT_SECONDS", default=30.0)


def worker_lock_timeout_seconds() -> float:
    """PostgreSQL's `lock_timeout` on the relay's and the projector's sessions: a lock waited for longer fails
    the statement, and the loop retries. 5 s: the locks the workers meet in normal operation (the other
    projection path's batch, a relay's mark racing another's, a rebuild's swap) last well under a second;
    below the readiness bound, so a loop that keeps failing on a held lock says so (`database_unavailable`)
    instead of falling silent."""
    return env.float("WORKER_LOCK_TIMEOUT_SECONDS", default=5.0)


# ------------------------------------------------------------------------------------------ projector


def projector_metrics_port() -> int:
    """Where the projector serves /metrics; 0 serves none (the default of its --metrics-port)."""
    return env.int("PROJECTOR_METRICS_PORT", default=9102)


def projector_batch_size() -> int:
    """Events the projector applies in one read-database transaction (the default of its --batch-size)."""
    return env.int("PROJECTOR_BATCH_SIZE", default=500)


def projector_prefetch() -> int:
    """Unacknowledged messages RabbitMQ sends the projector ahead (--prefetch): above the batch size, so the
    next batch is already here while one is applied."""
    return env.int("PROJECTOR_PREFETCH", default=1000)


def projector_partitions() -> int:
    """Partitions the projector's events are split into by account (messaging.topology, DEFAULT_PARTITIONS):
    at least the number of projectors, since one partition has one active projector at a time. Every
    projector of a deployment must be given the same number."""
    return env.int("PROJECTOR_PARTITIONS", default=4)


def projector_replicas() -> int:
    """How many projectors run (the StatefulSet's replicas, supervisord's numprocs): with PROJECTOR_ORDINAL it
    says which partitions this one subscribes to first, so the partitions spread over the projectors."""
    return env.int("PROJECTOR_REPLICAS", default=1)


def projector_ordinal() -> int | None:
    """This projector's number, 0 .. PROJECTOR_REPLICAS-1. An integer, or a name ending in `-<n>`: a
    Kubernetes StatefulSet gives its pods such names (`projector-2`), handed over from `metadata.name`. Or
    `auto` (None here): the projector claims the lowest number no running projector holds (a lock in the read
    database), for replicas that are all alike, as Compose's `--scale projector=N` starts them."""
    return parse_projector_ordinal(env.str("PROJECTOR_ORDINAL", default="0"))


def parse_projector_ordinal(value: str) -> int | None:
    """PROJECTOR_ORDINAL's forms, also `projector --ordinal`'s: a number, a name ending in -<n>, or auto."""
    value = value.strip()
    if value == "auto":
        return None
    ordinal = value.rpartition("-")[2]
    if not ordinal.isdigit():
        raise ValueError(f"PROJECTOR_ORDINAL must be a number, end in -<number> or be auto, not {value!r}")
    return int(ordinal)


def projector_standby_delay_seconds() -> float:
    """How long a projector waits before it subscribes to the partitions it does not own, as a standby: long
    enough for their owners, started at the same time, to subscribe first."""
    return env.float("PROJECTOR_STANDBY_DELAY_SECONDS", default=2.0)


def replication_grace_seconds() -> float:
    """How long an event may be missing from the broker before the projector applies it from the replicated
    log instead (--replication-grace-seconds): longer than a normal relay-to-projector delay."""
    return env.float("REPLICATION_GRACE_SECONDS", default=2.0)


# ------------------------------------------------------------------------------------------ reporting


def reporting_metrics_port() -> int:
    """Where the reporting subscriber serves /metrics, /readyz and /healthz; 0 serves none (the default of its
    --metrics-port)."""
    return env.int("REPORTING_METRICS_PORT", default=9103)


# ------------------------------------------------------------------------------- read-side operations


def event_store_database_url() -> str | None:
    """An event store's database to rebuild and verify from, instead of the read database's replica of the
    log; unset (the default) means the replica."""
    return env.str("EVENT_STORE_DATABASE_URL", default="") or None


def replication_admin_database_url() -> str | None:
    """A superuser of the read database, which re-subscribing needs (the service's role is not one, on
    purpose); no default, so nobody re-subscribes by accident."""
    return env.str("REPLICATION_ADMIN_DATABASE_URL", default="") or None


def replication_publisher_conninfo() -> str | None:
    """The write database as the read database's server reaches it (a libpq conninfo). Unset,
    `replication_status` does not look at the slot on the publisher and `resubscribe_events` reaches it as
    the existing subscription did."""
    return env.str("REPLICATION_PUBLISHER_CONNINFO", default="") or None


# ---------------------------------------------------------------------------- the live view (/lab/)
# read-service's page /lab/ draws the pipeline from the other processes' /metrics pages; where those are is
# the packaging's business (service names in Compose and Kubernetes), so each is a setting. The defaults are
# the native run's addresses (CONTRACT.md: write-service 8001, relay 9101, projector 9102).


def lab_write_metrics_url() -> str:
    """write-service's /metrics as read-service reaches it (commands per second on the page)."""
    return env.str("LAB_WRITE_METRICS_URL", default="http://127.0.0.1:8001/metrics")


def lab_relay_metrics_url() -> str:
    """The relay's /metrics as read-service reaches it (outbox backlog, published, slot WAL retained)."""
    return env.str("LAB_RELAY_METRICS_URL", default="http://127.0.0.1:9101/metrics")


def lab_projector_metrics_url() -> str:
    """The projector's /metrics as read-service reaches it (applied by path, dead-lettered, active path)."""
    return env.str("LAB_PROJECTOR_METRICS_URL", default="http://127.0.0.1:9102/metrics")


def lab_write_api_url() -> str:
    """The write API as the learner's browser reaches it: the page's "Try it" commands go there directly
    (with the token the learner types), so it is the host's address, not a service name."""
    return env.str("LAB_WRITE_API_URL", default="http://127.0.0.1:8001")


def lab_origins() -> list[str]:
    """Origins whose pages may call the write API from a browser (CORS, on /api/ only): where /lab/ is
    opened. The native and published read-service address by default; empty allows no browser page."""
    return env.list("LAB_ORIGINS", default=["http://127.0.0.1:8002", "http://localhost:8002"])
