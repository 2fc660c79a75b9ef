"""The optional event store (profile `eventstore` with deploy/compose/eventstore.yml) comes up beside the
running system, subscribes to write-db's events, and is the read side's log for verify_read_models."""

from __future__ import annotations

import psycopg2
import requests

from tests.compose.conftest import PORTS, ComposeSystem
from tests.support.processes import eventually

WITH_STORE = {
    "COMPOSE_FILE": "docker-compose.yml:deploy/compose/eventstore.yml",
    "COMPOSE_PROFILES": "eventstore",
}


def test_the_eventstore_profile_up_once(system: ComposeSystem, http: requests.Session) -> None:
    system.open_account(http, "store", deposit="5.00")
    system.compose("up", **WITH_STORE)
    assert system.inspect("event-store-init", "{{.State.ExitCode}}") == "0"

    def store_events() -> int:
        url = f"postgres://cqrs_events:cqrs_events@127.0.0.1:{PORTS['EVENT_STORE_HOST_PORT']}/cqrs_events"
        connection = psycopg2.connect(url)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM events")
                return cursor.fetchone()[0]
        finally:
            connection.close()

    written = system.count_events()
    eventually(lambda: store_events() == written, timeout=60, interval=1, what="the event store's copy")
    verified = system.compose(
        "exec", "-T", "projector", "python", "-m", "read_service", "verify_read_models", "--wait", "30",
        check=False, **WITH_STORE,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    env = system.compose("exec", "-T", "projector", "printenv", "EVENT_STORE_DATABASE_URL", **WITH_STORE)
    assert "@event-store:5432/cqrs_events" in env.stdout
