"""Settings of write-service (and the relay, which runs in the same codebase against the same database)."""

from cqrs_common import config, development_secrets
from cqrs_common.development_secrets import url_password
from cqrs_common.django_base import *  # noqa: F403
from cqrs_common.django_base import (
    BASE_APPS,
    BASE_MIDDLEWARE_BOTTOM,
    BASE_MIDDLEWARE_TOP,
    CONN_MAX_AGE,
    DEBUG,
    SECRET_KEY,
    logging_for,
    spectacular,
)

ROOT_URLCONF = "write_service.urls"
WSGI_APPLICATION = "write_service.wsgi.application"

INSTALLED_APPS = [*BASE_APPS, "corsheaders", "write_service.ledger"]
# CORS answers preflights before anything else runs on them (no token, no body: nothing to check there).
MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *BASE_MIDDLEWARE_TOP, *BASE_MIDDLEWARE_BOTTOM]

DATABASES = {
    "default": config.write_database(CONN_MAX_AGE),
}
# django-prometheus wraps the engine to count queries and errors.
DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"

API_TOKENS = config.api_tokens()
IDEMPOTENCY_KEY_TTL_SECONDS = config.idempotency_key_ttl_seconds()
RABBITMQ_URL = config.write_rabbitmq_url()

# Browsers may call the API from the live view's page (read-service's /lab/, CONTRACT.md "CORS"): only from
# LAB_ORIGINS, only on /api/, with the headers a command sends and the ones its answer carries. No cookies
# are involved (credentials stay off): the page sends the bearer token the learner typed, as any client does.
CORS_ALLOWED_ORIGINS = config.lab_origins()
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_METHODS = ["GET", "POST", "OPTIONS"]
CORS_ALLOW_HEADERS = ["authorization", "content-type", "idempotency-key", "if-match", "x-correlation-id"]
CORS_EXPOSE_HEADERS = [
    "ETag",
    "Location",
    "X-Consistency-Token",
    "X-Correlation-ID",
    "Idempotent-Replayed",
    "Retry-After",
]
CORS_PREFLIGHT_MAX_AGE = 600

SPECTACULAR_SETTINGS = spectacular(
    "cqrs-lab write API", "Commands of the ledger: open, deposit, withdraw, close, transfer."
)
LOGGING = logging_for("write-service")

# Last, once logging is configured: with DEBUG off, no process of the write side starts on public secrets.
development_secrets.refuse_unless_allowed(
    development_secrets.secrets_in_use(
        secret_key=SECRET_KEY,
        api_tokens=API_TOKENS,
        urls={
            "WRITE_DATABASE_URL": (DATABASES["default"]["PASSWORD"], config.DEFAULT_WRITE_DATABASE_URL),
            "RABBITMQ_URL": (
                url_password(RABBITMQ_URL),
                config.DEFAULT_WRITE_RABBITMQ_URL,
            ),
        },
    ),
    debug=DEBUG,
)
