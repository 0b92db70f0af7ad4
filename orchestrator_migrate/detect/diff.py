"""Detect: Alembic's autogenerate comparison, turned into typed Changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from alembic.autogenerate import produce_migrations
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from ..config.filters import ignored
from ..model.changes import Change, ChangeKind
from .checks import check_changes
from .defaults import defaults_differ
from .types import widens

if TYPE_CHECKING:
    from ..backends.base import Backend


def diff(
    conn: Connection,
    metadata: MetaData,
    backend: Backend,
    ignore_tables: Sequence[str] = (),
    only: str | None = None,
) -> list[Change]:
    """Every difference between the database on conn and metadata (on table only, if given),
    in Alembic's order."""

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "table" and name is not None:
            return name == only if only is not None else not ignored(name, ignore_tables)
        return True

    def compare_type(
        context: Any,
        inspected_column: Any,
        metadata_column: Any,
        inspected_type: Any,
        metadata_type: Any,
    ) -> bool:
        return backend.types_differ(inspected_type, metadata_type)

    def compare_default(
        context: Any,
        inspected_column: Any,
        metadata_column: Any,
        inspected_default: str | None,
        metadata_default: Any,
        rendered_metadata_default: str | None,
    ) -> bool:
        return defaults_differ(inspected_default, metadata_default, rendered_metadata_default)

    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": compare_type,
            "compare_server_default": compare_default,
            "include_name": include_name,
        },
    )
    script = produce_migrations(context, metadata)
    upgrade = script.upgrade_ops
    assert upgrade is not None
    checks = check_changes(conn, metadata, lambda name: include_name(name, "table", None))
    return [*_changes(upgrade.ops, metadata), *checks, *backend.more_changes(conn, metadata)]


def _changes(operations: Iterable[ops.MigrateOperation], metadata: MetaData) -> Iterable[Change]:
    for op in operations:
        if isinstance(op, ops.ModifyTableOps):
            yield from _changes(op.ops, metadata)
            continue
        detect = _DETECT.get(type(op))
        if detect is not None:
            yield from detect(op, metadata)


def _add_table(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(ChangeKind.ADD_TABLE, op.table_name, f"create table {op.table_name}", op=op)


def _drop_table(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(ChangeKind.DROP_TABLE, op.table_name, f"table {op.table_name}", op=op)


def _add_column(op: Any, metadata: MetaData) -> Iterable[Change]:
    col = op.column
    nullable = "" if col.nullable else " NOT NULL"
    default = ""
    if col.server_default is not None:
        default = f" DEFAULT {_default_text(col.server_default)}"
    yield Change(
        ChangeKind.ADD_COLUMN,
        op.table_name,
        f"add column {op.table_name}.{col.name} {col.type}{nullable}{default}",
        column=col.name,
        op=op,
    )


def _drop_column(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(
        ChangeKind.DROP_COLUMN,
        op.table_name,
        f"column {op.table_name}.{op.column_name}",
        column=op.column_name,
        op=op,
    )


def _add_index(op: Any, metadata: MetaData) -> Iterable[Change]:
    unique = "unique " if op.unique else ""
    yield Change(
        ChangeKind.ADD_INDEX,
        op.table_name,
        f"create {unique}index {op.index_name} on {op.table_name}"
        f" ({', '.join(_names(op.columns))})",
        name=_name(op.index_name),
        op=op,
    )


def _drop_index(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(
        ChangeKind.DROP_INDEX,
        op.table_name or "",
        f"drop index {op.index_name} on {op.table_name}",
        name=_name(op.index_name),
        op=op,
        columns=tuple(dropped_index_columns(op)),
    )


def _add_unique(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(
        ChangeKind.ADD_UNIQUE,
        op.table_name,
        f"add unique constraint on {op.table_name} ({', '.join(op.columns)})",
        name=_name(op.constraint_name),
        op=op,
    )


def _add_foreign_key(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(
        ChangeKind.ADD_FK,
        op.source_table,
        f"add foreign key {op.source_table} ({', '.join(op.local_cols)}) ->"
        f" {op.referent_table} ({', '.join(op.remote_cols)})",
        name=_name(op.constraint_name),
        op=op,
    )


def _drop_constraint(op: Any, metadata: MetaData) -> Iterable[Change]:
    foreign = op.constraint_type == "foreignkey"
    kind = ChangeKind.DROP_FK if foreign else ChangeKind.DROP_UNIQUE
    what = "foreign key" if foreign else "unique constraint"
    columns = tuple(dropped_constraint_columns(op))
    label = op.constraint_name or f"({', '.join(columns)})"
    yield Change(
        kind,
        op.table_name,
        f"drop {what} {label} on {op.table_name}",
        name=_name(op.constraint_name),
        op=op,
        columns=columns,
    )


def _alter_column(op: Any, metadata: MetaData) -> Iterable[Change]:
    table = metadata.tables.get(op.table_name)
    column = table.c.get(op.column_name) if table is not None else None
    where = f"{op.table_name}.{op.column_name}"
    if op.modify_type is not None:
        wider = widens(op.existing_type, op.modify_type)
        yield Change(
            ChangeKind.ALTER_TYPE,
            op.table_name,
            f"{'widen' if wider else 'change'} type of {where} from {op.existing_type}"
            f" to {op.modify_type}",
            column=op.column_name,
            op=op,
            widening=wider,
        )
    if op.modify_server_default is not False:
        new = op.modify_server_default
        text = f"set default of {where} to {_default_text(new)}" if new is not None else ""
        yield Change(
            ChangeKind.ALTER_DEFAULT,
            op.table_name,
            text or f"drop default of {where}",
            column=op.column_name,
            op=op,
        )
    if op.modify_nullable is not None and not (column is not None and column.primary_key):
        kind = ChangeKind.DROP_NOT_NULL if op.modify_nullable else ChangeKind.SET_NOT_NULL
        text = "drop NOT NULL on" if op.modify_nullable else "set NOT NULL on"
        yield Change(kind, op.table_name, f"{text} {where}", column=op.column_name, op=op)


def _name(name: Any) -> str | None:
    return name if isinstance(name, str) else None


def _names(columns: Iterable[Any]) -> list[str]:
    return [getattr(c, "name", None) or str(c) for c in columns]


def dropped_constraint_columns(op: ops.DropConstraintOp) -> list[str]:
    """The columns of the constraint a drop removes, from the reflected original."""
    original = op._reverse.to_constraint() if op._reverse is not None else None
    return [c.name for c in getattr(original, "columns", ())]


def _default_text(default: Any) -> str:
    arg = getattr(default, "arg", default)
    text = getattr(arg, "text", None)
    return text if isinstance(text, str) else repr(arg)


def dropped_index_columns(op: ops.DropIndexOp) -> list[str]:
    """The columns of the index a drop removes, from the reflected original."""
    columns = op._reverse.columns if op._reverse is not None else []
    return [name for name in _names(columns) if isinstance(name, str)]


# Each Alembic operation type the comparison reports, and the changes it means.
_DETECT: dict[type[Any], Callable[[Any, MetaData], Iterable[Change]]] = {
    ops.CreateTableOp: _add_table,
    ops.DropTableOp: _drop_table,
    ops.AddColumnOp: _add_column,
    ops.DropColumnOp: _drop_column,
    ops.AlterColumnOp: _alter_column,
    ops.CreateIndexOp: _add_index,
    ops.DropIndexOp: _drop_index,
    ops.CreateUniqueConstraintOp: _add_unique,
    ops.CreateForeignKeyOp: _add_foreign_key,
    ops.DropConstraintOp: _drop_constraint,
}
