"""Model tables by name: copies that keep the names the models give their constraints and
indexes, and the named CHECKs a table declares.

`Table.to_metadata` rebuilds a column's `unique=True` and `index=True` in the new MetaData, whose
naming convention (usually none) then names them: a copy into a plain MetaData loses the names a
`MetaData(naming_convention=...)` gave, and with them the names the database reports.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import CheckConstraint, Index, MetaData, Table
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.sql.naming import conv


def copy_tables(source: MetaData, into: MetaData) -> None:
    """Copy every table of source into into, keeping each constraint's and index's name."""
    for table in source.sorted_tables:
        copy_table(table, into)


def copy_table(table: Table, into: MetaData, name: str | None = None) -> Table:
    """Copy one table into into (under another name if given), keeping each constraint's and
    index's name."""
    copy = table.to_metadata(into, name=name)
    items: list[Any] = [*table.constraints, *table.indexes]
    originals = {_signature(c): c for c in items}
    copied: list[Any] = [*copy.constraints, *copy.indexes]
    for item in copied:
        original = originals.get(_signature(item))
        if original is None:
            continue
        if isinstance(original.name, str) and item.name != original.name:
            item.name = conv(original.name)
        # to_metadata copies constraints from a set; CREATE TABLE lists them in creation
        # order: the models' order, so that every process renders the same SQL.
        item._creation_order = getattr(original, "_creation_order", 0)
    return copy


def _signature(item: Any) -> tuple[str, tuple[str, ...], str]:
    columns = item.expressions if isinstance(item, Index) else item.columns
    # A CHECK written as SQL text has no columns: its text tells it apart.
    text = check_text(item) if isinstance(item, CheckConstraint) else ""
    return type(item).__name__, tuple(str(getattr(c, "name", c)) for c in columns), text


def unnamed_checks(table: Table) -> list[CheckConstraint]:
    """The CHECKs a model table declares without a name (and no naming convention gives one):
    recognised by their text, as the database spells it."""
    return [
        con
        for con in table.constraints
        if isinstance(con, CheckConstraint)
        and not getattr(con, "_type_bound", False)
        and not isinstance(con.name, str)
    ]


def type_checks(table: Table) -> list[CheckConstraint]:
    """The CHECKs SQLAlchemy emits for a Boolean or Enum(create_constraint=True) column."""
    return [
        con
        for con in table.constraints
        if isinstance(con, CheckConstraint) and getattr(con, "_type_bound", False)
    ]


def check_text(con: CheckConstraint) -> str:
    """A CHECK's condition as SQL, as a CREATE TABLE writes it (bare column names, literal
    values), without a dialect's quoting."""
    dialect = DefaultDialect()
    compiler = dialect.statement_compiler(dialect, None)
    return str(compiler.process(con.sqltext, include_table=False, literal_binds=True))


def normal_sql(sql: str) -> str:
    """An expression without the quotes, parentheses, casts and spaces databases add."""
    return re.sub(r"[\s()`\"\[\]]|::[a-z_ ]+", "", sql.lower())


def check_signature(table: str, sql: str) -> str:
    """How an unnamed CHECK is recognised across runs: 'table:check:<normal text>'."""
    return f"{table}:check:{normal_sql(sql)}"


def named_checks(table: Table) -> dict[str, CheckConstraint]:
    """The named CHECKs a model table declares itself (not those a Boolean or Enum type emits),
    by name: the ones compared with the database and recorded as ours."""
    return {
        str(con.name): con
        for con in table.constraints
        if isinstance(con, CheckConstraint)
        and not getattr(con, "_type_bound", False)
        and isinstance(con.name, str)
    }
