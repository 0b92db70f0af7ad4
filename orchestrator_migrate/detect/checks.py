"""CHECK constraints, which Alembic's comparison leaves out: compared by name. An unnamed CHECK
cannot be recognised across databases (each names it its own way) and is left alone; so is a
CHECK that SQLAlchemy emits for a Boolean or Enum type."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from alembic.operations import ops
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from ..model.changes import Change, ChangeKind
from ..model.tablecopy import named_checks


def check_changes(
    conn: Connection, metadata: MetaData, included: Callable[[str], bool]
) -> Iterable[Change]:
    """ADD_CHECK for a named CHECK the database lacks, DROP_CHECK for one it has and the
    models do not (the planner keeps it unless the models once made it)."""
    insp = inspect(conn)
    existing = set(insp.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing or not included(table.name):
            continue
        model = named_checks(table)
        reflected: Any = insp.get_check_constraints(table.name)
        present = {str(c["name"]) for c in reflected if c.get("name")}
        for name, con in model.items():
            if name not in present:
                yield Change(
                    ChangeKind.ADD_CHECK,
                    table.name,
                    f"add check {name} on {table.name} ({con.sqltext})",
                    name=name,
                    op=ops.CreateCheckConstraintOp.from_constraint(con),
                )
        for name in sorted(present - set(model)):
            yield Change(
                ChangeKind.DROP_CHECK,
                table.name,
                f"drop check {name} on {table.name}",
                name=name,
                op=ops.DropConstraintOp(name, table.name, type_="check"),
            )
