"""Plan: decide which detected changes to apply and which to keep, then compile them to SQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, MetaData, inspect, literal
from sqlalchemy.engine import Connection

from ..backends.base import Backend
from ..config.settings import Settings
from ..history.recorder import Recorder
from ..model.changes import KINDS, Change, ChangeKind, constraint_signature
from ..model.errors import RefusedChange
from ..model.names import quote_table
from ..model.plan import Operation, Plan
from ..model.tablecopy import copy_table


def build_plan(
    conn: Connection,
    metadata: MetaData,
    backend: Backend,
    settings: Settings,
    recorder: Recorder,
) -> Plan:
    """The plan that brings the database on conn to the models, computed before any write.

    A table renamed with info={'renamed_from': ...} is first brought to its model under its old
    name, then renamed, so that every statement is planned against the database as it is.
    """
    from ..detect.diff import diff  # Alembic loads only when the fast path did not suffice

    changes = _renames(diff(conn, metadata, backend, settings.ignore_tables), metadata)
    if not changes:
        return Plan()
    planning = _Planning(
        conn, backend, settings, recorder.owned(conn), recorder.last_modelled(conn)
    )
    operations: list[Operation] = []
    retained: list[Change] = []
    for rename in (c for c in changes if c.kind is ChangeKind.RENAME_TABLE):
        view = as_before_rename(metadata, rename.table, str(rename.name))
        before = _renames(diff(conn, view, backend, only=str(rename.name)), view)
        done = planning.plan(before, view)
        operations += done.operations
        retained += done.retained
    done = planning.plan(changes, metadata)
    return Plan((*operations, *done.operations), (*retained, *done.retained))


@dataclass(frozen=True)
class _Planning:
    """What planning a group of changes needs besides the changes and their models."""

    conn: Connection
    backend: Backend
    settings: Settings
    owned: dict[str, set[str]]
    modelled: set[str] | None  # the columns of the models in force, if known

    def plan(self, changes: list[Change], metadata: MetaData) -> Plan:
        """Decide what to apply and what to keep, then compile it."""
        conn = self.conn
        for change in changes:
            if change.refusal is not None:
                raise RefusedChange(f"migration refused, nothing changed: {change.refusal}")
        _refuse_likely_renames(changes, self.backend, self.modelled)
        kept = [c for c in changes if _keep(c, self.settings.allow_destructive, self.owned)]
        kept += _with_retired_columns([c for c in changes if c not in kept], kept)
        apply: list[Change] = []
        retained: list[Change] = []
        for change in changes:
            if change in kept:
                counted = _counted(conn, dataclasses.replace(change, retained=True))
                retained.append(counted)
                if _needs_relaxing(counted):
                    apply.append(_retire(counted))
            elif change.destructive:
                apply.append(_counted(conn, change))
            else:
                apply.append(with_fill(conn, change, metadata))
        apply = _ordered(conn, apply)
        operations = self.backend.compile(conn, apply, metadata) if apply else []
        return Plan(tuple(operations), tuple(retained))


def as_before_rename(metadata: MetaData, table: str, old: str) -> MetaData:
    """The models with one table under the name it has in the database before its rename,
    beside the tables its foreign keys refer to."""
    view = MetaData(naming_convention=metadata.naming_convention)
    model = metadata.tables[table]
    referred = {fk.column.table.name for fk in model.foreign_keys} - {table}
    for name in sorted(referred):
        copy_table(metadata.tables[name], view)
    copy_table(model, view, name=old)
    return view


def _keep(change: Change, allow_destructive: bool, owned: dict[str, set[str]]) -> bool:
    """Whether a change that removes something must leave it in place: data stays unless
    ALLOW_DESTRUCTIVE and ours; an index or constraint that no target ever defined was added
    by hand (a DBA's) and is never ours to drop."""
    kind = KINDS[change.kind]
    if kind.owner is None:
        return False
    mine = is_ours(change, owned)
    return not (allow_destructive and mine) if kind.removes else not mine


def is_ours(change: Change, owned: dict[str, set[str]]) -> bool:
    """Whether the object a drop would remove was created by models migrated here (retired
    when kept), rather than by someone else (foreign: never ours to drop)."""
    owner = KINDS[change.kind].owner
    if owner is None:
        return False
    ours = _OWNED_AS[owner](change) in owned.get(owner, set())
    ours = ours or change.owned_as in owned.get(owner, set())
    if change.kind is ChangeKind.DROP_INDEX and getattr(change.op, "kw", {}).get("unique"):
        # MariaDB reports a UNIQUE constraint as a unique index: ours if the models made one.
        unique = constraint_signature(change.table, "unique", change.columns)
        ours = ours or unique in owned.get("constraints", set())
    return ours


_OWNED_AS: dict[str, Callable[[Change], str | None]] = {
    "tables": lambda c: c.table,
    "columns": lambda c: f"{c.table}.{c.column}",
    "indexes": lambda c: c.name,
    "constraints": lambda c: c.dropped_signature,
    "checks": lambda c: c.name,
    "enums": lambda c: c.name,
}


def _with_retired_columns(candidates: list[Change], kept: list[Change]) -> list[Change]:
    """Indexes and constraints on a column that is kept stay with it until it is dropped, so
    that the old replicas' writes to it are still checked."""
    retired = {(c.table, c.column) for c in kept if c.kind is ChangeKind.DROP_COLUMN}
    tables = {c.table for c in kept if c.kind is ChangeKind.DROP_TABLE}
    return [
        c
        for c in candidates
        if (
            c.kind in (ChangeKind.DROP_INDEX, ChangeKind.DROP_UNIQUE, ChangeKind.DROP_FK)
            and any((c.table, col) in retired for col in c.columns)
        )
        # An enum type stays while a kept column or table uses it.
        or (
            c.kind is ChangeKind.DROP_ENUM_TYPE
            and any(
                (t, col) in retired or t in tables
                for t, col in (use.split(".", 1) for use in c.columns)
            )
        )
    ]


def with_fill(conn: Connection, change: Change, metadata: MetaData) -> Change:
    """A NOT NULL column added or set gets what fills its NULLs: info={'backfill': SQL}, else a
    scalar Python default (as Django's AddField does); a server default needs no fill."""
    if change.kind not in (ChangeKind.ADD_COLUMN, ChangeKind.SET_NOT_NULL) or not change.column:
        return change
    table = metadata.tables.get(change.table)
    column = table.c.get(change.column) if table is not None else None
    if column is None or column.nullable:
        return change
    fill = _fill_for(conn, column)
    if fill is None:
        return change
    sql, verb, label = fill
    quote = conn.dialect.identifier_preparer.quote
    where = "" if change.kind is ChangeKind.ADD_COLUMN else f" WHERE {quote(column.name)} IS NULL"
    rows = int(
        conn.exec_driver_sql(
            f"SELECT count(*) FROM {quote_table(conn.dialect, change.table)}{where}"
        ).scalar_one()
    )
    note = f"; {verb} {rows} rows of {change.table}.{column.name} with {label}" if rows else ""
    return dataclasses.replace(change, fill=sql, description=change.description + note)


def _fill_for(conn: Connection, column: Column[Any]) -> tuple[str, str, str] | None:
    """(SQL, verb, value for humans) that fills the column's NULLs, where the model says."""
    backfill = column.info.get("backfill")
    if backfill:
        return str(backfill), "backfill", str(backfill)
    default = column.default
    if column.server_default is not None or default is None or not default.is_scalar:
        return None  # a server default fills by itself; a callable cannot fill old rows
    value = getattr(default, "arg", None)
    try:
        sql = literal(value, column.type).compile(
            dialect=conn.dialect, compile_kwargs={"literal_binds": True}
        )
    except Exception:  # a value the dialect cannot write as a literal: refuse as before
        return None
    return str(sql), "fill", repr(value)


def _ordered(conn: Connection, changes: list[Change]) -> list[Change]:
    """Type changes first (a new table may refer to a widened key); indexes and constraints
    are dropped before the columns they cover; tables are dropped last, children before their
    parents, in an order that does not depend on the process."""
    drops = {c.table: c for c in changes if c.kind is ChangeKind.DROP_TABLE}
    types = [c for c in changes if c.kind is ChangeKind.DROP_ENUM_TYPE]  # after their users
    rest = sorted(
        (c for c in changes if c.kind not in (ChangeKind.DROP_TABLE, ChangeKind.DROP_ENUM_TYPE)),
        key=lambda c: _PHASE.get(c.kind, 1),
    )
    if not drops:
        return rest + types
    ordered = [t for t, _ in inspect(conn).get_sorted_table_and_fkc_names() if t in drops]
    ordered += sorted(set(drops) - set(ordered))
    return rest + [drops[t] for t in reversed(ordered)] + types


# A rename first (its table's other changes were planned before it), type changes next (a new
# table may refer to a widened key), and columns dropped after their indexes and constraints.
_PHASE: dict[ChangeKind, float] = {
    ChangeKind.ADD_ENUM_VALUE: -2,
    ChangeKind.RENAME_TABLE: -1,
    ChangeKind.ALTER_TYPE: 0,
    # A key changes once its new columns are NOT NULL, and before its old ones may hold NULL.
    ChangeKind.ALTER_PRIMARY_KEY: 1.5,
    ChangeKind.DROP_NOT_NULL: 1.6,
    ChangeKind.DROP_COLUMN: 2,
}


def _counted(conn: Connection, change: Change) -> Change:
    """The change with the number of rows (table) or non-NULL values (column) it concerns."""
    if change.kind in (ChangeKind.DROP_INDEX, ChangeKind.DROP_UNIQUE, ChangeKind.DROP_FK):
        what = change.description.removeprefix("drop ")
        return dataclasses.replace(change, description=f"{what} (not defined by the models)")
    if change.kind not in (ChangeKind.DROP_TABLE, ChangeKind.DROP_COLUMN):
        return change
    quote = conn.dialect.identifier_preparer.quote
    table = quote_table(conn.dialect, change.table)
    if change.kind is ChangeKind.DROP_TABLE:
        sql, unit = f"SELECT count(*) FROM {table}", "rows"
    else:
        assert change.column is not None
        col = quote(change.column)
        sql = f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL"
        unit = "non-NULL values"
    rows = int(conn.exec_driver_sql(sql).scalar_one())
    return dataclasses.replace(
        change, rows=rows, description=f"{change.description} ({rows} {unit})"
    )


def _needs_relaxing(change: Change) -> bool:
    """A kept column that is NOT NULL without a default would break the new code's inserts."""
    if change.kind is not ChangeKind.DROP_COLUMN:
        return False
    column = change.op.to_column()
    return not column.nullable and column.server_default is None and not column.primary_key


def _retire(change: Change) -> Change:
    return Change(
        ChangeKind.RETIRE_COLUMN,
        change.table,
        f"retire column {change.table}.{change.column}: drop NOT NULL so that inserts without it"
        " work; its data is kept",
        column=change.column,
        op=change.op,
    )


def _renames(changes: list[Change], metadata: MetaData) -> list[Change]:
    """Pair a drop and an add that a model marks with info={'renamed_from': ...} into a rename."""
    result = list(changes)
    for table in metadata.sorted_tables:
        old_table = table.info.get("renamed_from")
        if old_table:
            add = _find(result, ChangeKind.ADD_TABLE, table.name)
            drop = _find(result, ChangeKind.DROP_TABLE, old_table)
            if add is not None and drop is not None:
                result.remove(add)
                result[result.index(drop)] = Change(
                    ChangeKind.RENAME_TABLE,
                    table.name,
                    f"rename table {old_table} to {table.name}",
                    name=old_table,
                )
                # Its indexes and constraints are planned with the table under its old name.
                result = [
                    c for c in result if not (c.kind in _OF_NEW_TABLE and c.table == table.name)
                ]
        for column in table.columns:
            old = column.info.get("renamed_from")
            if not old:
                continue
            add = _find(result, ChangeKind.ADD_COLUMN, table.name, column.name)
            drop = _find(result, ChangeKind.DROP_COLUMN, table.name, old)
            if add is not None and drop is not None:
                result.remove(add)
                result[result.index(drop)] = Change(
                    ChangeKind.RENAME_COLUMN,
                    table.name,
                    f"rename column {table.name}.{old} to {column.name}",
                    column=column.name,
                    name=old,
                )
    return result


_OF_NEW_TABLE = (ChangeKind.ADD_INDEX, ChangeKind.ADD_UNIQUE, ChangeKind.ADD_FK)


def _find(changes: list[Change], kind: ChangeKind, table: str, column: str | None = None) -> Any:
    for change in changes:
        if (
            change.kind is kind
            and change.table == table
            and (column is None or change.column == column)
        ):
            return change
    return None


def _refuse_likely_renames(
    changes: list[Change], backend: Backend, modelled: set[str] | None
) -> None:
    """A column dropped and one of the same type added in one table, with no hint: ask.

    Only a column that the models in force defined can be being renamed now; one retired by an
    earlier run (or added by hand) is kept as it is and asks nothing.
    """

    def columns(kind: ChangeKind) -> list[Change]:
        # In name order, so that every process asks about the same pair.
        found = [c for c in changes if c.kind is kind]
        return sorted(found, key=lambda c: (c.table, str(c.column)))

    for drop in columns(ChangeKind.DROP_COLUMN):
        if modelled is not None and f"{drop.table}.{drop.column}" not in modelled:
            continue
        old_type = drop.op.to_column().type
        for add in columns(ChangeKind.ADD_COLUMN):
            if add.table == drop.table and backend.same_kind(old_type, add.op.column.type):
                raise RefusedChange(
                    f"migration refused, nothing changed: {drop.table}.{drop.column} is gone"
                    f" from the models and {drop.table}.{add.column} of the same type is new;"
                    f" if this is a rename, add info={{'renamed_from': '{drop.column}'}} to"
                    f" {add.column} so its data moves with it. If it is not, add"
                    f" {add.column} in one release and remove {drop.column} in the next"
                )
