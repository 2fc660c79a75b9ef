"""gunicorn settings for both web services, in every packaging: `gunicorn -c python:cqrs_common.gunicorn_conf`
(the same file natively, in Compose and in Kubernetes).

Sync workers with persistent database connections (CONN_MAX_AGE): each worker keeps one connection, which
measured 4x faster here than a connection per request. With WEB_THREADS above 1 (read-service) the workers are
gthread instead: a read-your-writes wait sleeps in one thread (at most READ_WAIT_MAX_CONCURRENT of them per
worker, read_service.queries.consistency) while the worker's other threads answer /readyz and plain reads;
each thread keeps its own persistent connection. Logs, gunicorn's own included, go through the same
structlog configuration.

Metrics: each worker is a separate process with its own counters, so a scrape that reached one worker would
see a quarter of the traffic. prometheus_client's multiprocess mode makes every worker write its values to
files in PROMETHEUS_MULTIPROC_DIR, and django-prometheus's /metrics view sums them (MultiProcessCollector).
The variable must be set before any worker imports prometheus_client, hence here, at the top of the master's
configuration. The directory is emptied when the master starts (values of a previous run would otherwise be
added in) and the files of a worker that exits are marked dead. Left unset, every run gets a private directory
named after the service and the master's pid, removed when gunicorn exits, so two services (or a test's
service beside `make run`) never add up each other's metrics.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cqrs_common import config as _config
from cqrs_common.logging import logging_config as _logging_config
from cqrs_common.web import server_errors

_SERVICE = _config.service_name("web")
_EXPLICIT_METRICS_DIR = _config.prometheus_multiproc_dir()
_METRICS_DIR = Path(
    _EXPLICIT_METRICS_DIR or Path(tempfile.gettempdir()) / f"cqrs-lab-metrics-{_SERVICE}-{os.getpid()}"
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_METRICS_DIR)

bind = _config.web_bind()
workers = _config.web_concurrency()
threads = _config.web_threads()
worker_class = "gthread" if threads > 1 else "sync"
# A gthread worker beats from its main loop, whatever its threads do; only a sync worker meets this timeout.
timeout = _config.gunicorn_timeout()
graceful_timeout = 10
keepalive = 5
# gunicorn's largest request line (its default is 4094 bytes): the read API's filters and pagination go in the
# query string. A longer line is refused with 414 before Django; server_errors makes that answer, and the
# others gunicorn writes itself, problem+json.
limit_request_line = 8190
server_errors.install()
max_requests = 0
# Every gunicorn on a machine would share one default control socket path ($HOME/.gunicorn/gunicorn.ctl):
# write-service, read-service and test instances would take it from each other. Nothing here uses gunicornc.
control_socket_disable = True
accesslog = None
# Includes %(M)s (milliseconds) and the correlation id header, which cqrs_common.logging turns into fields.
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms %({x-correlation-id}o)s'
logconfig_dict = _logging_config(_SERVICE)


def on_starting(_server: Any) -> None:
    """Start from an empty metrics directory (it may be a volume that outlived a previous run)."""
    _METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in _METRICS_DIR.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(_server: Any, worker: Any) -> None:
    """A dead worker's gauges must stop counting; its counters stay, so totals never go backwards."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_METRICS_DIR))


def on_exit(_server: Any) -> None:
    if _EXPLICIT_METRICS_DIR is None:
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)
