"""The optional event store (profile `eventstore`, with deploy/compose/eventstore.yml for the read side) comes
up beside the running system, subscribes to write-db's events, and is the log verify_read_models reads."""

from __future__ import annotations

import psycopg2
import requests

from devkit.polling import eventually
from tests.compose.conftest import PORTS, ComposeSystem

PROFILE = {"COMPOSE_PROFILES": "eventstore"}
WITH_OVERRIDE = {"COMPOSE_FILE": "docker-compose.yml:deploy/compose/eventstore.yml", **PROFILE}


def test_the_eventstore_profile_up_once(system: ComposeSystem, http: requests.Session) -> None:
    system.open_account(http, "store", deposit="5.00")
    # Only the profile's services (and what they wait for): the running read side is left as it is.
    system.compose("up", "event-store", "event-store-init", **PROFILE)
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
    # A projector container as the override file makes it (its URL, its network), for one maintenance run.
    verified = system.compose(
        "run", "--rm", "--no-deps", "-T", "projector", "sh", "-c",
        'printenv EVENT_STORE_DATABASE_URL && exec python -m read_service verify_read_models --wait 30',
        check=False, **WITH_OVERRIDE,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "@event-store:5432/cqrs_events" in verified.stdout
