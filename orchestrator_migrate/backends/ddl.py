"""SQL text for Alembic operations, rendered offline so that the plan holds the exact statements."""

from __future__ import annotations

from typing import Any

from alembic.operations import Operations
from alembic.operations.ops import AddColumnOp, AlterColumnOp, CreateTableOp, MigrateOperation
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column
from sqlalchemy.engine import Dialect

from ..model.changes import Change, ChangeKind
from ..model.names import quote_table, split_key, table_key


class _Collector:
    """An output buffer that keeps each statement Alembic writes."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def write(self, text: str) -> None:
        stmt = text.strip()
        if stmt.endswith(";"):
            stmt = stmt[:-1].rstrip()
        if stmt:
            self.statements.append(stmt)

    def flush(self) -> None:
        pass


def render(dialect: Dialect, op: MigrateOperation) -> list[str]:
    """The statements Alembic would execute for op on dialect.

    A column added with index=True or unique=True gets that index or constraint from its own
    change (the comparison reports it apart), so the ADD COLUMN renders the bare column.
    """
    if isinstance(op, AddColumnOp) and (op.column.index or op.column.unique):
        bare = op.column._copy()
        bare.index = bare.unique = None
        op = AddColumnOp(op.table_name, bare, schema=op.schema)
    if isinstance(op, CreateTableOp):
        # Alembic lists a table's constraints from a set: put them back in the models' order, so
        # that the SQL a plan shows is the SQL every process runs.
        columns = [c for c in op.columns if isinstance(c, Column)]
        others = [c for c in op.columns if not isinstance(c, Column)]
        op.columns = columns + sorted(others, key=lambda c: getattr(c, "_creation_order", 0))
    out = _Collector()
    opts: dict[str, Any] = {"as_sql": True, "output_buffer": out, "literal_binds": True}
    context = MigrationContext.configure(dialect=dialect, opts=opts)
    Operations(context).invoke(op)
    return out.statements


def rename_sql(dialect: Dialect, change: Change) -> list[str]:
    """ALTER TABLE ... RENAME for a RENAME_TABLE or RENAME_COLUMN change (the same everywhere)."""
    q = dialect.identifier_preparer.quote
    if change.kind is ChangeKind.RENAME_TABLE:
        schema, name = split_key(change.table)
        old = quote_table(dialect, table_key(str(change.name), schema))
        return [f"ALTER TABLE {old} RENAME TO {q(name)}"]
    return [
        f"ALTER TABLE {quote_table(dialect, change.table)} RENAME COLUMN {q(str(change.name))}"
        f" TO {q(str(change.column))}"
    ]


# The part of an ALTER COLUMN each change kind makes.
_PARTS = {
    ChangeKind.ALTER_TYPE: "modify_type",
    ChangeKind.ALTER_DEFAULT: "modify_server_default",
    ChangeKind.SET_NOT_NULL: "modify_nullable",
    ChangeKind.DROP_NOT_NULL: "modify_nullable",
    ChangeKind.ALTER_COMMENT: "modify_comment",
}
ALTER_PARTS = frozenset(_PARTS)


def only_part(change: Change) -> AlterColumnOp:
    """The ALTER COLUMN of one change alone (its type, default or nullability), where Alembic's
    op carries every part that differs on the column."""
    op = change.op
    return AlterColumnOp(
        op.table_name,
        op.column_name,
        schema=op.schema,
        existing_type=op.existing_type,
        existing_server_default=op.existing_server_default,
        existing_nullable=op.existing_nullable,
        existing_comment=op.existing_comment,
        **{_PARTS[change.kind]: getattr(op, _PARTS[change.kind])},
    )
