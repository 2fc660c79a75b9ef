"""The projector's queues (its partitions, summed) and its dead-letter queue, as deep as RabbitMQ says, asked
at most once a second.

Every open page polls /lab/api/pipeline every second; without the cache each poll would open an AMQP
connection. Within a second the last answer (or the last failure: a broker that is down) is served again.
Per process, as a gunicorn worker's memory is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings

from cqrs_common import config
from cqrs_common.messaging import DEAD_LETTER_QUEUE, BrokerError, ProjectorPartitions, queue_depths

CACHE_SECONDS = 1.0
BROKER_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class QueueDepths:
    up: bool
    queue: int | None = None
    dead_letter: int | None = None


_lock = threading.Lock()
_cached: tuple[float, QueueDepths] | None = None


def queue_depths_cached() -> QueueDepths:
    global _cached
    with _lock:  # one question to the broker at a time per process; the others take its answer
        now = time.monotonic()
        if _cached is not None and now - _cached[0] < CACHE_SECONDS:
            return _cached[1]
        depths = _ask()
        _cached = (time.monotonic(), depths)
        return depths


def _ask() -> QueueDepths:
    partitions = ProjectorPartitions(count=config.projector_partitions()).queues
    try:
        found = queue_depths(
            settings.RABBITMQ_URL,
            (*partitions, DEAD_LETTER_QUEUE),
            connection_name="read-service-lab",
            timeout=BROKER_TIMEOUT_SECONDS,
        )
    except BrokerError:
        return QueueDepths(up=False)
    depths = [found[queue] for queue in partitions if found[queue] is not None]
    # None while the projector has not declared its partitions yet.
    queue = sum(depths) if depths else None
    return QueueDepths(up=True, queue=queue, dead_letter=found[DEAD_LETTER_QUEUE])
