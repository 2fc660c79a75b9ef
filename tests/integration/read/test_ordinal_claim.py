"""Projectors that are all alike (PROJECTOR_ORDINAL=auto, Compose's `--scale`) claim numbers in the read
database: each the lowest free one, a spare when none is free, and a number is free again once its holder's
session ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from read_service.projections.ordinal_claim import OrdinalClaim, claim_ordinal, claimed_ordinals

pytestmark = pytest.mark.django_db


@pytest.fixture
def claims() -> Iterator[list[OrdinalClaim]]:
    held: list[OrdinalClaim] = []
    yield held
    for claim in held:
        claim.release()


def test_each_claims_the_lowest_free_number_and_the_rest_are_spares(claims: list[OrdinalClaim]) -> None:
    claims += [claim_ordinal(replicas=2) for _ in range(3)]
    assert [claim.ordinal for claim in claims] == [0, 1, None]
    assert claimed_ordinals() == [0, 1]


def test_a_number_whose_holder_is_gone_is_claimed_by_the_next_one(claims: list[OrdinalClaim]) -> None:
    claims += [claim_ordinal(replicas=3) for _ in range(3)]
    claims[1].release()  # its session ends, as a killed projector's does
    assert claimed_ordinals() == [0, 2]
    claims.append(claim_ordinal(replicas=3))
    assert claims[-1].ordinal == 1
    assert claimed_ordinals() == [0, 1, 2]
