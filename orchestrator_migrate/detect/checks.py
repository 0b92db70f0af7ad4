"""CHECK constraints, which Alembic's comparison leaves out. A named CHECK is compared by name;
an unnamed one by its text, as the database spells it (each database names it its own way:
PostgreSQL `t_col_check`, MariaDB `CONSTRAINT_1`, SQLite none). The CHECKs SQLAlchemy emits for a
Boolean or Enum type are recognised as the type's and never dropped."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from alembic.operations import ops
from sqlalchemy import Table
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Inspector

from ..model.changes import Change, ChangeKind
from ..model.tablecopy import (
    check_signature,
    check_text,
    named_checks,
    type_checks,
    unnamed_checks,
)
from ..model.tablecopy import normal_sql as normal
from .probe import Spelling


def check_changes(insp: Inspector, tables: Iterable[Table], spelling: Spelling) -> Iterable[Change]:
    """ADD_CHECK for a CHECK the database lacks, DROP_CHECK for one it has and the models do not
    (the planner keeps it unless the models once made it), ALTER_CHECK for a changed one."""
    for table in tables:
        reflected: Any = insp.get_check_constraints(table.name, schema=table.schema)
        yield from _table_checks(table, list(reflected), spelling)


def _table_checks(table: Table, reflected: list[Any], spelling: Spelling) -> Iterable[Change]:
    named = named_checks(table)
    typed = {str(c.name): c for c in type_checks(table) if isinstance(c.name, str)}
    present = {str(c["name"]): str(c["sqltext"]) for c in reflected if c.get("name")}
    # By name: a named CHECK the database lacks is added; one (an Enum's own too) whose
    # condition differs is replaced. A type's CHECK is never added on its own.
    for name, con in [*named.items(), *typed.items()]:
        if name not in present:
            if name in named:
                yield _added(table, name, con)
        elif not _spellings(table, con, spelling) & {normal(present[name])}:
            yield _altered(table, name, con, present[name])
    # By text: the others.
    others = [c for c in reflected if c.get("name") not in named and c.get("name") not in typed]
    found = {normal(str(c["sqltext"])) for c in others}
    unnamed = unnamed_checks(table)
    for con in unnamed:
        if not _spellings(table, con, spelling) & found:
            yield _added(table, None, con)
    modelled = {
        s for con in [*unnamed, *type_checks(table)] for s in _spellings(table, con, spelling)
    }
    modelled |= spelling.type_checks(table)
    for check in sorted(others, key=lambda c: (str(c.get("name")), str(c["sqltext"]))):
        text, name = str(check["sqltext"]), check.get("name")
        if normal(text) in modelled:
            continue
        yield Change(
            ChangeKind.DROP_CHECK,
            table.key,
            f"drop check {name or ''} on {table.key} ({text})".replace("  ", " "),
            name=name,
            op=ops.DropConstraintOp(
                name,
                table.name,
                type_="check",
                schema=table.schema,
                _reverse=ops.CreateCheckConstraintOp(name, table.name, text, schema=table.schema),
            ),
            owned_as=check_signature(table.key, text),
        )


def _added(table: Table, name: str | None, con: Any) -> Change:
    """A CHECK the database lacks: added, its violating rows counted first."""
    label = f" {name}" if name else ""
    return Change(
        ChangeKind.ADD_CHECK,
        table.key,
        f"add check{label} on {table.key} ({check_text(con)})",
        name=name,
        op=_create(table, name, con),
    )


def _create(table: Table, name: str | None, con: Any) -> ops.CreateCheckConstraintOp:
    """The op that adds con, its condition as SQL text: rendering the model's own expression
    would attach a copy of the CHECK to the model's table."""
    condition = sql_text(check_text(con))
    if name is None:  # named after its text, so that its undo can drop it; compared by text
        digest = hashlib.sha1(normal(check_text(con)).encode()).hexdigest()[:10]
        name = f"ck_{table.name[:40]}_{digest}"
    return ops.CreateCheckConstraintOp(name, table.name, condition, schema=table.schema)


def _altered(table: Table, name: str, con: Any, found: str) -> Change:
    """A named CHECK whose condition changed: dropped and added again, its rows counted."""
    return Change(
        ChangeKind.ALTER_CHECK,
        table.key,
        f"change check {name} on {table.key} from ({found}) to ({check_text(con)})",
        name=name,
        op=_create(table, name, con),
        values=(found,),
    )


def _spellings(table: Table, con: Any, spelling: Spelling) -> set[str]:
    """The normal texts a model CHECK may have in the database: as written, as spelled there
    (a type's CHECK by its name, the models' own by their text)."""
    written = normal(check_text(con))
    if getattr(con, "_type_bound", False):
        spelled = spelling.type_check(table, con.name) if isinstance(con.name, str) else ""
    else:
        spelled = spelling.check(table, con)
    return {written, spelled} - {""}
