"""Statement and lock timeouts for the workers' database sessions (WORKER_STATEMENT_TIMEOUT_SECONDS,
WORKER_LOCK_TIMEOUT_SECONDS).

Without them a worker's statement waits as long as whatever blocks it: a lock held by a forgotten
transaction, a table locked by an operator. With them the statement fails (SQLSTATE 57014 or 55P03, both an
OperationalError), and the loop logs it and retries as it does when the database is away: it never hangs
for good and never exits for it. Set per session, so the web services and one-off commands (a rebuild's long
statements) keep the server's defaults.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.signals import connection_created


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def postgres_options(*, statement_timeout: float, lock_timeout: float) -> list[str]:
    """libpq `options` entries that set both at connection time (no extra round trip)."""
    return [
        f"-c statement_timeout={_milliseconds(statement_timeout)}",
        f"-c lock_timeout={_milliseconds(lock_timeout)}",
    ]


def bound_django_sessions(*, statement_timeout: float, lock_timeout: float) -> None:
    """Every Django connection this process opens from now on, in any thread, gets both timeouts."""
    settings = [f"{_milliseconds(statement_timeout)}ms", f"{_milliseconds(lock_timeout)}ms"]

    def on_connect(sender: Any, connection: Any, **_kwargs: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                settings,
            )

    connection_created.connect(on_connect, weak=False, dispatch_uid="cqrs-worker-session-timeouts")
