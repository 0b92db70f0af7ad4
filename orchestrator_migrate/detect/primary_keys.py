"""Primary keys, which Alembic's comparison leaves out: a key whose columns differ between the
models and the database (a column added to it or taken out) is one change, counted first."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alembic.operations import ops
from sqlalchemy import DefaultClause, Table, text
from sqlalchemy.engine import Inspector

from ..model.changes import Change, ChangeKind
from ..model.names import split_key


def primary_key_changes(insp: Inspector, tables: Iterable[Table]) -> Iterable[Change]:
    """ALTER_PRIMARY_KEY for each table whose key has other columns in the models."""
    for table in tables:
        model = tuple(c.name for c in table.primary_key.columns)
        reflected = insp.get_pk_constraint(table.name, schema=table.schema)
        found = tuple(str(c) for c in reflected.get("constrained_columns") or ())
        if not model or model == found:
            continue  # a table without a key in the models keeps the database's
        columns: dict[str, Any] = {
            c["name"]: c for c in insp.get_columns(table.name, schema=table.schema)
        }
        for column in model:
            if column not in found and columns.get(column, {}).get("nullable"):
                yield _not_null(table.key, table.schema, columns[column])
        name = reflected.get("name") or table.primary_key.name
        yield Change(
            ChangeKind.ALTER_PRIMARY_KEY,
            table.key,
            f"change the primary key of {table.key} from ({', '.join(found)}) to"
            f" ({', '.join(model)})",
            name=name if isinstance(name, str) else None,
            op=ops.CreatePrimaryKeyOp(name, table.name, list(model), schema=table.schema),
            columns=found,
        )


def _not_null(table: str, schema: str | None, column: Any) -> Change:
    """A column joining the key becomes NOT NULL first, as a change of its own (counted, and
    undone by a rollback)."""
    default = column.get("default")
    op = ops.AlterColumnOp(
        split_key(table)[1],
        column["name"],
        schema=schema,
        modify_nullable=False,
        existing_type=column["type"],
        existing_nullable=True,
        existing_server_default=DefaultClause(text(default)) if default is not None else None,
        existing_comment=column.get("comment"),
    )
    return Change(
        ChangeKind.SET_NOT_NULL,
        table,
        f"set NOT NULL on {table}.{column['name']} (it joins the primary key)",
        column=column["name"],
        op=op,
    )
