"""A throwaway PostgreSQL 15 server for tests that restart, reconfigure or break one: the shared clusters of
infra.sh are never touched.

It runs as the `postgres` OS user from a temporary directory, listens on a free port on 127.0.0.1 (trust
authentication: any role, any password) and puts its socket beside the shared clusters' sockets, so
`runuser -u postgres -- psql -p <port>` (deploy/local/replication.sh, `replication.superuser_sql`) reaches it
as it reaches them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from devkit.processes import free_port
from devkit.replication import superuser_sql

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SOCKET_DIR = "/var/run/postgresql"


class PrivatePostgres:
    def __init__(self, *settings: str) -> None:
        """`settings` are `name=value` server settings on top of the defaults."""
        self.root = Path(tempfile.mkdtemp(prefix="cqrs-test-pg-"))
        postgres = pwd.getpwnam("postgres")
        os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self.settings = (
            "listen_addresses=127.0.0.1",
            f"unix_socket_directories={SOCKET_DIR}",
            "fsync=off",
            *settings,
        )

    def _as_postgres(self, *command: str, timeout: float = 120) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
        )
        if result.returncode != 0:
            log = (self.root / "log").read_text(errors="replace") if (self.root / "log").exists() else ""
            raise RuntimeError(f"{Path(command[0]).name} failed: {result.stderr.strip()}\n{log[-2000:]}")

    def _pg_ctl(self, *args: str) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> PrivatePostgres:
        """Creates the cluster on the first start, then starts it and waits until it accepts connections."""
        if not self.data.exists():
            self._as_postgres(
                str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync"
            )
        options = " ".join([f"-p {self.port}", *(f"-c {setting}" for setting in self.settings)])
        self._pg_ctl("-l", str(self.root / "log"), "-o", options, "-w", "start")
        return self

    def restart(self) -> None:
        """A fast restart (sessions are terminated, as by `pg_ctlcluster ... restart`)."""
        self._pg_ctl("-l", str(self.root / "log"), "-m", "fast", "-w", "restart")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends sessions cleanly; `immediate` kills the server outright, as a crash does (the next
        start recovers from the WAL)."""
        self._pg_ctl("-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):  # not running
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, database: str, *statements: str) -> str:
        """Runs each statement in its own transaction as the superuser; returns the last one's output."""
        return superuser_sql(self.port, database, *statements)

    def create_database(self, name: str, owner: str, password: str) -> str:
        """A login role owning a database and creating its tables in the schema `public`, which the superuser
        owns, as infra.sh sets them up; its URL."""
        self.sql("postgres", f"CREATE ROLE \"{owner}\" LOGIN PASSWORD '{password}'")
        self.sql("postgres", f'CREATE DATABASE "{name}" OWNER "{owner}"')
        self.sql(
            name,
            "ALTER SCHEMA public OWNER TO postgres",
            f'GRANT USAGE, CREATE ON SCHEMA public TO "{owner}"',
        )
        return f"postgres://{owner}:{password}@127.0.0.1:{self.port}/{name}"
