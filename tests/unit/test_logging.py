"""How log lines render (cqrs_common.logging): JSON, console, correlation ids, gunicorn loggers, redaction."""

from __future__ import annotations

import json
import logging
import logging.config
from types import SimpleNamespace

import pytest
import structlog
from gunicorn.config import Config as GunicornConfig
from gunicorn.glogging import Logger as GunicornLogger

from cqrs_common import logging as cqrs_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    cqrs_logging._configured_for = None
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False, "root": {"handlers": []}})


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_line_names_the_service_level_and_fields(capsys):
    cqrs_logging.configure("relay", fmt="json", level="INFO")
    cqrs_logging.get_logger("relay.publisher").info("event_published", event_id="e-1", position=7)

    [line] = _json_lines(capsys.readouterr().err)
    assert line["event"] == "event_published"
    assert line["service"] == "relay"
    assert line["level"] == "info"
    assert line["logger"] == "relay.publisher"
    assert line["event_id"] == "e-1" and line["position"] == 7
    assert line["timestamp"].endswith("Z")


def test_correlation_id_is_bound_per_request_and_per_message(capsys):
    cqrs_logging.configure("projector", fmt="json")
    log = cqrs_logging.get_logger("projector")
    cqrs_logging.bind_correlation_id("req-1")
    log.info("command_handled")
    with cqrs_logging.correlation_context("msg-2", event_id="e-2"):
        log.info("event_applied")
    log.info("after_message")
    cqrs_logging.clear_context()
    log.info("outside")

    lines = _json_lines(capsys.readouterr().err)
    assert [line.get("correlation_id") for line in lines] == ["req-1", "msg-2", "req-1", None]
    assert lines[1]["event_id"] == "e-2"
    assert "event_id" not in lines[2]


def test_django_request_warnings_for_4xx_are_silenced(capsys):
    cqrs_logging.configure("write-service", fmt="json")
    logging.getLogger("django.request").warning("Not Found: %s", "/nowhere")
    logging.getLogger("django.request").error("Internal Server Error: %s", "/boom")

    assert [line["event"] for line in _json_lines(capsys.readouterr().err)] == [
        "Internal Server Error: /boom"
    ]


def test_standard_library_records_render_like_structlog_ones(capsys):
    cqrs_logging.configure("write-service", fmt="json")
    cqrs_logging.bind_correlation_id("c-9")
    logging.getLogger("django.security").warning("Not Found: %s", "/nowhere")

    [line] = _json_lines(capsys.readouterr().err)
    assert line == {
        "event": "Not Found: /nowhere",
        "logger": "django.security",
        "level": "warning",
        "service": "write-service",
        "correlation_id": "c-9",
        "timestamp": line["timestamp"],
    }


def test_exceptions_are_rendered_into_the_json_line(capsys):
    cqrs_logging.configure("relay", fmt="json")
    try:
        raise RuntimeError("broker gone")
    except RuntimeError:
        cqrs_logging.get_logger("relay").exception("publish_failed")

    [line] = _json_lines(capsys.readouterr().err)
    assert line["event"] == "publish_failed" and line["level"] == "error"
    assert "RuntimeError: broker gone" in line["exception"]


def test_console_lines_start_with_the_service_name(capsys):
    cqrs_logging.configure("read-service", fmt="console")
    cqrs_logging.bind_correlation_id("c-3")
    cqrs_logging.get_logger("x").info("query_served", account_id="a-1")
    logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 42)

    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith("read-service   | ")
    assert "query_served" in first and "account_id=a-1" in first and "correlation_id=c-3" in first
    assert second.startswith("read-service   | ") and "Booting worker with pid: 42" in second


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"authorization": "Bearer dev-token"}, {"authorization": "[redacted]"}),
        ({"db_password": "p", "api_token": "t", "X-Api-Key": "k"}, {"db_password": "[redacted]"}),
        (
            {"headers": {"Authorization": "Bearer x", "Accept": "json"}},
            {"headers": {"Authorization": "[redacted]", "Accept": "json"}},
        ),
        ({"url": "amqp://relay:s3cret@rabbitmq:5672/cqrs"}, {"url": "amqp://relay:***@rabbitmq:5672/cqrs"}),
        (
            {"error": "could not connect to postgres://cqrs_write:pw@db:5432/x"},
            {"error": "could not connect to postgres://cqrs_write:***@db:5432/x"},
        ),
        ({"body": b"\x00" * 100}, {"body": "[100 bytes]"}),
        ({"items": [{"token": "t"}]}, {"items": [{"token": "[redacted]"}]}),
    ],
)
def test_secrets_never_reach_the_output(capsys, fields, expected):
    cqrs_logging.configure("write-service", fmt="json")
    cqrs_logging.get_logger("x").info("command_rejected", **fields)

    [line] = _json_lines(capsys.readouterr().err)
    for key, value in expected.items():
        assert line[key] == value
    assert "s3cret" not in json.dumps(line) and "dev-token" not in json.dumps(line)


def test_long_values_are_cut_so_payloads_stay_out_of_the_logs(capsys):
    cqrs_logging.configure("projector", fmt="json")
    cqrs_logging.get_logger("x").warning("message_dead_lettered", body="x" * 5000)

    [line] = _json_lines(capsys.readouterr().err)
    assert len(line["body"]) < cqrs_logging.MAX_STRING + 40
    assert line["body"].endswith("...[5000 chars]")


def _environ(method: str, path: str, query: str = "") -> dict[str, str]:
    return {
        "REQUEST_METHOD": method,
        "RAW_URI": f"{path}?{query}" if query else path,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": "Bearer dev-token",
    }


def _gunicorn_logger(service: str, monkeypatch, *, access_log: bool) -> GunicornLogger:
    monkeypatch.setenv("ACCESS_LOG", "1" if access_log else "0")
    cfg = GunicornConfig()
    cfg.set("logconfig_dict", cqrs_logging.logging_config(service, fmt="json", level="INFO"))
    cfg.set("access_log_format", '%(h)s "%(r)s" %(s)s %(B)s %(M)sms %({x-correlation-id}o)s')
    return GunicornLogger(cfg)


def test_gunicorn_error_log_goes_through_structlog_only(capsys, monkeypatch):
    log = _gunicorn_logger("write-service", monkeypatch, access_log=False)
    log.info("Booting worker with pid: %s", 1234)

    err = capsys.readouterr()
    [line] = _json_lines(err.err)
    assert line["event"] == "Booting worker with pid: 1234"
    assert line["logger"] == "gunicorn.error" and line["service"] == "write-service"
    assert "[INFO]" not in err.err + err.out  # gunicorn's own formatter is gone


def test_gunicorn_access_lines_become_structured_request_served_events(capsys, monkeypatch):
    log = _gunicorn_logger("read-service", monkeypatch, access_log=True)
    response = SimpleNamespace(status="200 OK", headers=[("X-Correlation-ID", "c-42")], sent=17)
    request = SimpleNamespace(
        headers=[("AUTHORIZATION", "Bearer dev-token")],
        method="GET",
        uri="/api/accounts?owner=alice",
        path="/api/accounts",
        query="owner=alice",
        version=(1, 1),
    )
    environ = _environ("GET", "/api/accounts", "owner=alice")
    log.access(response, request, environ, request_time=SimpleNamespace(seconds=0, microseconds=2500))

    [line] = _json_lines(capsys.readouterr().err)
    assert line["event"] == "request_served"
    assert line["logger"] == "gunicorn.access" and line["service"] == "read-service"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/accounts", "200")
    assert line["correlation_id"] == "c-42"
    assert line["duration_ms"] == 2
    assert "dev-token" not in json.dumps(line)


def test_access_lines_are_off_unless_asked_for(capsys, monkeypatch):
    log = _gunicorn_logger("read-service", monkeypatch, access_log=False)
    response = SimpleNamespace(status="200 OK", headers=[], sent=0)
    request = SimpleNamespace(
        headers=[], method="GET", uri="/healthz", path="/healthz", query="", version=(1, 1)
    )
    log.access(
        response,
        request,
        _environ("GET", "/healthz"),
        request_time=SimpleNamespace(seconds=0, microseconds=1),
    )

    assert capsys.readouterr().err == ""


def test_auto_format_is_json_when_not_at_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert cqrs_logging.resolve_format("auto") == "json"
    assert cqrs_logging.resolve_format("CONSOLE") == "console"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        cqrs_logging.resolve_format("xml")
