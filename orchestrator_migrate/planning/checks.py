"""Pre-checks: changes whose success depends on the data are checked before anything changes.

A check reads the database as it is before the plan runs, so a column the plan adds or renames is
read as what the plan will put there: its fill or server default (else NULL), or its old name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Enum, Integer, String, cast, func, inspect, literal_column, select
from sqlalchemy import table as table_
from sqlalchemy.engine import Connection

from ..model.changes import KINDS, Change, ChangeKind, Precheck
from ..model.errors import Refusal
from ..model.names import quote_table, split_key, sql_literal
from ..model.plan import Plan

SAMPLE_KEYS = 5


@dataclass(frozen=True)
class _Reader:
    """How a check reads a column of the database the plan starts from."""

    conn: Connection
    sources: dict[tuple[str, str], str]

    def quote(self, name: str) -> str:
        return str(self.conn.dialect.identifier_preparer.quote(name))

    def table(self, key: str) -> str:
        return quote_table(self.conn.dialect, key)

    def column(self, table: str, column: str) -> str:
        """SQL for the value the column will hold before the change runs."""
        return self.sources.get((table, column), self.quote(column))

    def scalar(self, sql: str) -> int:
        return int(self.conn.exec_driver_sql(sql).scalar_one())


def refusals(conn: Connection, plan: Plan) -> list[Refusal]:
    """Why the plan cannot run on this data; empty when every change fits."""
    reader = _Reader(conn, _sources(conn, plan))
    problems: list[Refusal] = []
    created = {c.table for c in plan.changes if c.kind is ChangeKind.ADD_TABLE}
    for change in plan.changes:
        if change.table in created:
            continue  # a new table has no rows yet
        precheck = KINDS[change.kind].precheck
        problem = _CHECKS[precheck](reader, change) if precheck is not None else None
        if problem is not None:
            problems.append(problem)
    return problems


def _sources(conn: Connection, plan: Plan) -> dict[tuple[str, str], str]:
    """Columns the plan adds (read as their initial value) or renames (read by the old name)."""
    quote = conn.dialect.identifier_preparer.quote
    found: dict[tuple[str, str], str] = {}
    for change in plan.changes:
        if change.kind is ChangeKind.ADD_COLUMN and change.column:
            found[(change.table, change.column)] = f"({initial_value(change)})"
        elif change.kind is ChangeKind.RENAME_COLUMN and change.column and change.name:
            found[(change.table, change.column)] = quote(change.name)
    return found


def initial_value(change: Change) -> str:
    """SQL for what an added column holds in the rows that exist: fill, server default or NULL."""
    if change.fill is not None:
        return change.fill
    arg = getattr(change.op.column.server_default, "arg", None)
    if isinstance(arg, str):  # SQLAlchemy writes a plain string default as a quoted literal
        return sql_literal(arg)
    text = getattr(arg, "text", None)
    return text if isinstance(text, str) else "NULL"


def _rows_that_break(
    reader: _Reader, change: Change, where: str, why: Callable[[int], str], advice: str
) -> Refusal | None:
    """A refusal naming the rows of change.table that match where: why(count), a few of their
    primary keys, then the advice; None when no row matches."""
    table = change.table
    count = reader.scalar(f"SELECT count(*) FROM {reader.table(table)} WHERE {where}")
    if not count:
        return None
    schema, name = split_key(table)
    pk = inspect(reader.conn).get_pk_constraint(name, schema).get("constrained_columns") or []
    keys: list[object] = []
    if pk:
        cols = ", ".join(reader.quote(c) for c in pk)
        rows = reader.conn.exec_driver_sql(
            f"SELECT {cols} FROM {reader.table(table)} WHERE {where} ORDER BY {cols}"
            f" LIMIT {SAMPLE_KEYS}"
        ).all()
        keys = [r[0] if len(r) == 1 else tuple(r) for r in rows]
    shown = f" (e.g. {'/'.join(pk)} = {', '.join(str(k) for k in keys)})" if keys else ""
    return Refusal(table, change.column, count, keys, f"{why(count)}{shown}; {advice}")


def _not_null_column_without_default(reader: _Reader, change: Change) -> Refusal | None:
    column = change.op.column
    if column.nullable or column.server_default is not None or change.fill is not None:
        return None
    rows = reader.scalar(f"SELECT count(*) FROM {reader.table(change.table)}")
    if not rows:
        return None
    callable_default = column.default is not None and not getattr(column.default, "is_scalar", 0)
    why = (
        "its Python default is computed per row, so it cannot fill the existing rows; "
        if callable_default
        else ""
    )
    return Refusal(
        change.table,
        column.name,
        rows,
        [],
        f"cannot add NOT NULL column {change.table}.{column.name} without a server default:"
        f" table {change.table} has {rows} rows; {why}give it a server_default, a scalar"
        " default=, or info={'backfill': <SQL expression>}, or make it nullable",
    )


def _nulls(reader: _Reader, change: Change) -> Refusal | None:
    if change.fill is not None or not change.column:
        return None  # the fill answers for the NULLs
    return _rows_that_break(
        reader,
        change,
        f"{reader.column(change.table, change.column)} IS NULL",
        lambda count: (
            f"cannot set NOT NULL on {change.table}.{change.column}: {count} rows hold NULL"
        ),
        "fill them first or add info={'backfill': <SQL expression>} to the column",
    )


def _duplicates(
    reader: _Reader, table: str, columns: Sequence[str], where: str = ""
) -> Refusal | None:
    values = ", ".join(f"{reader.column(table, c)} AS c{i}" for i, c in enumerate(columns))
    names = ", ".join(f"c{i}" for i in range(len(columns)))
    not_null = " AND ".join(f"c{i} IS NOT NULL" for i in range(len(columns)))
    groups = reader.conn.exec_driver_sql(
        f"SELECT {names}, count(*) FROM (SELECT {values} FROM {reader.table(table)}"
        f"{f' WHERE {where}' if where else ''}) s"
        f" WHERE {not_null} GROUP BY {names} HAVING count(*) > 1 ORDER BY {names}"
    ).all()
    if not groups:
        return None
    rows = sum(int(g[-1]) for g in groups)
    sample = [g[0] if len(g) == 2 else tuple(g[:-1]) for g in groups[:SAMPLE_KEYS]]
    return Refusal(
        table,
        ", ".join(columns),
        rows,
        sample,
        f"cannot make {table} ({', '.join(columns)}) unique: {len(groups)} values are shared"
        f" by {rows} rows (e.g. {', '.join(repr(v) for v in sample)}); remove the duplicates"
        " first",
    )


def _unique(reader: _Reader, change: Change) -> Refusal | None:
    """A UNIQUE constraint, or a unique index, over rows that share a value."""
    if change.kind is ChangeKind.ADD_INDEX and not change.op.unique:
        return None
    columns = [getattr(c, "name", None) or str(c) for c in change.op.columns]
    return _duplicates(reader, change.table, columns, change.where)  # a partial index: its rows


def _primary_key(reader: _Reader, change: Change) -> Refusal | None:
    """A primary key over NULLs (a key column cannot hold one) or rows that share a key."""
    columns = list(change.op.columns)
    for column in columns:
        key_column = dataclasses.replace(change, column=column)

        def why(count: int, change: Change = key_column) -> str:
            return (
                f"cannot make {change.table}.{change.column} part of the primary key: {count}"
                " rows hold NULL"
            )

        where = f"{reader.column(change.table, column)} IS NULL"
        nulls = _rows_that_break(reader, key_column, where, why, "fill them first")
        if nulls is not None:
            return nulls
    return _duplicates(reader, change.table, columns)


def _enum_rows(reader: _Reader, change: Change) -> Refusal | None:
    """Enum values removed while rows hold them, in every column of the type."""
    values = list(change.values)
    total, where = 0, []
    for table, column, _default in change.op["columns"]:
        held = cast(literal_column(reader.quote(column)), String).in_(values)
        count = reader.conn.execute(
            select(func.count()).select_from(table_(table)).where(held)
        ).scalar_one()
        if count:
            total += int(count)
            where.append(f"{table}.{column}")
    if not total:
        return None
    shown = ", ".join(repr(v) for v in values)
    return Refusal(
        change.table,
        where[0].split(".", 1)[1],
        total,
        [],
        f"cannot remove {shown} from enum type {change.name}: {total} rows hold"
        f" {'it' if len(values) == 1 else 'them'} ({', '.join(where)}); change them first",
    )


def _orphans(reader: _Reader, change: Change) -> Refusal | None:
    op = change.op
    values = [reader.column(change.table, c) for c in op.local_cols]
    if "(NULL)" in values or not reader.conn.dialect.has_table(
        reader.conn, op.referent_table, schema=op.kw.get("referent_schema")
    ):
        return None  # a column the plan adds without a value references nothing yet
    # Added columns are read as their initial value; existing ones are qualified with t.
    local = [v if v.startswith("(") else f"t.{v}" for v in values]
    remote = [reader.quote(c) for c in op.remote_cols]
    joined = " AND ".join(f"r.{r} = {lc}" for lc, r in zip(local, remote, strict=True))
    present = " AND ".join(f"{lc} IS NOT NULL" for lc in local)
    count = reader.scalar(
        f"SELECT count(*) FROM {reader.table(change.table)} t WHERE {present} AND NOT EXISTS"
        f" (SELECT 1 FROM {reader.quote(op.referent_table)} r WHERE {joined})"
    )
    if not count:
        return None
    return Refusal(
        change.table,
        ", ".join(op.local_cols),
        count,
        [],
        f"cannot add foreign key {change.table} ({', '.join(op.local_cols)}) ->"
        f" {op.referent_table}: {count} rows reference missing {op.referent_table} rows;"
        " fix or remove them first",
    )


def _fits(reader: _Reader, change: Change) -> Refusal | None:
    """A narrower VARCHAR or integer over values that do not fit it: counted, refused."""
    from ..detect.types import integer_bits

    old, new = change.op.existing_type, change.op.modify_type
    if change.widening or not change.column:
        return None
    value = reader.column(change.table, change.column)
    if isinstance(new, Enum) and new.enums:  # a value the new ENUM lacks (MariaDB's MODIFY)
        allowed = ", ".join(sql_literal(v) for v in new.enums)
        where = f"{value} IS NOT NULL AND {value} NOT IN ({allowed})"
        gone = [v for v in getattr(old, "enums", ()) if v not in new.enums]
        shown = ", ".join(repr(v) for v in gone) or "values"
        return _rows_that_break(
            reader,
            change,
            where,
            lambda count: (
                f"cannot remove {shown} from {change.table}.{change.column}: {count} rows hold"
                f" {'it' if len(gone) == 1 else 'them'}"
            ),
            "change them first or keep the value",
        )
    if isinstance(old, String) and isinstance(new, String) and new.length is not None:
        length = func.char_length(literal_column(value)).compile(dialect=reader.conn.dialect)
        where, what = f"{length} > {int(new.length)}", f"are longer than {new.length} characters"
    elif isinstance(old, Integer) and isinstance(new, Integer):
        top = 2 ** (integer_bits(new) - 1)
        where, what = f"({value} >= {top} OR {value} < {-top})", f"do not fit {new}"
    else:
        return None  # the database converts, or the plan fails and is rolled back
    return _rows_that_break(
        reader,
        change,
        where,
        lambda count: (
            f"cannot change {change.table}.{change.column} to {new}: {count} values {what}"
        ),
        "shorten them first or keep the wider type",
    )


def _violations(reader: _Reader, change: Change) -> Refusal | None:
    """A CHECK over rows that violate it (NULL passes a CHECK, as in the database)."""
    condition = change.op.condition
    if not isinstance(condition, str):
        dialect = reader.conn.dialect
        condition = str(condition.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    def why(count: int) -> str:
        named = f" {change.name}" if change.name else ""
        return f"cannot add check{named} on {change.table}: {count} rows violate ({condition})"

    try:
        with reader.conn.begin_nested():
            return _rows_that_break(reader, change, f"NOT ({condition})", why, "fix them first")
    except Exception:  # it reads a column the plan adds: the database checks it when adding
        return None


_CHECKS: dict[Precheck, Callable[[_Reader, Change], Refusal | None]] = {
    Precheck.NEW_NOT_NULL: _not_null_column_without_default,
    Precheck.NULLS: _nulls,
    Precheck.DUPLICATES: _unique,
    Precheck.ORPHANS: _orphans,
    Precheck.FITS: _fits,
    Precheck.CHECK: _violations,
    Precheck.PRIMARY_KEY: _primary_key,
    Precheck.ENUM_ROWS: _enum_rows,
}
