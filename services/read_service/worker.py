"""What the read side's long-running consumers (the projector, the reporting subscriber) share around their
loops: how the process starts, how its loop runs again after a failure, and how it reports its health.

Both run until SIGTERM or SIGINT, which only sets a stop event: the batch in hand is committed and settled,
then the loop returns. Neither ever exits because of a failure: the loop starts over after a backoff.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from cqrs_common import logging as cqrs_logging
from cqrs_common import metrics
from cqrs_common.heartbeat import HealthBounds, Heartbeat, WorkerHealth
from cqrs_common.session_timeouts import bound_django_sessions


def start(service_name: str, *, statement_timeout: float, lock_timeout: float) -> threading.Event:
    """Logs under the process's name, database sessions with the workers' statement and lock timeouts, and
    the stop signals turned into the returned event. The caller reads the settings (config.py): each
    command is where the deploy checks look for what its process reads."""
    cqrs_logging.configure(service_name)
    bound_django_sessions(statement_timeout=statement_timeout, lock_timeout=lock_timeout)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def serve_health(port: int, process: str, bounds: HealthBounds, *heartbeats: Heartbeat) -> None:
    """/metrics, /readyz and /healthz on `port` (none when 0), health from the loops' heartbeats."""
    if port:
        metrics.serve_metrics(port, process=process, health=WorkerHealth(bounds, *heartbeats))


def run_until_stopped(
    loop: Callable[[threading.Event], None],
    stop: threading.Event,
    on_failure: Callable[[RetryCallState], None],
) -> None:
    """Runs `loop(stop)` until `stop` is set; after any exception, `on_failure` and a backoff with jitter
    (0.2 s growing to 5 s, cut short by `stop`), then the loop again."""
    Retrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
        stop=lambda _state: stop.is_set(),
        sleep=stop.wait,
        before_sleep=on_failure,
        retry_error_callback=lambda _state: None,
    )(loop, stop)
