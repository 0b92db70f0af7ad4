"""Partial indexes, whose WHERE Alembic's comparison leaves out (it compares an index's columns
and uniqueness): an index whose WHERE differs is dropped and created again from the models."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from alembic.operations import ops
from sqlalchemy import Column, Index, Table
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Connection, Dialect, Inspector
from sqlalchemy.schema import CreateIndex

from ..model.changes import Change, ChangeKind
from ..model.tablecopy import normal_sql as normal
from .probe import Spelling


def partial_index_changes(
    insp: Inspector,
    tables: Iterable[Table],
    changed: Collection[str],
    spelling: Spelling,
    option: str | None,
) -> Iterable[Change]:
    """DROP_INDEX and ADD_INDEX for each index of tables, not among changed (already
    recreated), whose WHERE differs from the database's on a database that has them."""
    if option is None:
        return  # no partial indexes on this database
    dialect = spelling.conn.dialect
    for table in tables:
        reflected = {
            str(ix["name"]): ix for ix in insp.get_indexes(table.name, schema=table.schema)
        }
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            found = reflected.get(str(index.name))
            if found is None or index.name in changed:
                continue
            model = index_where(dialect, option, index)
            database = _text((found.get("dialect_options") or {}).get(option))
            if normal(model) == normal(database):
                continue
            if (
                model
                and database
                and normal(spelling.where(table, str(index.name))) == normal(database)
            ):
                continue
            original = _as_found(table, found, option, database)
            yield from _recreate(table, index, original, database, model)


def expression_index_changes(
    conn: Connection,
    tables: Iterable[Table],
    changed: Collection[str],
    index_names: Callable[[Connection, str], set[str]],
) -> Iterable[Change]:
    """ADD_INDEX for each expression index of the models that the database lacks and that
    Alembic's comparison skipped (SQLite's reflection cannot see them). One that exists is
    left as it is, and one the models no longer have is never dropped for what is unseen."""
    for table in tables:
        expressions = [
            ix
            for ix in sorted(table.indexes, key=lambda i: str(i.name))
            if str(ix.name) not in changed
            and any(not isinstance(e, Column) for e in ix.expressions)
        ]
        present = index_names(conn, table.key) if expressions else set()
        for index in expressions:
            if str(index.name) not in present:
                yield Change(
                    ChangeKind.ADD_INDEX,
                    table.key,
                    f"create {'unique ' if index.unique else ''}index {index.name} on"
                    f" {table.key} ({', '.join(str(e) for e in index.expressions)})",
                    name=str(index.name),
                    op=ops.CreateIndexOp.from_index(index),
                )


def _text(where: object) -> str:
    return "" if where is None else str(where)  # SQLite reflects a TextClause


def index_where(dialect: Dialect, option: str | None, index: Index) -> str:
    """The model index's WHERE as the dialect writes it ('' for a full index, or where the
    database has no partial indexes: option is None)."""
    if option is None or index.dialect_kwargs.get(option) is None:
        return ""
    create = str(CreateIndex(index).compile(dialect=dialect))
    return create.split(" WHERE ", 1)[1] if " WHERE " in create else ""


def _as_found(model: Table, found: Any, option: str, where: str) -> ops.CreateIndexOp:
    """The index as the database has it (its WHERE as text): what undoes dropping it."""
    kw: dict[str, Any] = {option: sql_text(where)} if where else {}
    columns = [str(c) for c in found["column_names"]]
    unique = bool(found["unique"])
    name = str(found["name"])
    return ops.CreateIndexOp(name, model.name, columns, schema=model.schema, unique=unique, **kw)


def _recreate(
    model: Table, index: Index, original: ops.CreateIndexOp, before: str, after: str
) -> Iterable[Change]:
    table = model.key
    name = str(index.name)
    was = f" where {before}" if before else " (a full index)"
    now = f" where {after}" if after else " (a full index)"
    columns = tuple(c.name for c in index.columns)
    yield Change(
        ChangeKind.DROP_INDEX,
        table,
        f"drop index {name} on {table}{was}",
        name=name,
        op=ops.DropIndexOp(name, table_name=model.name, schema=model.schema, _reverse=original),
        columns=columns,
    )
    yield Change(
        ChangeKind.ADD_INDEX,
        table,
        f"create {'unique ' if index.unique else ''}index {name} on {table}"
        f" ({', '.join(columns)}){now}",
        name=name,
        op=ops.CreateIndexOp.from_index(index),
        where=after,
    )
