"""The one module that configures structlog, for every process.

JSON lines in containers and under CI; a readable console rendering when a person runs a process at a
terminal. Every line carries `service` (the process name, which also prefixes console lines so the merged
stream of `make run` shows who spoke) and, inside a request or a message, `correlation_id` bound through
`structlog.contextvars`. Standard-library loggers (Django, gunicorn, pika) are routed through the same
processors, so their lines look the same.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import structlog

from cqrs_common import config

_configured_for: str | None = None


def _add_service(service: str):
    def processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def _prefix_console(service: str):
    """Console lines start with the process name, like a process manager's prefix."""
    renderer = structlog.dev.ConsoleRenderer(colors=False, pad_event_to=28)

    def render(logger: Any, name: str, event_dict: dict[str, Any]) -> str:
        event_dict.pop("service", None)
        return f"{service:<14} | {renderer(logger, name, event_dict)}"

    return render


def logging_config(service: str, fmt: str | None = None, level: str | None = None) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict; Django's LOGGING and gunicorn's logconfig_dict use it too."""
    fmt = fmt or config.log_format()
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared = _shared_processors(service)
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else _prefix_console(service)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
                "foreign_pre_chain": shared,
            }
        },
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "structlog", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["default"], "level": level or config.log_level()},
        "loggers": {
            # Routine connection chatter stays out of the stream unless something goes wrong.
            "pika": {"level": "WARNING"},
            "django.db.backends": {"level": "WARNING"},
            "gunicorn.access": {"level": "WARNING"},
        },
    }


def _shared_processors(service: str) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]


def configure(service: str, fmt: str | None = None, level: str | None = None) -> None:
    """Configure structlog and the standard library once per process; later calls are no-ops."""
    global _configured_for
    if _configured_for == service:
        return
    logging.config.dictConfig(logging_config(service, fmt, level))
    structlog.configure(
        processors=[
            *_shared_processors(service),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _configured_for = service


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


def bind_correlation_id(correlation_id: str) -> None:
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()
