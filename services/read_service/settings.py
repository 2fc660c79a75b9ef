"""Settings of read-service (and the projector, which runs in the same codebase against the same database)."""

from cqrs_common import config
from cqrs_common.django_base import *  # noqa: F403
from cqrs_common.django_base import (
    BASE_APPS,
    BASE_MIDDLEWARE_BOTTOM,
    BASE_MIDDLEWARE_TOP,
    CONN_MAX_AGE,
    logging_for,
    spectacular,
)

ROOT_URLCONF = "read_service.urls"
WSGI_APPLICATION = "read_service.wsgi.application"

INSTALLED_APPS = [*BASE_APPS, "read_service.projections"]
MIDDLEWARE = [*BASE_MIDDLEWARE_TOP, *BASE_MIDDLEWARE_BOTTOM]

DATABASES = {
    "default": config.database("READ_DATABASE_URL", config.DEFAULT_READ_DATABASE_URL, CONN_MAX_AGE),
}
DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"

RABBITMQ_URL = config.rabbitmq_url(config.DEFAULT_READ_RABBITMQ_URL)

SPECTACULAR_SETTINGS = spectacular(
    "cqrs-lab read API", "Queries over the read models: accounts, statements, totals."
)
LOGGING = logging_for("read-service")
