"""The models' tables that the database has, each in its own schema."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Inspector


def present_tables(
    insp: Inspector, metadata: MetaData, included: Callable[[str], bool]
) -> list[Table]:
    """The tables of metadata that exist in the database (in their schema) and are compared."""
    names: dict[str | None, set[str]] = {}
    found = []
    for table in metadata.sorted_tables:
        if table.schema not in names:
            names[table.schema] = set(insp.get_table_names(schema=table.schema))
        if table.name in names[table.schema] and included(table.name):
            found.append(table)
    return found
