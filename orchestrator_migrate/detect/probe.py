"""How the database itself spells what a model table declares: MariaDB writes lower() as
lcase(), PostgreSQL adds casts and parentheses. Asked only when a plain comparison of the texts
differs, so that an equal definition never shows up as a change."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from loguru import logger
from sqlalchemy import CheckConstraint, Column, Index, MetaData, Table, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable, DropTable

from ..model.tablecopy import check_text, named_checks, unnamed_checks
from ..model.tablecopy import normal_sql as normal


@dataclass(frozen=True)
class _Spelled:
    computed: dict[str, str]  # column -> its generation expression
    where: dict[str, str]  # model index name -> its partial WHERE
    checks: dict[str, str]  # the normal text of a model CHECK -> the normal text spelled here
    # Those a Boolean or Enum type emits, by name, spelled here.
    type_checks: dict[str, str] = field(default_factory=dict)


@dataclass
class Spelling:
    """A temporary copy of a model table, created on a connection of its own (the plan's may be
    read-only), reflected, and dropped: the text of its generated columns, partial indexes and
    CHECKs as the database stores it."""

    conn: Connection
    scratch: Callable[[Connection], AbstractContextManager[Connection]]
    asks: bool  # whether the database rewrites what it stores (else the texts compare as they are)
    where_option: str | None  # the Index keyword of a partial index here, if any
    _seen: dict[str, _Spelled] = field(default_factory=dict)

    def computed(self, table: Table, column: str) -> str:
        return self._spelled(table).computed.get(column, "")

    def where(self, table: Table, index: str) -> str:
        return self._spelled(table).where.get(index, "")

    def check(self, table: Table, con: CheckConstraint) -> str:
        """The normal text of a model CHECK as the database spells it ('' if not asked)."""
        return self._spelled(table).checks.get(normal(check_text(con)), "")

    def type_checks(self, table: Table) -> frozenset[str]:
        """The normal texts of the CHECKs the table's Boolean and Enum types emit, as spelled
        by the database."""
        return frozenset(self._spelled(table).type_checks.values())

    def type_check(self, table: Table, name: str) -> str:
        """The normal text of the CHECK named name that a type emits, spelled here."""
        return self._spelled(table).type_checks.get(name, "")

    def _spelled(self, table: Table) -> _Spelled:
        if not self.asks:
            return _Spelled({}, {}, {})
        if table.key not in self._seen:
            self._seen[table.key] = self._probe(table)
        return self._seen[table.key]

    def _probe(self, table: Table) -> _Spelled:
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
        ours = [*unnamed_checks(table), *named_checks(table).values()]
        checks = {f"{name}_c{n}": con for n, con in enumerate(ours)}
        indexes: dict[str, str] = {}
        for number, index in enumerate(sorted(table.indexes, key=lambda i: str(i.name))):
            if all(isinstance(e, Column) for e in index.expressions):  # no expression indexes
                columns = [probe.c[c.name] for c in index.columns]
                indexes[f"{name}_{number}"] = str(index.name)
                Index(f"{name}_{number}", *columns, **index.dialect_kwargs)
        try:
            return self._reflect(probe, checks, indexes)
        except SQLAlchemyError as exc:  # a type the plan has yet to create: compare as written
            logger.debug("Could not ask the database how it spells {}: {}", table.name, exc)
            return _Spelled({}, {}, {})

    def _reflect(
        self, probe: Table, checks: dict[str, CheckConstraint], indexes: dict[str, str]
    ) -> _Spelled:
        option, name = self.where_option, probe.name
        with self.scratch(self.conn) as other:
            # The DDL itself, without the events that would create or drop a native enum type.
            other.execute(CreateTable(probe))
            try:
                for index in probe.indexes:
                    other.execute(CreateIndex(index))
                for check_name, con in checks.items():
                    _try_check(other, probe, check_name, con)
                insp = inspect(other)
                computed = {
                    c["name"]: str(c["computed"]["sqltext"])
                    for c in insp.get_columns(name)
                    if c.get("computed")
                }
                where = {
                    indexes[str(ix["name"])]: str(ix.get("dialect_options", {}).get(option, ""))
                    for ix in insp.get_indexes(name)
                    if ix["name"] in indexes and option
                }
                reflected = insp.get_check_constraints(name)
                spelled = {
                    normal(check_text(checks[str(ck["name"])])): normal(str(ck["sqltext"]))
                    for ck in reflected
                    if ck.get("name") in checks
                }
                typed = {
                    str(ck.get("name")): normal(str(ck["sqltext"]))
                    for ck in reflected
                    if ck.get("name") not in checks
                }
            finally:
                other.execute(DropTable(probe))
        return _Spelled(computed, where, spelled, typed)


def _try_check(conn: Connection, probe: Table, name: str, con: CheckConstraint) -> None:
    """Add one of the models' CHECKs to the probe, as text (the model's own expression would
    attach the copy to the model's table); one the database cannot take yet (it names an enum
    value the plan adds) is left out and compared as written."""
    check = CheckConstraint(text(check_text(con)), name=name)
    probe.append_constraint(check)
    try:
        with conn.begin_nested():
            conn.execute(AddConstraint(check))
    except SQLAlchemyError as exc:
        logger.debug("The database cannot take CHECK {} yet: {}", check_text(con), exc)
