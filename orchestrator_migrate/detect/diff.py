"""Detect: Alembic's autogenerate comparison, turned into typed Changes."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from alembic.autogenerate import produce_migrations
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Enum, Identity, MetaData, inspect
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.elements import ClauseElement

from ..config.filters import ignored
from ..model.changes import Change, ChangeKind
from ..model.names import table_key
from .checks import check_changes
from .defaults import defaults_differ
from .generated import generated_changes
from .indexes import expression_index_changes, index_where, partial_index_changes
from .present import present_tables
from .primary_keys import primary_key_changes
from .probe import Spelling
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

    schemas = {t.schema for t in metadata.tables.values() if t.schema}

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":  # the default schema (None) and those the models use
            return name is None or name in schemas
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
        inspected_column: Any,
        metadata_column: Any,
        rendered_metadata_default: str | None,
        rendered_inspected_default: str | None,
    ) -> bool:
        return defaults_differ(
            rendered_inspected_default,
            metadata_column.server_default,
            rendered_metadata_default,
        )

    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": compare_type,
            "compare_server_default": True,
            "include_name": include_name,
            "include_schemas": bool(schemas),
        },
    )
    # Plain defaults are compared by value here; Alembic keeps its own comparison of Computed
    # and Identity (which a compare_server_default callable would receive and cannot read).
    setattr(context.impl, "compare_server_default", compare_default)  # noqa: B010
    with warnings.catch_warnings():
        # A Computed that differs is reported by generated_changes, with what to do.
        warnings.filterwarnings("ignore", message="Computed default on")
        # An expression index SQLite cannot reflect: expression_index_changes adds it.
        warnings.filterwarnings("ignore", message=".*expression-based index")
        script = produce_migrations(context, metadata)
    upgrade = script.upgrade_ops
    assert upgrade is not None

    def included(name: str) -> bool:
        return include_name(name, "table", None)

    option = backend.where_option
    spelling = Spelling(conn, backend.scratch, backend.rewrites_expressions, option)
    found = [_with_where(c, conn.dialect, option) for c in _changes(upgrade.ops, metadata)]
    recreated = {
        str(c.name) for c in found if c.kind in (ChangeKind.DROP_INDEX, ChangeKind.ADD_INDEX)
    }
    # What Alembic does not compare, each over the models' tables the database has, read once.
    insp = inspect(conn)
    tables = present_tables(insp, metadata, included)
    return [
        *found,
        *partial_index_changes(insp, tables, recreated, spelling, option),
        *expression_index_changes(conn, tables, recreated, backend.index_names),
        *check_changes(insp, tables, spelling),
        *generated_changes(insp, tables, spelling),
        *primary_key_changes(insp, tables),
        *backend.more_changes(conn, metadata),
    ]


def _with_where(change: Change, dialect: Dialect, option: str | None) -> Change:
    if change.kind is not ChangeKind.ADD_INDEX or option is None:
        return change
    return dataclasses.replace(change, where=index_where(dialect, option, change.op.to_index()))


def _changes(operations: Iterable[ops.MigrateOperation], metadata: MetaData) -> Iterable[Change]:
    for op in operations:
        if isinstance(op, ops.ModifyTableOps):
            yield from _changes(op.ops, metadata)
            continue
        detect = _DETECT.get(type(op))
        if detect is not None:
            yield from detect(op, metadata)


def _add_table(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(ChangeKind.ADD_TABLE, _key(op), f"create table {_key(op)}", op=op)


def _drop_table(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(ChangeKind.DROP_TABLE, _key(op), f"table {_key(op)}", op=op)


def _add_column(op: Any, metadata: MetaData) -> Iterable[Change]:
    col = op.column
    nullable = "" if col.nullable else " NOT NULL"
    default = ""
    if col.server_default is not None:
        default = f" DEFAULT {_default_text(col.server_default)}"
    yield Change(
        ChangeKind.ADD_COLUMN,
        _key(op),
        f"add column {_key(op)}.{col.name} {col.type}{nullable}{default}",
        column=col.name,
        op=op,
    )


def _drop_column(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(
        ChangeKind.DROP_COLUMN,
        _key(op),
        f"column {_key(op)}.{op.column_name}",
        column=op.column_name,
        op=op,
    )


def _add_index(op: Any, metadata: MetaData) -> Iterable[Change]:
    unique = "unique " if op.unique else ""
    yield Change(
        ChangeKind.ADD_INDEX,
        _key(op),
        f"create {unique}index {op.index_name} on {_key(op)} ({', '.join(_names(op.columns))})",
        name=_name(op.index_name),
        op=op,
    )


def _drop_index(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(
        ChangeKind.DROP_INDEX,
        _key(op),
        f"drop index {op.index_name} on {_key(op)}",
        name=_name(op.index_name),
        op=op,
        columns=tuple(dropped_index_columns(op)),
    )


def _add_unique(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(
        ChangeKind.ADD_UNIQUE,
        _key(op),
        f"add unique constraint on {_key(op)} ({', '.join(op.columns)})",
        name=_name(op.constraint_name),
        op=op,
    )


def _add_foreign_key(op: Any, metadata: MetaData) -> Iterable[Change]:
    yield Change(
        ChangeKind.ADD_FK,
        _key(op, op.source_table, op.kw.get("source_schema")),
        f"add foreign key {_key(op, op.source_table, op.kw.get('source_schema'))}"
        f" ({', '.join(op.local_cols)}) ->"
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
        _key(op),
        f"drop {what} {label} on {_key(op)}",
        name=_name(op.constraint_name),
        op=op,
        columns=columns,
    )


def _alter_column(op: Any, metadata: MetaData) -> Iterable[Change]:
    table = metadata.tables.get(_key(op))
    column = table.c.get(op.column_name) if table is not None else None
    where = f"{_key(op)}.{op.column_name}"
    if op.modify_type is not None:
        wider = widens(op.existing_type, op.modify_type)
        yield Change(
            ChangeKind.ALTER_TYPE,
            _key(op),
            f"{'widen' if wider else 'change'} type of {where} from"
            f" {_type_text(op.existing_type)} to {_type_text(op.modify_type)}",
            column=op.column_name,
            op=op,
            widening=wider,
        )
    if isinstance(op.modify_server_default, Identity):
        if isinstance(op.existing_server_default, Identity):  # else generated_changes says
            problem = f"{where} has other Identity options in the models than in the database"
            yield Change(
                ChangeKind.ALTER_GENERATED,
                _key(op),
                problem,
                column=op.column_name,
                refusal=f"{problem}. Change them by hand, or keep the database's",
            )
    elif op.modify_server_default is not False:
        new = op.modify_server_default
        text = f"set default of {where} to {_default_text(new)}" if new is not None else ""
        yield Change(
            ChangeKind.ALTER_DEFAULT,
            _key(op),
            text or f"drop default of {where}",
            column=op.column_name,
            op=op,
        )
    if op.modify_comment is not False:
        yield Change(
            ChangeKind.ALTER_COMMENT,
            _key(op),
            f"set comment of {where} to {op.modify_comment!r}"
            if op.modify_comment
            else f"drop comment of {where}",
            column=op.column_name,
            op=op,
        )
    if op.modify_nullable is not None and not (column is not None and column.primary_key):
        kind = ChangeKind.DROP_NOT_NULL if op.modify_nullable else ChangeKind.SET_NOT_NULL
        text = "drop NOT NULL on" if op.modify_nullable else "set NOT NULL on"
        yield Change(kind, _key(op), f"{text} {where}", column=op.column_name, op=op)


def _table_comment(op: Any, metadata: MetaData) -> Iterable[Change]:
    comment = getattr(op, "comment", None)
    yield Change(
        ChangeKind.ALTER_TABLE_COMMENT,
        _key(op),
        f"set comment of table {_key(op)} to {comment!r}"
        if comment
        else f"drop comment of table {_key(op)}",
        op=op,
    )


def _key(op: Any, name: str | None = None, schema: str | None = None) -> str:
    """The table an op concerns, as the plan names it ('schema.name' outside the default)."""
    if name is None:
        name, schema = op.table_name or "", op.schema
    return table_key(name, schema)


def _name(name: Any) -> str | None:
    return name if isinstance(name, str) else None


def _names(columns: Iterable[Any]) -> list[str]:
    return [c.name if isinstance(c, Column) else str(c) for c in columns]


def dropped_constraint_columns(op: ops.DropConstraintOp) -> list[str]:
    """The columns of the constraint a drop removes, from the reflected original."""
    original = op._reverse.to_constraint() if op._reverse is not None else None
    return [c.name for c in getattr(original, "columns", ())]


def _default_text(default: Any) -> str:
    arg = getattr(default, "arg", default)
    text = getattr(arg, "text", None)
    if isinstance(text, str):
        return text
    if isinstance(arg, ClauseElement):  # sa.true(), func.now(), ...
        return str(arg.compile(compile_kwargs={"literal_binds": True}))
    return repr(arg)


def _type_text(type_: Any) -> str:
    if isinstance(type_, Enum) and type_.enums:
        return f"ENUM({', '.join(repr(v) for v in type_.enums)})"
    return str(type_)


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
    ops.CreateTableCommentOp: _table_comment,
    ops.DropTableCommentOp: _table_comment,
}
