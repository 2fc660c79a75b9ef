"""Upcasting: every reader sees every event at its type's current schema version, whatever version it was
stored with.

Stored events never change: the `events` table is insert-only (a trigger refuses every UPDATE and DELETE),
and its replica, the optional event store, parked events, dead letters and every
consumer's queue hold copies of their own. So a newer release reads old versions instead of rewriting them
(docs/decisions/0006-upcast-on-read.md). Each event type has one chain of upcasters; step `n` turns the data
of version `n` into the data of version `n + 1`, so a type's current version is one more than the steps of
its chain. A new version may only add fields, each with the default its upcaster supplies (never remove,
rename or retype one: that is a new event type).

Where it runs, once per read: `cqrs_common.events.from_dict`, which every path passes through (a broker
message, a replica row, the event store, a parked event, the reporting subscriber's log and queue, so `dlq
replay` too), and the write side's `account_history`. Readers that fold the log in SQL (verify, reporting's
currency lookup) take `data_sql`, the same chain written in SQL. A version above a type's current one, or
below 1, is not upcast but refused (`UnsupportedSchemaVersion`): the readers dead-letter it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Data = dict[str, Any]


class UnsupportedSchemaVersion(ValueError):
    """A version this release cannot read: newer than the type's current version, or below 1."""


@dataclass(frozen=True, slots=True)
class Upcaster:
    """One step of a chain: the data of version `source` as the data of version `source + 1`, in Python
    (`python`, which returns a new dict and leaves its argument alone) and in SQL (`sql`, a jsonb
    expression of the SQL expression it is given)."""

    source: int
    python: Callable[[Data], Data]
    sql: Callable[[str], str]


def _deposit_reference_absent(data: Data) -> Data:
    # A deposit of version 1 had no reference: it reads as one without (even if a field of that name was
    # there, which version 1 never gave a meaning).
    return {**data, "reference": None}


CHAINS: Mapping[str, tuple[Upcaster, ...]] = {
    # 2: the depositor's reference (a bank transfer's, say), null when none was given.
    "MoneyDeposited": (
        Upcaster(
            1, _deposit_reference_absent, lambda data: f"{data} || jsonb_build_object('reference', NULL)"
        ),
    ),
}


def current_version(event_type: str) -> int:
    """The version the write side stores `event_type` with, and every reader reads it as."""
    return 1 + len(CHAINS.get(event_type, ()))


def upcast(event_type: str, schema_version: int, data: Data) -> Data:
    """`data` of an `event_type` stored as `schema_version`, as the type's current version (a new dict when
    a step ran, `data` itself when none had to); `UnsupportedSchemaVersion` for a version it cannot read."""
    chain = CHAINS.get(event_type, ())
    if type(schema_version) is not int or not 1 <= schema_version <= len(chain) + 1:
        raise UnsupportedSchemaVersion(f"{event_type} schema_version {schema_version!r}")
    for step in chain[schema_version - 1 :]:
        data = step.python(data)
    return data


def data_sql(row: str) -> str:
    """SQL for the `data` of a row of the log (`row`: its alias; columns `event_type`, `schema_version`,
    `data` jsonb) at its type's current version: `upcast` in SQL. A row of a version no step starts from
    (the current one, or one the readers refuse) is left as stored; a fold in SQL must only take rows the
    readers applied."""
    cases = []
    for event_type, chain in CHAINS.items():
        for start in range(1, len(chain) + 1):
            expression = f"{row}.data"
            for step in chain[start - 1 :]:
                expression = f"({step.sql(expression)})"
            cases.append(
                f"WHEN {row}.event_type = '{event_type}' AND {row}.schema_version = {start} THEN {expression}"
            )
    if not cases:
        return f"{row}.data"
    return f"(CASE {' '.join(cases)} ELSE {row}.data END)"
