"""The apply step's SQL, read as PostgreSQL parses it: never a schema-qualified table.

The rebuild writes its shadow tables by running the apply step with `search_path` set to the shadow schema;
one qualified name (`public.account_view`) would make it write the live table instead. The statements are
parsed by PostgreSQL's own parser (pglast wraps libpg_query), so a name is judged as the server would judge
it, wherever it sits in a statement.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pglast import parse_sql
from pglast.ast import InsertStmt, RangeVar
from pglast.visitors import Visitor

from read_service.projections import apply_sql
from read_service.projections.models import APPLY_TABLES

PROJECTIONS_DIR = Path(apply_sql.__file__).parent
# psycopg2's placeholders are not SQL: a NULL stands wherever a value goes (`NULL::uuid[]` parses).
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s")
_SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)


def _statements() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(apply_sql).items()
        if name.isupper() and isinstance(value, str) and _SQL_START.match(value)
    }


def _qualified(sql: str) -> list[str]:
    """Every schema-qualified relation the SQL names."""
    names: list[str] = []

    class Relations(Visitor):
        def visit_RangeVar(self, ancestors, node: RangeVar) -> None:
            if node.schemaname is not None:
                names.append(f"{node.schemaname}.{node.relname}")

    Relations()(parse_sql(_PLACEHOLDER.sub("NULL", sql)))
    return names


def test_the_check_finds_a_qualified_table() -> None:
    assert _qualified("WITH a AS (UPDATE public.account_view SET balance = %s) SELECT 1") == [
        "public.account_view"
    ]
    assert _qualified("SELECT * FROM account_view v JOIN applied_events a USING (account_id)") == []


def test_the_module_holds_the_statements_of_every_apply_path() -> None:
    assert {"OPEN_ACCOUNT", "CLOSE_ACCOUNT", "MOVE_MONEY", "PARK", "TRACK", "RECORD_PROGRESS"} <= set(
        _statements()
    )


@pytest.mark.parametrize("name", sorted(_statements()))
def test_apply_sql_never_qualifies_a_schema(name: str) -> None:
    assert _qualified(_statements()[name]) == []


@pytest.mark.parametrize("module", ["apply.py", "handlers.py"])
def test_the_apply_step_has_no_sql_of_its_own(module: str) -> None:
    """Its SQL lives in apply_sql.py, where the test above reads it."""
    tree = ast.parse((PROJECTIONS_DIR / module).read_text())
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL_START.match(node.value)
    ]
    assert literals == []


def _written(sql: str) -> set[str]:
    """The relations the SQL inserts into, updates or deletes from."""
    names: set[str] = set()

    class Writes(Visitor):
        def visit_InsertStmt(self, ancestors, node: InsertStmt) -> None:
            names.add(node.relation.relname)

        visit_UpdateStmt = visit_DeleteStmt = visit_InsertStmt

    Writes()(parse_sql(_PLACEHOLDER.sub("NULL", sql)))
    return names


def test_the_check_finds_every_written_table() -> None:
    assert _written("WITH a AS (DELETE FROM x RETURNING 1) UPDATE y SET b = 1; INSERT INTO z VALUES (1)") == {
        "x",
        "y",
        "z",
    }


def test_apply_sql_writes_only_declared_tables() -> None:
    """What the rebuild shadows (`APPLY_TABLES`) is what the apply step writes: a table missing there would
    fail the rebuild; one the apply step stopped writing would be shadowed and swapped for nothing."""
    written = set().union(*(_written(sql) for sql in _statements().values()))
    assert written == set(APPLY_TABLES)
