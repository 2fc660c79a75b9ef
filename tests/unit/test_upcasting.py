"""The upcasting chain (cqrs_common/upcasting.py): every reader sees the current version of each event type,
older versions upcast on read, versions this release cannot read refused (CONTRACT.md, "Versioning")."""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from cqrs_common.events import DATA_FIELDS, SCHEMA_VERSIONS, InvalidEvent, from_dict, from_wire, to_wire
from cqrs_common.upcasting import CHAINS, UnsupportedSchemaVersion, current_version, data_sql, upcast


def _wire(event_type: str, schema_version: int, data: dict) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "schema_version": schema_version,
        "aggregate_type": "account",
        "aggregate_id": str(uuid.uuid4()),
        "aggregate_version": 2,
        "position": 7,
        "occurred_at": "2026-01-31T12:00:00.123456Z",
        "correlation_id": None,
        "causation_id": None,
        "data": data,
    }


def test_each_chain_has_one_step_per_version_in_order() -> None:
    for event_type, chain in CHAINS.items():
        assert event_type in DATA_FIELDS
        assert [step.source for step in chain] == list(range(1, len(chain) + 1))


def test_current_versions_are_the_chains_lengths_plus_one() -> None:
    assert SCHEMA_VERSIONS == {
        "AccountOpened": 1,
        "MoneyDeposited": 2,
        "MoneyWithdrawn": 1,
        "TransferDebited": 1,
        "TransferCredited": 1,
        "AccountClosed": 1,
    }
    assert all(current_version(name) == version for name, version in SCHEMA_VERSIONS.items())


def test_a_version_1_deposit_reads_as_version_2_without_a_reference() -> None:
    stored = {"amount": "10.00"}
    assert upcast("MoneyDeposited", 1, stored) == {"amount": "10.00", "reference": None}
    assert stored == {"amount": "10.00"}  # what was read is left as it was


def test_version_1_never_had_a_reference_whatever_its_data_holds() -> None:
    assert upcast("MoneyDeposited", 1, {"amount": "1.00", "reference": "x"})["reference"] is None


def test_the_current_version_is_read_as_it_is() -> None:
    data = {"amount": "10.00", "reference": "INV-7"}
    assert upcast("MoneyDeposited", 2, data) is data
    opened = {"owner": "alice", "currency": "EUR"}
    assert upcast("AccountOpened", 1, opened) is opened


@pytest.mark.parametrize(
    ("event_type", "version"),
    [("MoneyDeposited", 3), ("MoneyDeposited", 0), ("MoneyDeposited", -1), ("AccountOpened", 2),
     ("MoneyDeposited", True), ("MoneyDeposited", 1.0), ("MoneyDeposited", "1")],
)  # fmt: skip
def test_a_version_outside_1_to_the_current_one_is_refused(event_type: str, version: object) -> None:
    with pytest.raises(UnsupportedSchemaVersion):
        upcast(event_type, version, {"amount": "1.00"})  # type: ignore[arg-type]


def test_from_wire_upcasts_so_both_versions_read_alike() -> None:
    v1 = from_wire(json.dumps(_wire("MoneyDeposited", 1, {"amount": "10.00"})))
    v2 = from_wire(json.dumps(_wire("MoneyDeposited", 2, {"amount": "10.00", "reference": None})))
    assert (
        (v1.schema_version, v1.data)
        == (v2.schema_version, v2.data)
        == (2, {"amount": "10.00", "reference": None})
    )
    # What it reads is what it writes: an upcast event goes on (parked, dead-lettered) as version 2.
    assert json.loads(to_wire(v1))["schema_version"] == 2
    assert from_wire(to_wire(v1)) == v1


def test_from_dict_leaves_the_dict_it_read_alone() -> None:
    raw = _wire("MoneyDeposited", 1, {"amount": "10.00"})
    kept = copy.deepcopy(raw)
    from_dict(raw)
    assert raw == kept


@pytest.mark.parametrize("version", [3, 0, 99, -1])
def test_from_dict_refuses_versions_it_cannot_read(version: int) -> None:
    with pytest.raises(InvalidEvent) as refused:
        from_dict(_wire("MoneyDeposited", version, {"amount": "1.00", "reference": None}))
    assert refused.value.reason == "unsupported_schema_version"


def test_a_version_2_deposit_must_carry_its_reference() -> None:
    with pytest.raises(InvalidEvent) as refused:
        from_dict(_wire("MoneyDeposited", 2, {"amount": "1.00"}))
    assert refused.value.reason == "invalid_envelope" and "reference" in refused.value.detail


def test_the_sql_form_names_each_step_of_each_chain() -> None:
    sql = data_sql("e")
    assert "e.event_type = 'MoneyDeposited' AND e.schema_version = 1" in sql
    assert "jsonb_build_object('reference', NULL)" in sql
    assert "e.schema_version = 2" not in sql  # the current version is read as stored
    assert "%" not in sql and "{" not in sql  # safe inside a parameterised or formatted statement
