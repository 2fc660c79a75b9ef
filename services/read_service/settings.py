"""Settings of read-service (and the projector, which runs in the same codebase against the same database)."""

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

ROOT_URLCONF = "read_service.urls"
WSGI_APPLICATION = "read_service.wsgi.application"

INSTALLED_APPS = [
    *BASE_APPS,
    "django.contrib.staticfiles",
    "read_service.projections",
    "read_service.reporting",
    "read_service.lab_view",
]
# WhiteNoise first: the live view's script and stylesheet are answered before any other middleware runs.
MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware", *BASE_MIDDLEWARE_TOP, *BASE_MIDDLEWARE_BOTTOM]

# The live view (/lab/): one template and its static files, served from the app's own directory by WhiteNoise
# (found by Django's finders when the process starts: no collectstatic step, nothing written at run time, so
# the read-only root file system of the Kubernetes pods is fine).
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]
STATIC_URL = "/lab/static/"
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

DATABASES = {
    "default": config.read_database(CONN_MAX_AGE),
}
DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"

RABBITMQ_URL = config.read_rabbitmq_url()

SPECTACULAR_SETTINGS = spectacular(
    "cqrs-lab read API", "Queries over the read models: accounts, statements, totals."
)
LOGGING = logging_for("read-service")

# Last, once logging is configured: with DEBUG off, no process of the read side starts on public secrets.
development_secrets.refuse_unless_allowed(
    development_secrets.secrets_in_use(
        secret_key=SECRET_KEY,
        urls={
            "READ_DATABASE_URL": (DATABASES["default"]["PASSWORD"], config.DEFAULT_READ_DATABASE_URL),
            # read-service and the projector use the read-service user, the reporting subscriber its own.
            "RABBITMQ_URL": (
                url_password(RABBITMQ_URL),
                (config.DEFAULT_READ_RABBITMQ_URL, config.DEFAULT_REPORTING_RABBITMQ_URL),
            ),
        },
    ),
    debug=DEBUG,
)
