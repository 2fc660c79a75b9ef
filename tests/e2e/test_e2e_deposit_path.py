"""How many of the project's modules one deposit goes through, from the HTTP request to the read model and
the read that waits for it: counted on the four real processes, and held to what docs/life-of-a-command.md
lists, so the document says what a reader really has to open.

Each process records the modules that ran beneath its units of work (devkit.code_path): a request in both
web services, a drain in the relay, a receive and a batch in the projector. Startup, the relay's gauges, the
projector's heartbeat and its replication fallback (the other road, which finds the event already applied)
are not on the way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psycopg2
import pytest
import requests

from devkit import code_path
from devkit.polling import eventually
from devkit.processes import REPO
from tests.e2e.conftest import System, setting, system_on

ROOTS = (
    "django.core.handlers.wsgi:WSGIHandler.__call__",  # one request, middleware included
    "write_service.outbox.relay:Relay.drain",  # what a NOTIFY starts: read, publish, confirm, mark
    "cqrs_common.messaging.consumer:Consumer.receive",  # the projector's batch arriving
    "read_service.projections.projector:Projector.handle",  # ... parsed, applied, committed, acknowledged
)
DOCUMENT = REPO / "docs" / "life-of-a-command.md"


@pytest.fixture(scope="module")
def traced_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, Path]]:
    output = tmp_path_factory.mktemp("code-path")
    with pytest.MonkeyPatch.context() as patch:  # inherited by the four processes the system starts
        patch.setenv(code_path.OUTPUT_VARIABLE, str(output))
        patch.setenv(code_path.ROOTS_VARIABLE, ",".join(ROOTS))
        for system in system_on(setting("TEST_WRITE_RABBITMQ_URL"), setting("TEST_READ_RABBITMQ_URL")):
            yield system, output


def test_a_deposit_goes_through_the_modules_the_document_lists(
    traced_system: tuple[System, Path], http: requests.Session
) -> None:
    system, output = traced_system
    # Opened and given one deposit first, read back: the first request of a worker connects.
    account_id, version = system.opened(http, deposit="6.00")
    _read(system, http, account_id, version)
    # A worker's first request also does what it does once (a listener, a setting read): what a deposit
    # runs is what every deposit runs, so it is what three deposits, on whichever workers, all ran.
    rounds = []
    for _ in range(3):
        started = time.time()
        response = system.command(http, f"/api/accounts/{account_id}/deposit", {"amount": "42.00"})
        assert response.status_code == 200, response.text
        version = response.json()["version"]
        # Read once it is applied, as the document's read finds it: a read that waits adds the wait's path.
        eventually(lambda v=version: _projected_version(system, account_id) == v, timeout=20, what="it")
        _read(system, http, account_id, version)
        rounds.append((started, time.time()))
        time.sleep(0.2)  # the next round's window starts in a later tick
    time.sleep(1)  # each process writes what it recorded a few times a second

    functions = set.intersection(*(code_path.functions_run(output, *window) for window in rounds))
    ran = {function.partition(":")[0] for function in functions}
    print(f"\n{len(ran)} modules, {len(functions)} functions on a deposit's way:")
    print("\n".join(f"  {function}" for function in sorted(functions)))
    documented = _documented_modules()
    assert ran == documented, (
        f"not in {DOCUMENT.name}: {sorted(ran - documented)}; listed but not run: {sorted(documented - ran)}"
    )


def _read(system: System, http: requests.Session, account_id: UUID, version: int) -> None:
    response = system.read_account(http, account_id, min_version=version)
    assert response.status_code == 200 and response.json()["version"] == version, response.text


def _projected_version(system: System, account_id: UUID) -> int | None:
    with psycopg2.connect(system.read_database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT version FROM account_view WHERE account_id = %s", (str(account_id),))
        row = cursor.fetchone()
    connection.close()
    return None if row is None else row[0]


def _documented_modules() -> set[str]:
    """The paths listed in the document's section "The modules on the way", one a line in a code block."""
    section = DOCUMENT.read_text().split("## The modules on the way", 1)[1]
    block = section.split("```", 2)[1]
    return {match for line in block.splitlines() if (match := re.sub(r"\s+#.*$", "", line).strip())}
