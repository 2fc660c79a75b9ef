"""`python -m bench [--full] [--only drain,steady] ...`: set up, run the scenarios, write and print results.

Quick mode (the default, `make bench`) runs each scenario once and shorter; `--full` runs the full sizes three
times and reports medians with their spread. `--tiny` is the harness's own test size.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench import cpu, infra, plots, report, scaleout
from bench.http_load import open_accounts, wrk_available
from bench.infra import Databases
from bench.progress import Progress
from bench.readings import Readings
from bench.scenarios import SCENARIOS
from bench.scenarios.common import Context, ScenarioResult, wait_applied
from bench.settings import MODES, Mode
from bench.system import BenchSystem
from devkit import metrics
from devkit.private_rabbitmq import PrivateRabbitMQ
from devkit.processes import DEVELOPMENT_SECRETS_ALLOWED, REPO
from devkit.replication import subscription_name

SETUP_SECONDS = 25.0


def main(argv: list[str] | None = None) -> int:
    # The processes it starts run in sessions of their own: SIGTERM must unwind through the `finally` that
    # stops them (as Ctrl-C does), or they outlive the run and the next one's relay only stands by.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    options = _parser().parse_args(argv)
    # The benchmark's own system runs on development secrets, as the tests' do (its migrations and producers
    # too, which do not go through ServiceProcess).
    os.environ.update(DEVELOPMENT_SECRETS_ALLOWED)
    mode = MODES["full" if options.full else "tiny" if options.tiny else "quick"]
    if options.runs:
        mode = dataclasses.replace(mode, runs=options.runs)
    selected = options.only.split(",") if options.only else list(SCENARIOS)
    unknown = set(selected) - set(SCENARIOS)
    if unknown:
        print(
            f"unknown scenario(s): {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    if "http" in selected and not wrk_available():
        print(
            "wrk is missing: `make bench` installs Debian's wrk (deploy/local/install-missing.sh).",
            file=sys.stderr,
        )
        return 2
    _announce(mode)
    databases = Databases.from_environment() if options.use_environment else Databases.dedicated(options.name)
    summaries: dict[int, dict] = {}
    for projectors in options.projectors:
        started = datetime.now(UTC)
        results, loads, environment = _run(
            mode, selected, databases, use_environment=options.use_environment, projectors=projectors
        )
        summaries[projectors] = report.summarize(
            mode, results, started=started, loads=loads, environment=environment
        )
    if len(summaries) > 1:
        # Counts compared: their own table and files, the single-count results left as they were.
        written = scaleout.write(summaries, options.results_dir)
        print(scaleout.markdown(summaries))
    else:
        (summary,) = summaries.values()
        written = report.write(summary, options.results_dir)
        if not options.no_plots:
            written += plots.draw(results, options.results_dir)
        print(report.markdown(summary))
    print(
        "written: "
        + ", ".join(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path) for path in written)
    )
    return 0


def _run(
    mode: Mode, selected: list[str], databases: Databases, *, use_environment: bool, projectors: int = 1
) -> tuple[dict[str, list[ScenarioResult]], dict, dict]:
    # The code measured is the code at the start: a checkout may move on while a long run goes.
    commit = report.git_commit()
    steps = [
        (_step_name(name, run, mode), _expected_seconds(name, mode))
        for run in range(mode.runs)
        for name in selected
    ]
    results: dict[str, list[ScenarioResult]] = {name: [] for name in selected}
    node = PrivateRabbitMQ() if "outage" in selected else None
    # A run of its own (not inside the tests' environment) has the machine's idle subscriptions paused.
    quiet = contextlib.nullcontext([]) if use_environment else infra.other_subscriptions_paused(databases)
    with (
        Progress([("set-up", SETUP_SECONDS), *steps]) as progress,
        ThreadPoolExecutor(max_workers=1) as boot,
        quiet as paused,
    ):
        system = BenchSystem(databases, projectors=projectors)
        readings: Readings | None = None
        broker = None
        try:
            with progress.step("set-up"):
                # The private node boots (mostly Erlang's start-up) while the databases are prepared.
                broker = boot.submit(node.start) if node is not None else None
                if not use_environment:
                    progress.update(0.05, "databases and vhost (infra.sh)")
                    infra.provision(databases)
                progress.update(0.4, "migrations")
                infra.migrate(databases)
                replication_problem = infra.reset(databases)
                if replication_problem:
                    progress.note(
                        f"warning: {replication_problem}; the projector's replication path has nothing to"
                        " read in this run"
                    )
                readings = Readings(databases)
                # Before anything of the run is started: how long a wake-up of PostgreSQL takes on this
                # machine today. It varies with the host, and every stage of the pipeline is made of them.
                round_trip_ms = readings.round_trip_ms()
                progress.update(0.6, "starting write-service, read-service, relay, projector")
                system.start_web()
                context = Context(mode, databases, system, readings, progress, private_broker=broker)
                context.start_pipeline_on_bench_vhost()
                progress.update(0.85, f"opening {mode.accounts} accounts")
                before = readings.last_position()
                context.accounts = open_accounts(system.write_api, mode.accounts, owner="bench")
                committed = readings.committed_after(before)
                wait_applied(
                    context, before, committed.last_position, committed.count, detail="projecting accounts"
                )
            for run in range(mode.runs):
                for name in selected:
                    step = _step_name(name, run, mode)
                    with progress.step(step):
                        meter = cpu.CpuMeter(_cpu_roles(context)).start()
                        parked_before = _parked(system)
                        try:
                            result = SCENARIOS[name](context)
                        finally:
                            shares = meter.stop()
                        result.details["cpu_cores"] = shares
                        result.details["parked"] = _parked_since(parked_before, _parked(system))
                    results[name].append(result)
                    progress.note(f"{step}: " + ", ".join(f"{k} {v}" for k, v in result.metrics.items()))
            loads = {step: progress.load(step) for step, _ in [("set-up", 0), *steps]}
            environment = {
                "commit": commit,
                **readings.server_versions(),
                "replication_streaming_at_start": replication_problem is None,
                "subscriptions_paused": paused,
                "postgresql_round_trip_ms": round_trip_ms,
                "projectors": projectors,
            }
        finally:
            system.stop()
            if readings is not None:
                readings.close()
            if node is not None:
                if broker is not None:
                    with contextlib.suppress(Exception):  # only waits for the boot; a failure surfaced above
                        broker.result()
                node.destroy()
    return results, loads, environment


def _parked(system: BenchSystem) -> dict[str, tuple[int, float]]:
    """Each projector's count of parked events now, with its pid (a scenario may restart the pipeline)."""
    counts = {}
    for name in system.projector_names:
        process, port = system.processes.get(name), system.metrics_ports.get(name)
        if process is None or process.process is None or port is None:
            continue
        # Summed over both paths (the sample of a name without labels is the sum of its series).
        parked = metrics.sample_at(f"http://127.0.0.1:{port}/metrics", "cqrs_events_parked_total") or 0.0
        counts[name] = (process.process.pid, parked)
    return counts


def _parked_since(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]) -> int:
    """Events parked during a scenario, over its projectors (a restarted one counts from 0 again)."""
    total = 0.0
    for name, (pid, parked) in after.items():
        earlier = before.get(name)
        total += parked - earlier[1] if earlier is not None and earlier[0] == pid else parked
    return int(total)


def _cpu_roles(context: Context) -> cpu.Roles:
    readings = context.readings
    own_subscription = subscription_name(context.databases.read_database_url)
    walsender, apply_worker = readings.replication_pids(own_subscription)
    postmasters = {side: readings.postmaster(side) for side in ("write", "read")}
    return cpu.Roles(
        system=lambda: {
            name: process.process.pid
            for name, process in list(context.system.processes.items())
            if process.process is not None
        },
        postmasters={f"{side}-db": pid for side, pid in postmasters.items() if pid is not None},
        walsender=walsender,
        apply_worker=apply_worker,
    )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _announce(mode: Mode) -> None:
    full = MODES["full"]
    if mode.name == "full":
        text = f"full mode: every scenario {mode.runs} times, medians and spread reported"
    else:
        text = (
            f"{mode.name} mode (shorter than --full): drain of {mode.drain_events:,} events"
            f" (full: {full.drain_events:,}), sustained {mode.sustained_seconds:g} s"
            f" (full: {full.sustained_seconds:g} s), steady {mode.steady_seconds:g} s per rate"
            f" (full: {full.steady_seconds:g} s), {mode.runs} run(s) (full: medians of {full.runs})."
            " `make bench BENCH_ARGS=--full` for the full sizes."
        )
    print(text, file=sys.stderr)


def _step_name(name: str, run: int, mode: Mode) -> str:
    return name if mode.runs == 1 else f"{name} (run {run + 1}/{mode.runs})"


def _expected_seconds(name: str, mode: Mode) -> float:
    """Rough durations on 2 cores, only to weigh the progress bar."""
    return {
        "drain": 6 + mode.drain_events / 1_000,
        "sustained": 5 + mode.sustained_seconds,
        "steady": 4 + 2 * mode.steady_seconds,
        "http": 4 + 2 * mode.http_seconds,
        "outage": 22 + mode.outage_before_seconds + mode.outage_seconds + mode.outage_after_seconds,
    }[name]


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or numbers separated by commas, not {text!r}") from None
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"counts of at least 1, each once, not {text!r}")
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="full sizes, 3 runs, medians and spread")
    size.add_argument("--tiny", action="store_true", help="the smallest sizes (the harness's own test)")
    parser.add_argument("--runs", type=int, help="runs per scenario (default: 1 quick, 3 full)")
    parser.add_argument("--only", help=f"comma-separated scenarios (default: all of {','.join(SCENARIOS)})")
    parser.add_argument(
        "--projectors",
        type=_counts,
        default=[1],
        help="projectors sharing the partitions (default 1); results say how many, with parked events"
        " and CPU per process. Several counts (`1,2,4`) run one after the other and are compared in one"
        " table (latest-scaleout.md)",
    )
    parser.add_argument(
        "--name", default="bench", help="databases cqrs_write_NAME / cqrs_read_NAME, vhost cqrs_NAME"
    )
    parser.add_argument(
        "--use-environment",
        action="store_true",
        help="take WRITE_DATABASE_URL, READ_DATABASE_URL, TEST_WRITE_RABBITMQ_URL and TEST_READ_RABBITMQ_URL"
        " from the environment and provision nothing",
    )
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--no-plots", action="store_true")
    return parser


if __name__ == "__main__":
    sys.exit(main())
