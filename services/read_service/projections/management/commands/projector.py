"""`python -m read_service projector`: consume the projector's partitions and keep the read models current.

PROJECTOR_PARTITIONS partitions (default 4); this projector is number PROJECTOR_ORDINAL of PROJECTOR_REPLICAS
and subscribes to the partitions it owns (p % replicas == ordinal) at once, to the others as a standby
PROJECTOR_STANDBY_DELAY_SECONDS later (docs/decisions/0008). PROJECTOR_ORDINAL=auto (`--ordinal auto`) claims
the lowest number no running projector holds (ordinal_claim.py); with none free it is a spare, standing by on
every partition.

Stops cleanly on SIGTERM or SIGINT: the batch in hand is committed and acknowledged, then the connection is
closed and the process exits 0. Metrics are served on PROJECTOR_METRICS_PORT (default 9102; 0 serves none),
with /readyz and /healthz from the heartbeats of its two loops (CONTRACT.md); its database sessions get the
workers' statement and lock timeouts.
The replication fallback runs beside it: events the broker has not brought within REPLICATION_GRACE_SECONDS
(default 2) are applied from the replicated events table, and all of them while the broker is unreachable.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from cqrs_common import config, metrics
from cqrs_common.heartbeat import HealthBounds
from cqrs_common.logging import get_logger
from cqrs_common.messaging import Consumer, ProjectorPartitions
from read_service import worker
from read_service.projections.fallback import FallbackSettings, ReplicationFallback
from read_service.projections.ordinal_claim import claim_ordinal
from read_service.projections.projector import Projector

log = get_logger(__name__)


class Command(BaseCommand):
    help = "Apply events from RabbitMQ to the read models (stops on SIGTERM after the batch in hand)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--metrics-port", type=int, default=config.projector_metrics_port())
        parser.add_argument("--batch-size", type=int, default=config.projector_batch_size())
        parser.add_argument("--prefetch", type=int, default=config.projector_prefetch())
        parser.add_argument("--partitions", type=int, default=config.projector_partitions())
        parser.add_argument(
            "--ordinal",
            type=config.parse_projector_ordinal,
            default=config.projector_ordinal(),
            help="this projector's number, or auto: the lowest one no running projector holds",
        )
        parser.add_argument("--replicas", type=int, default=config.projector_replicas())
        parser.add_argument(
            "--replication-grace-seconds",
            type=float,
            default=config.replication_grace_seconds(),
            help="how long an event may be missing from the broker before the replicated log fills it",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = worker.start(
            config.service_name("projector"),
            statement_timeout=config.worker_statement_timeout_seconds(),
            lock_timeout=config.worker_lock_timeout_seconds(),
        )
        prefetch = max(options["prefetch"], options["batch_size"])
        ordinal, claim = options["ordinal"], None
        if ordinal is None:
            # Held (its connection open) until the process ends: the number is this projector's while it runs.
            claim = claim_ordinal(options["replicas"])
            ordinal = claim.ordinal
            log.info(
                "projector_ordinal_claimed" if ordinal is not None else "projector_spare",
                ordinal=ordinal,
                replicas=options["replicas"],
            )
        metrics.PROJECTOR_ORDINAL.set(-1 if ordinal is None else ordinal)
        partitions = ProjectorPartitions(
            count=options["partitions"],
            ordinal=ordinal,
            replicas=options["replicas"],
            standby_delay=config.projector_standby_delay_seconds(),
        )

        def connect() -> Consumer:
            return Consumer(
                settings.RABBITMQ_URL,
                connection_name=f"projector-{'spare' if partitions.ordinal is None else partitions.ordinal}",
                partitions=partitions,
                prefetch=prefetch,
            )

        fallback = ReplicationFallback(FallbackSettings(grace_seconds=options["replication_grace_seconds"]))
        projector = Projector(connect, batch_size=options["batch_size"], fallback=fallback)
        worker.serve_health(
            options["metrics_port"], "projector", health_bounds(), projector.heartbeat, fallback.heartbeat
        )
        try:
            projector.run(stop)
        finally:
            if claim is not None:
                claim.release()


def health_bounds() -> HealthBounds:
    return HealthBounds(config.worker_readiness_seconds(), config.worker_liveness_seconds())
