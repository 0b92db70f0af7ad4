"""Names and values as SQL text. Table names as the plan carries them: a table in the
connection's default schema by its name, one in a schema of its own (PostgreSQL) by
'schema.name', the key SQLAlchemy's MetaData uses."""

from __future__ import annotations

from sqlalchemy.engine import Dialect


def table_key(name: str, schema: str | None) -> str:
    """'schema.name', or name in the default schema."""
    return f"{schema}.{name}" if schema else name


def split_key(key: str) -> tuple[str | None, str]:
    """(schema, name) of a table key; schema None in the default schema."""
    schema, dot, name = key.partition(".")
    return (schema, name) if dot else (None, key)


def quote_table(dialect: Dialect, key: str) -> str:
    """The table as SQL: "schema"."name", or "name"."""
    quote = dialect.identifier_preparer.quote
    schema, name = split_key(key)
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def sql_literal(value: str) -> str:
    """A string as an SQL literal: 'it''s'."""
    return "'" + value.replace("'", "''") + "'"
