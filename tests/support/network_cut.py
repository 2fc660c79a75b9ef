"""Cutting one TCP connection over loopback without closing it: what a partition or a dead host looks like.

Every packet of the connection is dropped, both ways, by a nftables table of its own (added, then deleted
whole, so nothing else on the machine is touched, Docker's tables included). Neither end gets a FIN or an
RST: each learns of the cut only from its own TCP timeouts. Needs root and `nft`
(`make test-chaos` installs Debian's nftables when it is missing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import psycopg2


def _nft(*args: str) -> None:
    subprocess.run(["nft", *args], check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def connection_cut(client_port: int, server_port: int) -> Iterator[None]:
    """Drops the packets between 127.0.0.1:`client_port` and 127.0.0.1:`server_port` while the block runs;
    the rule is removed afterwards, also when the block fails."""
    if shutil.which("nft") is None:
        raise RuntimeError("nft is missing: apt-get install nftables (make test-chaos does, as root)")
    table = f"cqrs_cut_{os.getpid()}_{client_port}"
    _nft("add", "table", "inet", table)
    try:
        # At the first hook a packet meets (before conntrack): it never reaches TCP.
        _nft("add", "chain", "inet", table, "cut", "{ type filter hook prerouting priority raw ; }")
        for source, target in ((client_port, server_port), (server_port, client_port)):
            _nft(
                "add", "rule", "inet", table, "cut", "iif", "lo", "ip", "saddr", "127.0.0.1",
                "ip", "daddr", "127.0.0.1", "tcp", "sport", str(source), "tcp", "dport", str(target), "drop",
            )  # fmt: skip
        yield
    finally:
        _nft("delete", "table", "inet", table)


def session_client_port(database_url: str, backend_pid: int) -> int:
    """The client's port of the PostgreSQL session served by `backend_pid` (pg_stat_activity)."""
    connection = psycopg2.connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT client_port FROM pg_stat_activity WHERE pid = %s", (backend_pid,))
            row = cursor.fetchone()
    finally:
        connection.close()
    if row is None or row[0] is None or row[0] < 0:
        raise AssertionError(f"no TCP session with backend pid {backend_pid}")
    return int(row[0])
