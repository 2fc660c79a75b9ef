"""Docker networking: who reaches whom, and a network cut between the broker and the read side.

Under Compose the write side and the read side share nothing but RabbitMQ (a member of both networks, `write`
and `read`) and the replication link between the two databases (network `replication`). The experiment first
tries a TCP connection from inside each app container to each database and to the broker, and prints who
reaches whom. Then it disconnects the rabbitmq container (`docker network disconnect`) from every network it
shares with the projector, `read` and `monitoring` (the projector would otherwise reach it through the
latter), for --cut-seconds while deposits keep coming: the relay still publishes (the write network is
intact), but nothing reaches the projector, and Prometheus loses the broker's target. The cut is silent (no
connection is refused or reset), so the projector's broker connection looks alive until its heartbeat fails;
meanwhile every event the broker does not bring within the replication grace is applied from the replicated
`events` table. Reads stay served and fresh within about the grace. Then the broker is connected again under
its service name, and the experiment waits until a new event arrives by the broker again.

Compose only (LAB_SYSTEM=compose, with the system `make up` runs).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from decimal import Decimal
from uuid import UUID

from lab._support import PIPELINE, Client, Lab, Report, ms, percentile

APP_SERVICES = ("write-service", "relay", "read-service", "projector")
TARGETS = (("write-db", 5432), ("read-db", 5432), ("rabbitmq", 5672))
# Run with the container's own Python: for each host:port argument, 1 if a TCP connection opens within 2 s.
PROBE = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 2).close()
        print(1)
    except OSError:
        print(0)
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="network-cut", description=__doc__)
    parser.add_argument("--cut-seconds", type=float, default=15.0, help="how long the cut lasts (default 15)")
    parser.add_argument("--interval", type=float, default=0.5, help="between deposits (default 0.5 s)")
    args = parser.parse_args(argv)

    lab = Lab.from_env()
    if not lab.compose_project:
        print("network-cut needs the Compose system: `make up`, then LAB_SYSTEM=compose (docs/lab.md).")
        return 2
    lab.require_running()
    report = Report("network-cut", __doc__)
    with lab.client() as client:
        return run(lab, report, client, args.cut_seconds, args.interval)


def run(lab: Lab, report: Report, client: Client, cut: float, interval: float) -> int:
    containers = {name: _container(lab, name) for name in (*APP_SERVICES, "rabbitmq")}
    report.step("Who reaches whom: a TCP connection from each app container (2 s timeout).")
    reach = {service: _reaches(containers[service]) for service in APP_SERVICES}
    for service, row in reach.items():
        report.detail(f"{service:14} " + "  ".join(f"{h}: {'yes' if ok else 'no '}" for h, ok in row.items()))

    accounts = [client.open_account(f"lab-net-{i}", deposit="100.00") for i in range(2)]
    for account_id, version in accounts:
        client.read_fresh(account_id, version)
    by_path_before = _applied(lab)

    networks = {service: _networks(container) for service, container in containers.items()}
    for service, names in networks.items():
        report.detail(f"{service:14} on {', '.join(names)}")
    shared = sorted(set(networks["projector"]) & set(networks["rabbitmq"]))
    report.step(f"docker network disconnect {' '.join(shared)} <rabbitmq>: {cut:g} s, deposits going on")
    for network in shared:
        _docker("network", "disconnect", network, containers["rabbitmq"])
    cut_at = time.monotonic()
    fresh_after: list[float] = []
    stale = 0
    modes = [(0.0, client.projection()["mode"])]
    try:
        n = 0
        while time.monotonic() - cut_at < cut:
            account_id = accounts[n % 2][0]
            n += 1
            deposited = client.command(f"/api/accounts/{account_id}/deposit", {"amount": "1.00"})
            deposited.raise_for_status()
            sent = time.monotonic()
            read = client.read_account(account_id, min_version=deposited.json()["version"], wait_ms=20000)
            if read.status_code == 200:
                fresh_after.append(time.monotonic() - sent)
            else:
                stale += 1
            mode = client.projection()["mode"]
            if mode != modes[-1][1]:
                modes.append((time.monotonic() - cut_at, mode))
            time.sleep(interval)
    finally:
        # Back under its service name, which is how the projector finds it (Compose's network alias).
        for network in shared:
            _docker("network", "connect", "--alias", "rabbitmq", network, containers["rabbitmq"])
        reconnected_at = time.monotonic()
        report.step("docker network connect --alias rabbitmq: the broker is back on those networks")
    by_path_during = _applied(lab)

    broker_back = _broker_path_back(lab, client, accounts[0][0], timeout=180)
    consistent = _consistent(lab, client, [a for a, _ in accounts])
    back = None if broker_back is None else round(broker_back - reconnected_at, 1)
    during = {path: int(by_path_during.get(path, 0) - by_path_before.get(path, 0)) for path in by_path_during}
    report.observed(
        [
            ("deposits during the cut", f"{len(fresh_after) + stale} ({stale} not readable within 20 s)"),
            (
                "read-your-writes during the cut",
                f"p50 {ms(percentile(fresh_after, 50))} ms, max {ms(max(fresh_after, default=0))} ms",
            ),
            ("projection mode, s after the cut", " -> ".join(f"{m} ({at:.1f} s)" for at, m in modes)),
            ("applied during the cut, by path", ", ".join(f"{p}: {c}" for p, c in sorted(during.items()))),
            (
                "broker path back",
                "NOT within 180 s"
                if broker_back is None
                else f"{broker_back - reconnected_at:.1f} s after connect",
            ),
            ("read side equals write side", "yes" if consistent else "NO"),
        ]
    )
    report.explain(
        "The read side kept serving throughout: read-service and read-db share the read network, which\n"
        "lost only the broker. The events crossed instead by logical replication (write-db and read-db\n"
        "share the replication network), applied once the grace had passed. The projector learns of the\n"
        "cut only from its heartbeat; when the broker is back, messages queued meanwhile arrive and are\n"
        "ignored as duplicates."
    )
    report.panels(
        [
            (PIPELINE, "Projection path"),
            (PIPELINE, "Events applied per second"),
        ]
    )
    report.result(
        {
            "reach": reach,
            "cut_networks": shared,
            "deposits": len(fresh_after) + stale,
            "stale_reads": stale,
            "fresh_p50_ms": ms(percentile(fresh_after, 50)),
            "fresh_max_ms": ms(max(fresh_after, default=0)),
            "modes": [mode for _, mode in modes],
            "mode_changed_seconds": [round(at, 1) for at, _ in modes[1:]],
            "applied_during_cut": during,
            "broker_back_seconds": back,
            "consistent": consistent,
        }
    )
    return 0 if consistent and stale == 0 and back is not None else 1


def _container(lab: Lab, service: str) -> str:
    container = lab.compose("ps", "-q", service).stdout.strip()
    if not container:
        raise SystemExit(f"no {service} container in project {lab.compose_project}: `make up` first")
    return container


def _reaches(container: str) -> dict[str, bool]:
    """Which of TARGETS the container reaches (one `docker exec` for all of them)."""
    probe = subprocess.run(
        ["docker", "exec", container, "python", "-c", PROBE, *(f"{h}:{p}" for h, p in TARGETS)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return {host: flag == "1" for (host, _), flag in zip(TARGETS, probe.stdout.split(), strict=True)}


def _networks(container: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "inspect", "--format", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
         container],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return sorted(listed.stdout.split())


def _docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=60)


def _applied(lab: Lab) -> dict[str, float]:
    return {
        path: lab.metric(lab.projector_metrics, "cqrs_events_applied_total", path=path) or 0.0
        for path in ("broker", "replication")
    }


def _broker_path_back(lab: Lab, client: Client, account_id: UUID, timeout: float) -> float | None:
    """When a new deposit was applied by the broker again (the broker path's counter moved), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _applied(lab)["broker"]
        client.command(f"/api/accounts/{account_id}/deposit", {"amount": "1.00"}).raise_for_status()
        time.sleep(1.0)
        if _applied(lab)["broker"] > before:
            return time.monotonic()
    return None


def _consistent(lab: Lab, client: Client, accounts: list[UUID]) -> bool:
    for account_id in accounts:
        ((balance, version),) = lab.write_rows(
            "SELECT balance, version FROM accounts WHERE id = %s", [str(account_id)]
        )
        read = client.read_fresh(account_id, version, wait_ms=20000)
        if Decimal(read["balance"]) != balance or read["version"] != version:
            return False
    return True
