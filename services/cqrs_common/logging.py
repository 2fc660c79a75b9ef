"""The one module that configures structlog, for every process.

JSON lines in containers and under CI; a readable console rendering when a person runs a process at a
terminal (`LOG_FORMAT=auto|json|console`). Every line carries `service` (the process name, which also prefixes
console lines so the merged stream of `make run` shows who spoke) and, inside a request or a message,
`correlation_id` bound through `structlog.contextvars`. Standard-library loggers (Django, gunicorn, pika) are
routed through the same processors, so their lines look the same; gunicorn's access lines become structured
`request_served` events. Secrets never reach the output: keys such as `authorization` or `password` are
redacted, credentials inside URLs are masked and long strings are cut.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog

from cqrs_common import config

Processor = Any  # structlog's processor protocol: (logger, method_name, event_dict) -> event_dict

REDACTED = "[redacted]"
# A key is sensitive when its name contains one of these (case-insensitive): `Authorization`, `db_password`,
# `api_token`, `X-Api-Key`, `session_cookie`, ...
_SENSITIVE_KEY = re.compile(r"authorization|password|passwd|secret|token|api[_-]?key|cookie|credential", re.I)
# `scheme://user:password@host` -> `scheme://user:***@host` (database and broker URLs).
_URL_CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.I)
MAX_STRING = 1024  # longer values (a request body, a whole message) are cut: logs carry ids, not payloads
_NEVER_REDACTED = frozenset({"event", "level", "logger", "timestamp", "service"})

_configured_for: str | None = None


def redact_secrets(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop the values of sensitive keys, mask URL credentials and cut long strings, nested dicts too."""
    return {key: _scrub(key, value, depth=0) for key, value in event_dict.items()}


@functools.lru_cache(maxsize=4096)
def _sensitive(key: str) -> bool:
    """Keys repeat from line to line (a few dozen names), so each is matched once per process."""
    return key not in _NEVER_REDACTED and _SENSITIVE_KEY.search(key) is not None


def _scrub(key: Any, value: Any, depth: int) -> Any:
    if isinstance(key, str) and _sensitive(key):
        return REDACTED
    if isinstance(value, str):
        if "@" in value and "://" in value:  # a cheap test first: the pattern needs both
            value = _URL_CREDENTIALS.sub(r"\g<head>***@", value)
        return value if len(value) <= MAX_STRING else f"{value[:MAX_STRING]}...[{len(value)} chars]"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[{len(value)} bytes]"
    if isinstance(value, Mapping) and depth < 4:
        return {k: _scrub(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple) and depth < 4:
        return [_scrub(None, v, depth + 1) for v in value]
    return value


def _add_service(service: str) -> Processor:
    def add_service(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


# gunicorn logs each request on `gunicorn.access` with a dict of "atoms" as the record's args.
_ACCESS_FIELDS = {"m": "method", "U": "path", "s": "status", "h": "remote_addr", "B": "bytes"}


def structure_access_log(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Turn gunicorn's formatted access line into a `request_served` event with fields.

    The formatter hands a standard-library record's arguments over as `positional_args`; they are dropped
    here for every record, since the message has already been formatted with them.
    """
    record = event_dict.get("_record")
    atoms = event_dict.pop("positional_args", None)
    if record is None or record.name != "gunicorn.access" or not isinstance(atoms, Mapping):
        return event_dict
    event_dict["event"] = "request_served"
    for atom, field in _ACCESS_FIELDS.items():
        if atom in atoms and atoms[atom] != "-":
            event_dict[field] = atoms[atom]
    if "M" in atoms:  # request time in milliseconds
        event_dict["duration_ms"] = atoms["M"]
    # The Django middleware has cleared its context by now; the response header still names the request.
    correlation_id = atoms.get("{x-correlation-id}o", "-")
    if correlation_id != "-":
        event_dict.setdefault("correlation_id", correlation_id)
    return event_dict


def _console_renderer(service: str) -> Processor:
    """Console lines start with the process name, like a process manager's prefix."""
    renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), pad_event_to=28)

    def render(logger: Any, name: str, event_dict: dict[str, Any]) -> str:
        event_dict.pop("service", None)
        return f"{service:<14} | {renderer(logger, name, event_dict)}"

    return render


def resolve_format(fmt: str | None = None) -> str:
    """`json` or `console`; `auto` means console at a terminal and JSON everywhere else (containers, CI)."""
    fmt = (fmt or config.log_format()).lower()
    if fmt == "auto":
        return "console" if sys.stderr.isatty() else "json"
    if fmt not in {"json", "console"}:
        raise ValueError(f"LOG_FORMAT must be auto, json or console, not {fmt!r}")
    return fmt


def _shared_processors(service: str) -> list[Processor]:
    """Run for every line, whether it came from structlog or from a standard-library logger."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
        structlog.processors.StackInfoRenderer(),
    ]


def _final_processors(service: str, fmt: str) -> list[Processor]:
    """Run once per line just before rendering, so redaction also covers stdlib records."""
    steps: list[Processor] = [
        structure_access_log,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        redact_secrets,
    ]
    if fmt == "json":
        # The console renderer formats exceptions itself (and warns if they arrive pre-formatted).
        steps += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(default=str)]
    else:
        steps.append(_console_renderer(service))
    return steps


def logging_config(service: str, fmt: str | None = None, level: str | None = None) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict; Django's LOGGING and gunicorn's logconfig_dict use it too.

    gunicorn merges logconfig_dict into its defaults key by key, and its own handlers on `gunicorn.error` and
    `gunicorn.access` survive unless those loggers are named here: naming them replaces the handlers, so
    gunicorn's `[INFO] Booting worker` lines come out through structlog like everything else.
    """
    fmt = resolve_format(fmt)
    level = (level or config.log_level()).upper()
    access_level = "INFO" if config.access_log_enabled() else "WARNING"
    via_structlog = {"handlers": ["default"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": _final_processors(service, fmt),
                "foreign_pre_chain": _shared_processors(service),
                "pass_foreign_args": True,  # for structure_access_log
            }
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "structlog",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "gunicorn.error": {**via_structlog, "level": level},
            "gunicorn.access": {**via_structlog, "level": access_level},
            # Django installs its own console and mail handlers; its records go to the root handler instead.
            "django": {"handlers": [], "propagate": True, "level": level},
            # Routine connection chatter stays out of the stream unless something goes wrong.
            "pika": {"level": "WARNING"},
            "django.db.backends": {"level": "WARNING"},
            # Every 4xx would otherwise add a free-text warning; the answer itself is problem+json.
            "django.request": {"level": "ERROR"},
        },
    }


def configure(service: str, fmt: str | None = None, level: str | None = None) -> None:
    """Configure structlog and the standard library once per process; later calls are no-ops.

    Calling it again with another service name reconfigures (a management command that runs under the
    settings of its web service, such as the relay, names itself this way).
    """
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
    """Bind for the rest of this request or message; `clear_context()` ends it."""
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()


@contextmanager
def correlation_context(correlation_id: str | None, **fields: Any) -> Iterator[None]:
    """Every line logged inside carries the correlation id and the given ids (`event_id=...`).

    For the relay and the projector: one block per message, restoring the previous context afterwards.
    """
    with structlog.contextvars.bound_contextvars(correlation_id=correlation_id, **fields):
        yield
