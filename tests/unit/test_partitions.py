"""Which partitions a projector owns, and its ordinal as the environment gives it (a StatefulSet pod name)."""

from __future__ import annotations

import pytest

from cqrs_common import config
from cqrs_common.messaging import ProjectorPartitions, partition_of, partition_queue


def test_every_partition_has_exactly_one_owner_among_the_replicas() -> None:
    for count, replicas in [(4, 1), (4, 2), (4, 3), (8, 3), (2, 4)]:
        owned = [ProjectorPartitions(count, ordinal, replicas).owned for ordinal in range(replicas)]
        flat = [queue for queues in owned for queue in queues]
        assert sorted(flat) == sorted(ProjectorPartitions(count).queues)
        for ordinal in range(replicas):
            partitions = ProjectorPartitions(count, ordinal, replicas)
            assert sorted(partitions.owned + partitions.standby) == sorted(partitions.queues)
    assert ProjectorPartitions(4, 1, 3).owned == [partition_queue(1)]
    assert ProjectorPartitions(4, 0, 3).owned == [partition_queue(0), partition_queue(3)]


def test_a_projector_numbered_outside_its_replicas_is_refused() -> None:
    with pytest.raises(ValueError):
        ProjectorPartitions(4, ordinal=2, replicas=2)
    with pytest.raises(ValueError):
        ProjectorPartitions(0)


def test_a_partition_is_read_back_from_its_queue_name_only() -> None:
    assert partition_of(partition_queue(12)) == 12
    assert partition_of("read-service.projector") is None
    assert partition_of("read-service.projector.dlq") is None
    assert partition_of("read-service.projector.partitions") is None
    assert partition_of(None) is None


@pytest.mark.parametrize(
    ("value", "ordinal"), [("0", 0), ("3", 3), ("projector-2", 2), ("cqrs-projector-11", 11)]
)
def test_the_ordinal_is_a_number_or_a_statefulset_pod_name(
    monkeypatch: pytest.MonkeyPatch, value: str, ordinal: int
) -> None:
    monkeypatch.setenv("PROJECTOR_ORDINAL", value)
    assert config.projector_ordinal() == ordinal


def test_an_ordinal_without_a_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROJECTOR_ORDINAL", "projector")
    with pytest.raises(ValueError, match="PROJECTOR_ORDINAL"):
        config.projector_ordinal()


def test_auto_asks_for_a_claimed_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROJECTOR_ORDINAL", "auto")
    assert config.projector_ordinal() is None


def test_a_spare_owns_nothing_and_stands_by_on_every_partition() -> None:
    spare = ProjectorPartitions(4, ordinal=None, replicas=2)
    assert spare.owned == []
    assert spare.standby == spare.queues
