"""How the database itself spells what a model table declares: MariaDB writes lower() as
lcase(), PostgreSQL adds casts and parentheses. Asked only when a plain comparison of the texts
differs, so that an equal definition never shows up as a change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import Column, Index, MetaData, Table, inspect
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class _Spelled:
    computed: dict[str, str]  # column -> its generation expression
    where: dict[str, str]  # model index name -> its partial WHERE


@dataclass
class Spelling:
    """A temporary copy of a model table, created on a connection of its own (the plan's may be
    read-only), reflected, and dropped: its generated columns' and partial indexes' text."""

    conn: Connection
    asks: bool  # whether the database rewrites what it stores (else the texts compare as they are)
    where_option: str | None  # the Index keyword of a partial index here, if any
    _seen: dict[str, _Spelled] = field(default_factory=dict)

    def computed(self, table: Table, column: str) -> str:
        return self._spelled(table).computed.get(column, "")

    def where(self, table: Table, index: str) -> str:
        return self._spelled(table).where.get(index, "")

    def _spelled(self, table: Table) -> _Spelled:
        if not self.asks:
            return _Spelled({}, {})
        if table.name not in self._seen:
            self._seen[table.name] = self._probe(table)
        return self._seen[table.name]

    def _probe(self, table: Table) -> _Spelled:
        option = self.where_option
        name = f"_om_probe_{uuid.uuid4().hex[:12]}"
        probe = Table(
            name,
            MetaData(),
            *(
                Column(c.name, c.type, *([c.computed._copy()] if c.computed else []))
                for c in table.c
            ),
            prefixes=["TEMPORARY"],
        )
        names: dict[str, str] = {}
        for number, index in enumerate(sorted(table.indexes, key=lambda i: str(i.name))):
            if all(isinstance(e, Column) for e in index.expressions):  # no expression indexes
                columns = [probe.c[c.name] for c in index.columns]
                names[f"{name}_{number}"] = str(index.name)
                Index(f"{name}_{number}", *columns, **index.dialect_kwargs)
        with self.conn.engine.connect() as other:
            other = other.execution_options(isolation_level="AUTOCOMMIT")
            probe.create(other)
            try:
                insp = inspect(other)
                computed = {
                    c["name"]: str(c["computed"]["sqltext"])
                    for c in insp.get_columns(name)
                    if c.get("computed")
                }
                where = {
                    names[str(ix["name"])]: str(ix.get("dialect_options", {}).get(option, ""))
                    for ix in insp.get_indexes(name)
                    if ix["name"] in names and option
                }
            finally:
                probe.drop(other)
        return _Spelled(computed, where)


def normal(sql: str) -> str:
    """An expression without the quotes, parentheses, casts and spaces databases add."""
    import re

    return re.sub(r"[\s()`\"\[\]]|::[a-z_ ]+", "", sql.lower())
