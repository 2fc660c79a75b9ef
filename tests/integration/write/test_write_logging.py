"""One structured log line per command: `command_handled`, or `command_rejected` with the reason."""

from __future__ import annotations

import logging

import pytest

pytestmark = pytest.mark.django_db


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict]:
    # structlog hands the standard library its event dict as the record's message.
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == event]


def test_a_handled_command_logs_its_name_account_version_and_correlation_id(ledger, caplog) -> None:
    account_id = ledger.open()
    caplog.clear()

    with caplog.at_level(logging.INFO):
        ledger.post(f"/api/accounts/{account_id}/deposit", {"amount": "1.00"}, HTTP_X_CORRELATION_ID="log-1")

    [line] = _lines(caplog, "command_handled")
    assert line["command"] == "deposit"
    assert line["account_id"] == str(account_id)
    assert line["version"] == 2
    assert line["correlation_id"] == "log-1"
    assert _lines(caplog, "command_rejected") == []


def test_a_rejected_command_logs_the_reason(ledger, caplog) -> None:
    account_id = ledger.open()
    caplog.clear()

    with caplog.at_level(logging.INFO):
        ledger.post(f"/api/accounts/{account_id}/withdraw", {"amount": "1.00"}, HTTP_X_CORRELATION_ID="log-2")

    [line] = _lines(caplog, "command_rejected")
    assert (line["command"], line["account_id"], line["reason"]) == (
        "withdraw",
        str(account_id),
        "insufficient_funds",
    )
    assert line["correlation_id"] == "log-2"
    assert _lines(caplog, "command_handled") == []
