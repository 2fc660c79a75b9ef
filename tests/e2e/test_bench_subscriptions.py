"""A benchmark of its own pauses the machine's other subscriptions for its run and resumes them after: each
keeps its slot, so it goes on where it stopped. Shown on the tests' own pair, as seen from a run on databases
that do not exist (so that every subscription of the machine is another's)."""

from __future__ import annotations

from bench.infra import Databases, other_subscriptions_paused
from devkit.replication import replication_of, superuser_sql, wait_until_streaming
from tests.e2e.conftest import setting


def _enabled(read_port: int, read_db: str, subscription: str) -> bool:
    found = superuser_sql(
        read_port, read_db, f"SELECT subenabled FROM pg_subscription WHERE subname = '{subscription}'"
    )
    return found == "t"


def test_other_subscriptions_are_paused_for_the_run_and_resumed_after() -> None:
    tests_pair = replication_of(setting("READ_DATABASE_URL"))
    wait_until_streaming(tests_pair)
    elsewhere = Databases.dedicated("subscriptions_paused_check")

    with other_subscriptions_paused(elsewhere) as paused:
        assert f"{tests_pair.read_db}.{tests_pair.subscription}" in paused
        assert not _enabled(tests_pair.read_port, tests_pair.read_db, tests_pair.subscription)

    assert _enabled(tests_pair.read_port, tests_pair.read_db, tests_pair.subscription)
    wait_until_streaming(tests_pair)


def test_the_runs_own_subscription_is_not_paused() -> None:
    tests_pair = replication_of(setting("READ_DATABASE_URL"))
    wait_until_streaming(tests_pair)
    run_on_the_tests_databases = Databases(
        write_database_url=setting("WRITE_DATABASE_URL"),
        read_database_url=setting("READ_DATABASE_URL"),
        write_broker_url=setting("TEST_WRITE_RABBITMQ_URL"),
        read_broker_url=setting("TEST_READ_RABBITMQ_URL"),
    )

    with other_subscriptions_paused(run_on_the_tests_databases) as paused:
        assert f"{tests_pair.read_db}.{tests_pair.subscription}" not in paused
        assert _enabled(tests_pair.read_port, tests_pair.read_db, tests_pair.subscription)
