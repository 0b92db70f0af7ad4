"""PostgreSQL: transactional DDL, an advisory lock, pg_dump backups, a cancel-based time limit."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Enum, MetaData, inspect
from sqlalchemy.engine import Connection

from ..model.changes import Change, ChangeKind
from .base import Undo
from .lock import MigrationLock
from .server import Compilation, Override, ServerBackend, run_tool, schema_hash

LOCK_WAIT_S = 5.0

# Spellings PostgreSQL reflects differently from how SQLAlchemy compiles the same type.
_ALIASES = {
    "FLOAT": "DOUBLE PRECISION",
    "FLOAT(53)": "DOUBLE PRECISION",
    "REAL": "REAL",
    "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP",
    "TIME WITHOUT TIME ZONE": "TIME",
    "CHARACTER VARYING": "VARCHAR",
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "INT8": "BIGINT",
    "BOOL": "BOOLEAN",
}


def _spelling(type_: Any) -> str:
    from sqlalchemy.dialects import postgresql

    dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]
    text = " ".join(type_.compile(dialect=dialect).upper().split())
    text = text.replace("CHARACTER VARYING", "VARCHAR")
    return _ALIASES.get(text, text)


def _drop_not_null(conn: Connection, change: Change) -> list[str]:
    q = conn.dialect.identifier_preparer.quote
    return [f"ALTER TABLE {q(change.table)} ALTER COLUMN {q(str(change.column))} DROP NOT NULL"]


def _alter_type(conn: Connection, change: Change) -> list[str]:
    # USING casts the values the way PostgreSQL's own cast does, or fails the plan.
    q = conn.dialect.identifier_preparer.quote
    table, column = q(change.table), q(str(change.column))
    new = change.op.modify_type.compile(dialect=conn.dialect)
    return [f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {new} USING {column}::{new}"]


def _add_enum_values(conn: Connection, change: Change) -> list[str]:
    # In a transaction from PostgreSQL 12; a new value is usable once the transaction commits.
    q = conn.dialect.identifier_preparer.quote
    name = q(str(change.name))
    values = ["'" + value.replace("'", "''") + "'" for value in change.values]
    return [f"ALTER TYPE {name} ADD VALUE IF NOT EXISTS {value}" for value in values]


class _EnumCompilation(Compilation):
    """Native enum types: created once, before the first column that uses them."""

    def __init__(self, backend: ServerBackend, conn: Connection, changes: Sequence[Change]) -> None:
        super().__init__(backend, conn, changes)
        rows = conn.exec_driver_sql(
            "SELECT t.typname FROM pg_type t WHERE t.typtype = 'e'"
            " AND t.typnamespace = current_schema()::regnamespace"
        )
        self.existing = {str(r[0]) for r in rows}

    def first_use(self, change: Change) -> list[str]:
        """CREATE TYPE for a new column's or a changed type's enum that does not exist yet."""
        from sqlalchemy.dialects.postgresql.named_types import CreateEnumType

        type_ = None
        if change.kind is ChangeKind.ADD_COLUMN:
            type_ = change.op.column.type
        elif change.kind is ChangeKind.ALTER_TYPE:
            type_ = change.op.modify_type
        if not isinstance(type_, Enum) or not type_.native_enum or not type_.name:
            return []
        return [str(CreateEnumType(type_).compile(dialect=self.conn.dialect))]

    def adjust(self, change: Change, sql: list[str]) -> list[str]:
        """CREATE TYPE before a type's first use, and never twice."""
        kept = []
        for statement in self.first_use(change) + sql:
            match = _CREATE_TYPE.match(statement)
            if match:
                name = match.group(1).strip('"')
                if name in self.existing:
                    continue
                self.existing.add(name)
            kept.append(statement)
        return kept

    def undo(self, change: Change, sql: list[str], undo: list[str]) -> list[str]:
        """The enum types the operation created go after what used them."""
        q = self.conn.dialect.identifier_preparer.quote
        created = [m.group(1) for m in map(_CREATE_TYPE.match, sql) if m]
        return undo + [f"DROP TYPE {q(name.strip(chr(34)))}" for name in reversed(created)]


_CREATE_TYPE = re.compile(r"^CREATE TYPE (\S+) AS ENUM", re.IGNORECASE)


class PostgreSQLBackend(ServerBackend):
    """A PostgreSQL database, in the schema the connection uses by default."""

    name = "postgresql"
    backup_suffix = ".dump"  # pg_dump's custom format, for pg_restore
    undo = Undo.TRANSACTION
    where_option: str | None = "postgresql_where"

    def lock(self, timeout_s: float, lock_name: str) -> MigrationLock:
        from .server_locks import PostgresAdvisoryLock

        return PostgresAdvisoryLock(self.url, lock_name, timeout_s)

    def types_differ(self, inspected_type: Any, metadata_type: Any) -> bool:
        return _spelling(inspected_type) != _spelling(metadata_type)

    def fingerprint(self, conn: Connection, ignore: Sequence[str]) -> str:
        queries = (
            "SELECT table_name, column_name || ' ' || data_type || ' '"
            " || coalesce(character_maximum_length::text, '') || ' ' || is_nullable || ' '"
            " || coalesce(column_default, '') || ' ' || coalesce(generation_expression, '')"
            " || ' ' || is_identity FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY 1, ordinal_position",
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " ORDER BY 1, indexname",
            "SELECT conrelid::regclass::text, conname || ' ' || pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE connamespace = current_schema()::regnamespace"
            " AND conrelid <> 0 ORDER BY 1, conname",
            "SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)"
            " FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid"
            " WHERE t.typnamespace = current_schema()::regnamespace GROUP BY t.typname ORDER BY 1",
            "SELECT c.relname, coalesce(a.attname, '') || ' ' || d.description"
            " FROM pg_description d JOIN pg_class c ON c.oid = d.objoid"
            " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid"
            " WHERE d.classoid = 'pg_class'::regclass"
            " AND c.relnamespace = current_schema()::regnamespace ORDER BY 1, 2",
        )
        return schema_hash(conn, queries, ignore)

    compilation = _EnumCompilation

    def overrides(self) -> dict[ChangeKind, Override]:
        return {
            ChangeKind.DROP_NOT_NULL: _drop_not_null,
            ChangeKind.RETIRE_COLUMN: _drop_not_null,
            ChangeKind.ALTER_TYPE: _alter_type,
            ChangeKind.ADD_ENUM_VALUE: _add_enum_values,
        }

    def more_changes(self, conn: Connection, metadata: MetaData) -> list[Change]:
        """Values the models' native enums have and the database's enum types lack. (A value
        the models no longer have stays: rows may hold it, and old replicas write it.)"""
        inspector: Any = inspect(conn)  # the PostgreSQL inspector has get_enums
        labels = {e["name"]: e["labels"] for e in inspector.get_enums() if e["visible"]}
        found: dict[str, Change] = {}
        for table in metadata.sorted_tables:
            for column in table.columns:
                type_ = column.type
                if not isinstance(type_, Enum) or not type_.native_enum or not type_.name:
                    continue
                new = tuple(v for v in type_.enums if v not in labels.get(type_.name, type_.enums))
                if new and type_.name not in found:
                    found[type_.name] = Change(
                        ChangeKind.ADD_ENUM_VALUE,
                        table.name,
                        f"add {', '.join(repr(v) for v in new)} to enum type {type_.name}",
                        column=column.name,
                        name=type_.name,
                        values=new,
                    )
        return list(found.values())

    def reset_sequence(self, conn: Connection, table: str, column: str) -> None:
        # An explicit id leaves the serial behind; the next row must not reuse an id.
        q = conn.dialect.identifier_preparer.quote
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
            f" (SELECT max({q(column)}) FROM {q(table)}))"
        )

    def _pg_args(self) -> tuple[list[str], dict[str, str]]:
        url = self.url
        args = ["-h", url.host or "localhost", "-p", str(url.port or 5432)]
        if url.username:
            args += ["-U", url.username]
        env = dict(os.environ)
        if url.password:
            env["PGPASSWORD"] = str(url.password)
        return args, env

    def backup_to(self, conn: Connection, destination: Path) -> None:
        args, env = self._pg_args()
        run_tool(
            ["pg_dump", "-Fc", "--no-owner", "-f", str(destination), *args, str(self.url.database)],
            env,
        )

    def check_backup(self, path: Path) -> None:
        _, env = self._pg_args()
        run_tool(["pg_restore", "--list", str(path)], env)

    def restore_from(self, path: Path) -> None:
        # The dump holds the whole schema: empty it and replay the dump in one transaction, so
        # that objects created after the backup (which depend on restored ones) go too.
        args, env = self._pg_args()
        script = run_tool(["pg_restore", "--no-owner", "-f", "-", str(path)], env)
        prelude = "DROP SCHEMA IF EXISTS public CASCADE;\nCREATE SCHEMA public;\n"
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", *args]
        run_tool([*psql, "-d", str(self.url.database)], env, stdin=prelude + script)

    @contextmanager
    def time_limit(self, conn: Connection, seconds: float) -> Iterator[None]:
        dbapi: Any = conn.connection.dbapi_connection
        # A DDL statement waiting for a table lock makes every later reader of that table wait
        # behind it: give up quickly instead, roll back, and let the next start try again.
        wait_ms = max(1, int(min(seconds / 2, LOCK_WAIT_S) * 1000))
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {wait_ms}")
        # A cancel request at the deadline bounds the whole apply, not each statement.
        timer = threading.Timer(seconds, dbapi.cancel)
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
