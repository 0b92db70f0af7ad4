"""Model histories of real-shaped projects, release by release, with the rows each release writes.

A history is a sequence of versions. Each version builds a fresh MetaData (its own declarative
registry, so versions never clash) and has a seed function that inserts a few rows into every table
of that version through that MetaData, with foreign keys pointing at real rows. The Seeder records
what every inserted row must hold, so that a test can check the rows after each later migration.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


class _Any:
    """A value the database generates (a server-side now(), say): matches whatever is there."""

    def __repr__(self) -> str:
        return "<any>"


ANY: Any = _Any()


def utcnow() -> datetime:
    """Naive UTC now without microseconds (MariaDB's DATETIME keeps whole seconds)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@dataclass(frozen=True)
class KnownBug:
    """A package bug this release meets on one kind of database: the step is an expected failure
    as long as every problem it reports contains `shows`; once it passes, the test fails until the
    entry is removed."""

    reason: str
    shows: str


@dataclass(frozen=True)
class Version:
    """One release: its models, the rows it writes and the package bugs it meets, by the kind of
    database ("sqlite", "postgresql", "mysql")."""

    name: str
    models: Callable[[], sa.MetaData]
    seed: Callable[[Seeder], None]
    known_bugs: Mapping[str, KnownBug] = field(default_factory=dict)


@dataclass(frozen=True)
class History:
    """A project's releases, oldest first."""

    name: str
    versions: tuple[Version, ...]


def server_default_value(column: sa.Column[Any]) -> Any:
    """The Python value a column's server default gives a row; ANY when it is computed."""
    default = column.server_default
    if default is None:
        return None
    arg = getattr(default, "arg", None)
    if isinstance(arg, sa.sql.elements.True_):
        return True
    if isinstance(arg, sa.sql.elements.False_):
        return False
    if isinstance(arg, sa.sql.elements.TextClause):
        arg = arg.text
    if not isinstance(arg, str):
        return ANY  # func.now() and the like
    text = arg.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    type_ = column.type
    try:
        if isinstance(type_, sa.Boolean):
            return text.lower() in ("1", "true", "t")
        if isinstance(type_, sa.Integer):
            return int(text)
        if isinstance(type_, sa.Numeric):
            return decimal.Decimal(text)
    except (ValueError, decimal.InvalidOperation):
        return ANY
    if isinstance(type_, sa.String):
        return text
    return ANY


def python_default_value(column: sa.Column[Any]) -> Any:
    """The scalar Python default= of a column; ANY for a callable; None without one."""
    default = column.default
    if default is None:
        return None
    if getattr(default, "is_scalar", False):
        return default.arg  # type: ignore[union-attr]
    return ANY


def existing_row_value(column: sa.Column[Any]) -> Any:
    """What a column added by a migration must hold in the rows that were already there.

    The server default when there is one; else, for a NOT NULL column, the scalar Python default
    (`default=False` fills the existing rows with False); else NULL. A nullable column with only
    a Python default may hold NULL or the default there: either is accepted.
    """
    if column.server_default is not None:
        return server_default_value(column)
    if column.default is None:
        return None
    return ANY if column.nullable else python_default_value(column)


RowRecorder = Callable[[str, tuple[Any, ...], dict[str, Any]], None]


class Seeder:
    """Inserts rows through a version's MetaData and reports what each row must hold."""

    def __init__(self, conn: Connection, metadata: sa.MetaData, tag: str, on_row: RowRecorder):
        self.conn = conn
        self.metadata = metadata
        self.tag = tag  # unique per batch, for values under UNIQUE constraints
        self._on_row = on_row
        self._counter = 0

    def has(self, table: str, column: str | None = None) -> bool:
        t = self.metadata.tables.get(table)
        return t is not None and (column is None or column in t.c)

    def seq(self) -> int:
        """A number unique within this batch."""
        self._counter += 1
        return self._counter

    def add(self, table: str, **values: Any) -> Any:
        """Insert one row; returns its primary key (a scalar for one column, else a tuple)."""
        t = self.metadata.tables[table]
        try:
            result = self.conn.execute(t.insert().values(**values))
        except Exception as exc:
            raise AssertionError(
                f"inserting a row through the models into {table} failed: {values!r}: {exc}"
            ) from exc
        pk_names = [c.name for c in t.primary_key]
        pk = tuple(result.inserted_primary_key or ())
        params = result.last_inserted_params()  # with the Python defaults it evaluated
        row: dict[str, Any] = {}
        for column in t.columns:
            if column.key in values:
                row[column.name] = values[column.key]
            elif column.name in pk_names and pk:
                row[column.name] = pk[pk_names.index(column.name)]
            elif column.key in params and column.default is not None:
                row[column.name] = params[column.key]
            elif column.server_default is not None:
                row[column.name] = server_default_value(column)
            else:
                row[column.name] = None
        key = tuple(row[name] for name in pk_names)
        self._on_row(table, key, row)
        return key[0] if len(key) == 1 else key
