"""Checks the read models against the event log: every account's read model must equal the fold of its events.

The fold is computed in SQL, one statement over the whole log, independently of the handlers (it is the
yardstick they are measured against). It covers, per account, what the projection promises:

- account view: owner, currency, balance, status, version, opened_at, updated_at;
- statement: the number of lines and a digest of every line (version, kind, amount, balance_after,
  counterparty, transfer id, reference), so one wrong amount or balance_after anywhere is found;
- currency totals: the sums of the folded accounts per currency.

Events still in flight are not drift. An account is folded only up to its applied version (the highest
`applied_events.version`, written in the same transaction as the read model), read in the same snapshot as
the read models, so an account whose newer events are still on their way is checked up to where it is, and
reported as behind the log. An account whose applied version the log has not reached yet (the replica lags
the broker path) cannot be checked now: it is reported as ahead of the log, not as drift.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import connection, transaction

from cqrs_common.upcasting import data_sql
from read_service.projections.event_log.connect import read_only_cursor
from read_service.projections.event_log.rows import EVENT_STORE_TABLE, REPLICA_TABLE

# The fold is written here on purpose, not taken from the apply step: what each money event does to its
# account (its kind and sign) and how a line's balance_after follows (a running sum over the log) are stated
# a second time, in a different form (window functions over the whole log, not `apply_sql.MOVE_MONEY_CTES`'
# per-batch deltas, nor `handlers.PROJECTIONS`' movements), so a mistake in either is found as drift instead
# of being repeated by the yardstick. Within this module each piece is written once.
_KIND = """CASE e.event_type WHEN 'MoneyDeposited' THEN 'deposit' WHEN 'MoneyWithdrawn' THEN 'withdrawal'
    WHEN 'TransferCredited' THEN 'transfer_in' WHEN 'TransferDebited' THEN 'transfer_out' END"""
_SIGNED_AMOUNT = "CASE WHEN kind IN ('deposit', 'transfer_in') THEN amount ELSE -amount END"
# A digest of an account's statement lines, over the same text of each line, expected and actual alike
# (`quote_nullable`: a reference that is null and one that is empty differ).
_DIGEST = """md5(string_agg(concat_ws('|', version, kind, amount, balance_after,
                                     coalesce(counterparty::text, ''), coalesce(transfer_id::text, ''),
                                     quote_nullable(reference)),
                           ';' ORDER BY version))"""
# The money movements of the log up to each account's applied version, as statement lines. `applied` is a CTE
# of (aggregate_id, version); `{events}` the log's table. Each row's data is read at its type's current
# schema version, by the readers' one upcasting chain in its SQL form (`upcasting.data_sql`): a deposit of
# version 1 reads as version 2 with a null reference. Versions the readers refuse are never applied, so
# they are never folded.
_LINES = f"""
folded AS (
    SELECT e.aggregate_id, e.aggregate_version AS version, e.event_type, e.occurred_at,
           u.data ->> 'owner' AS owner, u.data ->> 'currency' AS currency, {_KIND} AS kind,
           u.data ->> 'amount' AS amount,
           lower(coalesce(u.data ->> 'to_account', u.data ->> 'from_account')) AS counterparty,
           lower(u.data ->> 'transfer_id') AS transfer_id,
           CASE WHEN e.event_type = 'MoneyDeposited' THEN u.data ->> 'reference' END AS reference
      FROM {{events}} e JOIN applied a ON a.aggregate_id = e.aggregate_id AND e.aggregate_version <= a.version
     CROSS JOIN LATERAL (SELECT {data_sql("e")} AS data) u
),
moves AS (
    SELECT aggregate_id, version, kind, amount::numeric(20, 2) AS amount, counterparty, transfer_id, reference
      FROM folded WHERE kind IS NOT NULL
),
lines AS (
    SELECT *, sum({_SIGNED_AMOUNT}) OVER (PARTITION BY aggregate_id ORDER BY version) AS balance_after
      FROM moves
)"""
# Expected state per account. `{applied}` is either the applied versions of the same database or the arrays
# %(ids)s / %(versions)s (a log in another database).
_FOLD = f"""
WITH applied AS ({{applied}}), {_LINES},
statements AS (
    SELECT aggregate_id, count(*) AS lines, {_DIGEST} AS digest, sum({_SIGNED_AMOUNT}) AS balance
      FROM lines GROUP BY aggregate_id
)
SELECT f.aggregate_id, count(*), max(f.version),
       max(f.owner) FILTER (WHERE f.event_type = 'AccountOpened'),
       max(f.currency) FILTER (WHERE f.event_type = 'AccountOpened'),
       coalesce(max(s.balance), 0),
       CASE WHEN bool_or(f.event_type = 'AccountClosed') THEN 'closed' ELSE 'open' END,
       min(f.occurred_at) FILTER (WHERE f.event_type = 'AccountOpened'),
       (array_agg(f.occurred_at ORDER BY f.version DESC))[1],
       coalesce(max(s.lines), 0), max(s.digest)
  FROM folded f LEFT JOIN statements s ON s.aggregate_id = f.aggregate_id
 GROUP BY f.aggregate_id
"""
_APPLIED_HERE = "SELECT aggregate_id, max(version) AS version FROM applied_events GROUP BY aggregate_id"
_APPLIED_GIVEN = "SELECT * FROM unnest(%(ids)s::uuid[], %(versions)s::int[]) AS a(aggregate_id, version)"

# How far the log goes per account (to tell in-flight accounts).
_LOG_VERSIONS = "SELECT aggregate_id, max(aggregate_version) FROM {events} GROUP BY aggregate_id"

_APPLIED = "SELECT aggregate_id, max(version), count(*) FROM applied_events GROUP BY aggregate_id"

# What the read models hold, in the same shape (the digest over the same text of each line).
_MODELS = f"""
SELECT coalesce(v.account_id, s.account_id), v.owner, v.currency, v.balance, v.status, v.version,
       v.opened_at, v.updated_at, coalesce(s.lines, 0), s.digest, v.account_id IS NOT NULL
  FROM account_view v
  FULL JOIN (SELECT account_id, count(*) AS lines, {_DIGEST} AS digest
               FROM statement_lines GROUP BY account_id) s ON s.account_id = v.account_id
"""
_TOTALS = "SELECT currency, total_balance, accounts, open_accounts FROM currency_totals"

# Lines of one account, expected and actual, to say which line differs (only for accounts found drifting).
_EXPECTED_LINES = f"""
WITH applied AS (SELECT %(account)s::uuid AS aggregate_id, %(version)s::int AS version), {_LINES}
SELECT version, kind, amount, balance_after, reference FROM lines ORDER BY version
"""
_ACTUAL_LINES = """
SELECT version, kind, amount, balance_after, reference FROM statement_lines
 WHERE account_id = %(account)s ORDER BY version
"""
MAX_EXPLAINED = 50  # accounts whose differing statement line is looked up


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account as the read models show it, or as its events say it must be."""

    owner: str | None
    currency: str | None
    balance: Decimal | None
    status: str | None
    version: int | None
    opened_at: Any
    updated_at: Any
    lines: int
    digest: str | None


COMPARED = ("owner", "currency", "balance", "status", "version", "opened_at", "updated_at", "lines")


@dataclass(frozen=True, slots=True)
class AccountDrift:
    account_id: UUID
    # field -> (expected, actual); `statement` when the lines differ, `account` when the row itself is missing
    # or should not exist, `applied_events` when the tracking rows have holes.
    fields: dict[str, tuple[Any, Any]]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TotalDrift:
    currency: str
    expected: tuple[Decimal, int, int] | None  # total_balance, accounts, open_accounts
    actual: tuple[Decimal, int, int] | None


@dataclass(slots=True)
class VerifyReport:
    accounts_checked: int = 0
    events_checked: int = 0
    drifts: list[AccountDrift] = field(default_factory=list)
    total_drifts: list[TotalDrift] = field(default_factory=list)
    behind_log: list[UUID] = field(default_factory=list)  # newer events not applied yet: checked so far
    ahead_of_log: list[UUID] = field(default_factory=list)  # applied beyond what the log holds: not checked
    not_projected: list[UUID] = field(default_factory=list)  # in the log, nothing applied yet
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.drifts and not self.total_drifts

    @property
    def settled(self) -> bool:
        """Nothing in flight: every account was checked up to the end of its log."""
        return not (self.behind_log or self.ahead_of_log or self.not_projected)


def read_models_verify(*, event_store_dsn: str | None = None) -> VerifyReport:
    """Folds the log (the replica table, or the `events` table at `event_store_dsn`) and compares it with the
    read models. Read-only; the read models are read in one snapshot."""
    started = time.monotonic()
    with _snapshot() as cursor:
        applied = {row[0]: (row[1], row[2]) for row in _fetch(cursor, _APPLIED)}
        models = {row[0]: row for row in _fetch(cursor, _MODELS)}
        totals = {row[0]: (row[1], row[2], row[3]) for row in _fetch(cursor, _TOTALS)}
        if event_store_dsn is None:
            folded, log_versions = _fold(cursor, REPLICA_TABLE, _APPLIED_HERE, {})
            explain = _explainer(cursor, REPLICA_TABLE)
            report = _compare(applied, models, totals, folded, log_versions, explain)
    if event_store_dsn is not None:
        params = {"ids": [str(a) for a in applied], "versions": [v for v, _ in applied.values()]}
        with (
            read_only_cursor(event_store_dsn, application_name="verify_read_models") as store,
            _read_models_cursor() as cursor,
        ):
            folded, log_versions = _fold(store, EVENT_STORE_TABLE, _APPLIED_GIVEN, params)
            explain = _explainer(store, EVENT_STORE_TABLE, cursor)
            report = _compare(applied, models, totals, folded, log_versions, explain)
    report.seconds = time.monotonic() - started
    return report


def _fold(cursor: Any, events: str, applied_sql: str, params: dict) -> tuple[dict, dict]:
    folded = {}
    for row in _fetch(cursor, _FOLD.format(applied=applied_sql, events=events), params):
        account_id, count, last, owner, currency, balance, status, opened_at, updated_at, lines, digest = row
        state = AccountState(owner, currency, balance, status, last, opened_at, updated_at, lines, digest)
        folded[account_id] = (count, last, state)
    log_versions = dict(_fetch(cursor, _LOG_VERSIONS.format(events=events)))
    return folded, log_versions


def _compare(
    applied: dict[UUID, tuple[int, int]],
    models: dict[UUID, tuple],
    totals: dict[str, tuple[Decimal, int, int]],
    folded: dict[UUID, tuple[int, int, AccountState]],
    log_versions: dict[UUID, int],
    explain: Any,
) -> VerifyReport:
    report = VerifyReport()
    expected_totals: dict[str, list] = defaultdict(lambda: [Decimal(0), 0, 0])
    for account_id in sorted(applied.keys() | models.keys() | log_versions.keys(), key=str):
        version, tracked = applied.get(account_id, (0, 0))
        row = models.get(account_id)
        actual = _actual_state(row)
        in_log = log_versions.get(account_id, 0)
        if version == 0:
            if actual is not None:
                report.drifts.append(AccountDrift(account_id, {"account": ("absent", "projected")}))
            elif in_log:
                report.not_projected.append(account_id)
            continue
        events, last, expected = folded.get(account_id, (0, 0, None))
        if events < version or last != version or expected is None:  # the log has not got that far yet
            report.ahead_of_log.append(account_id)
            _add_total(expected_totals, actual)
            continue
        report.accounts_checked += 1
        report.events_checked += version
        if in_log > version:
            report.behind_log.append(account_id)
        _add_total(expected_totals, expected)
        fields = _differences(expected, actual)
        if tracked != version:
            fields["applied_events"] = (f"{version} rows", f"{tracked} rows")
        if fields:
            report.drifts.append(AccountDrift(account_id, fields))
    report.drifts = [_explained(drift, applied, explain, i) for i, drift in enumerate(report.drifts)]
    for currency in sorted(expected_totals.keys() | totals.keys()):
        expected_total = tuple(expected_totals[currency]) if currency in expected_totals else None
        actual_total = totals.get(currency)
        if expected_total != actual_total:
            report.total_drifts.append(TotalDrift(currency, expected_total, actual_total))  # type: ignore[arg-type]
    return report


def _actual_state(row: tuple | None) -> AccountState | None:
    if row is None:
        return None
    _, owner, currency, balance, status, version, opened_at, updated_at, lines, digest, has_view = row
    if not has_view:  # statement lines of an account without a view row
        return AccountState(None, None, None, None, None, None, None, lines, digest)
    return AccountState(owner, currency, balance, status, version, opened_at, updated_at, lines, digest)


def _differences(expected: AccountState, actual: AccountState | None) -> dict[str, tuple[Any, Any]]:
    if actual is None or actual.version is None:  # no account view row (perhaps stray statement lines)
        return {"account": ("projected", "absent")}
    fields = {
        name: (getattr(expected, name), getattr(actual, name))
        for name in COMPARED
        if getattr(expected, name) != getattr(actual, name)
    }
    if "lines" not in fields and expected.digest != actual.digest:
        fields["statement"] = ("lines as folded", "lines differ")
    return fields


def _add_total(totals: dict[str, list], state: AccountState | None) -> None:
    if state is None or state.currency is None:
        return
    total = totals[state.currency]
    total[0] += state.balance
    total[1] += 1
    total[2] += state.status == "open"


def _explained(drift: AccountDrift, applied: dict, explain: Any, index: int) -> AccountDrift:
    """Names the first statement line that differs (for the first MAX_EXPLAINED drifting accounts)."""
    if index >= MAX_EXPLAINED or not ({"lines", "statement", "balance"} & drift.fields.keys()):
        return drift
    expected, actual = explain(drift.account_id, applied[drift.account_id][0])
    for want, got in zip(expected, actual, strict=False):
        if want != got:
            detail = f"line {want[0]}: expected {_line(want)}, found {_line(got)}"
            return AccountDrift(drift.account_id, drift.fields, detail)
    if len(expected) != len(actual):
        extra = (actual if len(actual) > len(expected) else expected)[min(len(expected), len(actual))]
        which = "unexpected" if len(actual) > len(expected) else "missing"
        return AccountDrift(drift.account_id, drift.fields, f"line {extra[0]} {which}: {_line(extra)}")
    return drift


def _line(line: tuple) -> str:
    version, kind, amount, balance_after, reference = line
    referenced = "" if reference is None else f" (reference {reference!r})"
    return f"v{version} {kind} {amount}{referenced} -> {balance_after}"


def _explainer(log_cursor: Any, events: str, models_cursor: Any = None) -> Any:
    models_cursor = models_cursor or log_cursor

    def explain(account_id: UUID, version: int) -> tuple[list[tuple], list[tuple]]:
        params = {"account": str(account_id), "version": version}
        expected = _fetch(log_cursor, _EXPECTED_LINES.format(events=events), params)
        actual = _fetch(models_cursor, _ACTUAL_LINES, params)
        return expected, actual

    return explain


def _fetch(cursor: Any, sql: str, params: Any = None) -> list[tuple]:
    """Rows with the first column (an account id, or a currency) as a key: UUIDs whatever the driver gives."""
    cursor.execute(sql, params)
    return [(_key(row[0]), *row[1:]) for row in cursor.fetchall()]


def _key(value: Any) -> Any:
    return UUID(value) if isinstance(value, str) and len(value) == 36 else value


@contextmanager
def _snapshot() -> Iterator[Any]:
    """One read-only snapshot of the read database (applied versions and read models agree); inside a
    transaction already, that transaction's."""
    own = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if own:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield cursor


@contextmanager
def _read_models_cursor() -> Iterator[Any]:
    with connection.cursor() as cursor:
        yield cursor
