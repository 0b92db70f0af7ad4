"""Pre-checks: changes whose success depends on the data are checked before anything changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from .plan import Change, ChangeKind, Plan

SAMPLE_KEYS = 5


def refusals(conn: Connection, plan: Plan, metadata: MetaData) -> list[str]:
    """Why the plan cannot run on this data; empty when every change fits."""
    quote = conn.dialect.identifier_preparer.quote
    problems: list[str] = []
    for change in plan.changes:
        if _backfilled(change, metadata):
            continue  # the user answered for the NULLs with info={"backfill": ...}
        check = _CHECKS.get(change.kind)
        if check is not None:
            problem = check(conn, change, quote)
            if problem:
                problems.append(problem)
    return problems


Quote = Callable[[str], str]


def _backfilled(change: Change, metadata: MetaData) -> bool:
    if change.kind not in (ChangeKind.SET_NOT_NULL, ChangeKind.ADD_COLUMN) or not change.column:
        return False
    table = metadata.tables.get(change.table)
    column = table.c.get(change.column) if table is not None else None
    return bool(column is not None and column.info.get("backfill"))


def _keys(conn: Connection, table: str, where: str, quote: Quote) -> str:
    pk = inspect(conn).get_pk_constraint(table).get("constrained_columns") or []
    if not pk:
        return ""
    cols = ", ".join(quote(c) for c in pk)
    rows = conn.exec_driver_sql(
        f"SELECT {cols} FROM {quote(table)} WHERE {where} ORDER BY {cols} LIMIT {SAMPLE_KEYS}"
    ).all()
    shown = ", ".join(str(r[0]) if len(r) == 1 else str(tuple(r)) for r in rows)
    return f" (e.g. {'/'.join(pk)} = {shown})"


def _not_null_column_without_default(conn: Connection, change: Change, quote: Quote) -> str | None:
    column = change.op.column
    if column.nullable or column.server_default is not None:
        return None
    rows = conn.exec_driver_sql(f"SELECT count(*) FROM {quote(change.table)}").scalar_one()
    if not rows:
        return None
    return (
        f"cannot add NOT NULL column {change.table}.{column.name} without a server default:"
        f" table {change.table} has {rows} rows; give it a server_default or make it nullable"
    )


def _nulls(conn: Connection, change: Change, quote: Quote) -> str | None:
    assert change.column is not None
    where = f"{quote(change.column)} IS NULL"
    count = conn.exec_driver_sql(
        f"SELECT count(*) FROM {quote(change.table)} WHERE {where}"
    ).scalar_one()
    if not count:
        return None
    return (
        f"cannot set NOT NULL on {change.table}.{change.column}: {count} rows hold NULL"
        f"{_keys(conn, change.table, where, quote)}; fill them first or add"
        " info={'backfill': <SQL expression>} to the column"
    )


def _duplicates(conn: Connection, table: str, columns: Sequence[str], quote: Quote) -> str | None:
    cols = ", ".join(quote(c) for c in columns)
    not_null = " AND ".join(f"{quote(c)} IS NOT NULL" for c in columns)
    groups = conn.exec_driver_sql(
        f"SELECT {cols}, count(*) FROM {quote(table)} WHERE {not_null}"
        f" GROUP BY {cols} HAVING count(*) > 1"
    ).all()
    if not groups:
        return None
    rows = sum(int(g[-1]) for g in groups)
    sample = ", ".join(repr(g[0] if len(g) == 2 else tuple(g[:-1])) for g in groups[:SAMPLE_KEYS])
    return (
        f"cannot make {table} ({', '.join(columns)}) unique: {len(groups)} values are shared"
        f" by {rows} rows (e.g. {sample}); remove the duplicates first"
    )


def _unique(conn: Connection, change: Change, quote: Quote) -> str | None:
    return _duplicates(conn, change.table, list(change.op.columns), quote)


def _unique_index(conn: Connection, change: Change, quote: Quote) -> str | None:
    if not change.op.unique:
        return None
    columns = [getattr(c, "name", None) or str(c) for c in change.op.columns]
    return _duplicates(conn, change.table, columns, quote)


def _orphans(conn: Connection, change: Change, quote: Quote) -> str | None:
    op = change.op
    if not conn.dialect.has_table(conn, op.referent_table):
        return None
    local = [quote(c) for c in op.local_cols]
    remote = [quote(c) for c in op.remote_cols]
    joined = " AND ".join(f"r.{r} = t.{lc}" for lc, r in zip(local, remote, strict=True))
    present = " AND ".join(f"t.{lc} IS NOT NULL" for lc in local)
    where = f"{present} AND NOT EXISTS (SELECT 1 FROM {quote(op.referent_table)} r WHERE {joined})"
    count = conn.exec_driver_sql(
        f"SELECT count(*) FROM {quote(change.table)} t WHERE {where}"
    ).scalar_one()
    if not count:
        return None
    return (
        f"cannot add foreign key {change.table} ({', '.join(op.local_cols)}) ->"
        f" {op.referent_table}: {count} rows reference missing {op.referent_table} rows;"
        " fix or remove them first"
    )


_CHECKS: dict[ChangeKind, Callable[[Connection, Change, Quote], str | None]] = {
    ChangeKind.ADD_COLUMN: _not_null_column_without_default,
    ChangeKind.SET_NOT_NULL: _nulls,
    ChangeKind.ADD_UNIQUE: _unique,
    ChangeKind.ADD_INDEX: _unique_index,
    ChangeKind.ADD_FK: _orphans,
}
