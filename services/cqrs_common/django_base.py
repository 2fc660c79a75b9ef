"""Django settings both services share. Each service's settings module imports these and adds its own.

Values come from `cqrs_common.config`, the one place that reads the environment.
"""

from __future__ import annotations

from cqrs_common import config
from cqrs_common import logging as cqrs_logging

_common = config.django_common()

SECRET_KEY: str = _common["SECRET_KEY"]
DEBUG: bool = _common["DEBUG"]
ALLOWED_HOSTS: list[str] = _common["ALLOWED_HOSTS"]
CONN_MAX_AGE: int = _common["CONN_MAX_AGE"]

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
APPEND_SLASH = False

# Bodies over 64 KiB are refused with 413 (CONTRACT.md, "Errors").
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

BASE_APPS = [
    "django.contrib.contenttypes",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
]

# Prometheus first and last so it times the whole stack; correlation id before anything that logs.
BASE_MIDDLEWARE_TOP = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "cqrs_common.web.middleware.CorrelationIdMiddleware",
    "cqrs_common.web.middleware.BodyLimitMiddleware",
    "django.middleware.common.CommonMiddleware",
]
BASE_MIDDLEWARE_BOTTOM = ["django_prometheus.middleware.PrometheusAfterMiddleware"]

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "cqrs_common.web.problems.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
}


def spectacular(title: str, description: str) -> dict:
    return {
        "TITLE": title,
        "DESCRIPTION": description,
        "VERSION": "1.0.0",
        "SERVE_INCLUDE_SCHEMA": False,
        "COMPONENT_SPLIT_REQUEST": True,
        "POSTPROCESSING_HOOKS": [
            "drf_spectacular.hooks.postprocess_schema_enums",
            "cqrs_common.web.schema_hooks.document_server_errors",
        ],
    }


def logging_for(service: str) -> dict:
    """Django's LOGGING: the same structlog configuration every process uses."""
    cqrs_logging.configure(config.service_name(service))
    return cqrs_logging.logging_config(config.service_name(service))
