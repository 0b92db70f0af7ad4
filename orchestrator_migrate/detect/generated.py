"""Generated columns, which Alembic's comparison only warns about: a Computed expression or an
Identity that differs between the models and the database is reported as a change the run
refuses, with what to do instead; it is never skipped in silence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import Inspector
from sqlalchemy.engine.interfaces import ReflectedColumn

from ..model.changes import Change, ChangeKind
from ..model.tablecopy import normal_sql as normal
from .probe import Spelling


def generated_changes(
    insp: Inspector, tables: Iterable[Table], spelling: Spelling
) -> Iterable[Change]:
    """ALTER_GENERATED for each column that exists on both sides and whose Computed
    expression, or Identity, differs."""
    for table in tables:
        reflected = {c["name"]: c for c in insp.get_columns(table.name, schema=table.schema)}
        for column in table.columns:
            found = reflected.get(column.name)
            problem = found and _problem(spelling, column, found)
            if problem:
                yield Change(
                    ChangeKind.ALTER_GENERATED,
                    table.key,
                    f"{table.key}.{column.name}: {problem}",
                    column=column.name,
                    refusal=f"{table.key}.{column.name} {problem}. {_ADVICE}",
                )


_ADVICE = (
    "No database changes what generates a column in place: add a new column under another"
    " name with the new definition, and remove this one from the models (it is retired)"
)


def _problem(spelling: Spelling, column: Column[Any], reflected: ReflectedColumn) -> str | None:
    dialect = spelling.conn.dialect
    computed = reflected.get("computed")
    if column.computed is not None and computed is None:
        return "is a Computed column in the models and a plain column in the database"
    if column.computed is None and computed is not None:
        return "is a plain column in the models and a generated column in the database"
    if column.computed is not None and computed is not None:
        model = str(
            column.computed.sqltext.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        )
        found = str(computed["sqltext"])
        if normal(model) != normal(found) and normal(
            spelling.computed(column.table, column.name)
        ) != normal(found):
            return f"is computed as {model} in the models and as {found} in the database"
    if not getattr(dialect, "supports_identity_columns", False):
        return None  # SQLite and MariaDB have no Identity: AUTO_INCREMENT is the type's business
    identity = reflected.get("identity")
    if (column.identity is None) != (identity is None):
        model_side = "an Identity" if column.identity is not None else "no Identity"
        db_side = "no identity" if identity is None else "an identity"
        return f"has {model_side} in the models and {db_side} in the database"
    return None
