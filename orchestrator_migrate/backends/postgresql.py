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
from sqlalchemy.exc import DBAPIError

from ..model.changes import Change, ChangeKind
from ..model.names import quote_table, split_key, sql_literal
from .base import Undo
from .lock import MigrationLock
from .server import Compilation, Override, ServerBackend, run_tool, schema_hash
from .tools import dump_to, feed

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
    table = quote_table(conn.dialect, change.table)
    return [f"ALTER TABLE {table} ALTER COLUMN {q(str(change.column))} DROP NOT NULL"]


def _primary_key(conn: Connection, change: Change) -> list[str]:
    # One statement: the table is never without its key, and the key keeps its name.
    q = conn.dialect.identifier_preparer.quote
    table = quote_table(conn.dialect, change.table)
    name = q(str(change.name or f"{split_key(change.table)[1]}_pkey"))
    columns = ", ".join(q(c) for c in change.op.columns)
    drop = f"DROP CONSTRAINT {name}, " if change.columns else ""
    return [f"ALTER TABLE {table} {drop}ADD CONSTRAINT {name} PRIMARY KEY ({columns})"]


def _alter_type(conn: Connection, change: Change) -> list[str]:
    # USING casts the values the way PostgreSQL's own cast does, or fails the plan.
    q = conn.dialect.identifier_preparer.quote
    table, column = quote_table(conn.dialect, change.table), q(str(change.column))
    new = change.op.modify_type.compile(dialect=conn.dialect)
    return [f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {new} USING {column}::{new}"]


def _add_enum_values(conn: Connection, change: Change) -> list[str]:
    # In a transaction from PostgreSQL 12; a new value is usable once the transaction commits.
    # Each goes where the models put it: before the next value the type already has.
    q = conn.dialect.identifier_preparer.quote
    name = q(str(change.name))
    order = change.op.get("order", list(change.values)) if isinstance(change.op, dict) else []
    have = set(change.op.get("values", ())) if isinstance(change.op, dict) else set()
    sql = []
    for value in change.values:
        later = order[order.index(value) + 1 :] if value in order else []
        before = next((v for v in later if v in have), None)
        where = f" BEFORE {sql_literal(before)}" if before is not None else ""
        sql.append(f"ALTER TYPE {name} ADD VALUE IF NOT EXISTS {sql_literal(value)}{where}")
        have.add(value)
    return sql


def _enum_uses(conn: Connection, name: str) -> list[tuple[str, str, str | None]]:
    """(table, column, default) of every column of the enum type name in this schema."""
    rows = conn.exec_driver_sql(
        "SELECT c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid)"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE t.typname = %(name)s AND c.relkind = 'r' AND a.attnum > 0"
        " AND NOT a.attisdropped AND c.relnamespace = current_schema()::regnamespace"
        " ORDER BY 1, 2",
        {"name": name},
    )
    return [(str(t), str(c), d) for t, c, d in rows]


def _gone(metadata: MetaData, table: str, column: str) -> bool:
    model = metadata.tables.get(table)
    return model is None or column not in model.c


def _removal(table: str, name: str, gone: tuple[str, ...], type_: Enum, uses: list[Any]) -> Change:
    shown = ", ".join(repr(v) for v in gone)
    return Change(
        ChangeKind.REMOVE_ENUM_VALUES,
        table,
        f"remove {shown} from enum type {name}",
        name=name,
        values=gone,
        op={"values": list(type_.enums), "columns": uses},
    )


def _recreate_enum(conn: Connection, change: Change) -> list[str]:
    """The type under a temporary name, a new one with the models' values, every column cast
    to it (its default set again), the old type dropped: in the plan's one transaction."""
    q = conn.dialect.identifier_preparer.quote
    name, old = q(str(change.name)), q(f"{change.name}__om_old")
    values = ", ".join(sql_literal(v) for v in change.op["values"])
    sql = [f"ALTER TYPE {name} RENAME TO {old}", f"CREATE TYPE {name} AS ENUM ({values})"]
    for table, column, default in change.op["columns"]:
        alter = f"ALTER TABLE {quote_table(conn.dialect, table)} ALTER COLUMN {q(column)}"
        if default is not None:
            sql.append(f"{alter} DROP DEFAULT")
        sql.append(f"{alter} TYPE {name} USING {q(column)}::text::{name}")
        if default is not None:
            sql.append(f"{alter} SET DEFAULT {default.split('::')[0]}::{name}")
    return [*sql, f"DROP TYPE {old}"]


def _drop_enum_type(conn: Connection, change: Change) -> list[str]:
    return [f"DROP TYPE {conn.dialect.identifier_preparer.quote(str(change.name))}"]


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
        if change.kind is ChangeKind.REMOVE_ENUM_VALUES:
            return sql  # the type is recreated under its own name
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


_DUMPED_SCHEMA = re.compile(r"^CREATE SCHEMA (\S+);$", re.MULTILINE)
_CREATE_TYPE = re.compile(r"^CREATE TYPE (\S+) AS ENUM", re.IGNORECASE)


class PostgreSQLBackend(ServerBackend):
    """A PostgreSQL database, in the schema the connection uses by default."""

    name = "postgresql"
    backup_suffix = ".dump"  # pg_dump's custom format, for pg_restore
    undo = Undo.TRANSACTION
    where_option: str | None = "postgresql_where"
    supports_schemas = True
    # A new enum value can be used (in a CHECK, a default, a row) only once it has committed.
    commits_first = frozenset({ChangeKind.ADD_ENUM_VALUE})

    def lock(self, timeout_s: float, lock_name: str) -> MigrationLock:
        from .server_locks import PostgresAdvisoryLock

        return PostgresAdvisoryLock(self.url, lock_name, timeout_s)

    def types_differ(self, inspected_type: Any, metadata_type: Any) -> bool:
        return _spelling(inspected_type) != _spelling(metadata_type)

    def integrity_problems(self, conn: Connection) -> list[str]:
        # An index whose build failed part-way stays behind invalid: never used, always updated.
        listed = ", ".join(sql_literal(s) for s in self.schemas)
        within = f"(current_schema(){', ' + listed if listed else ''})"
        rows = conn.exec_driver_sql(
            "SELECT c.relname, t.relname FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE NOT i.indisvalid AND n.nspname IN {within} ORDER BY 1"
        )
        problems = [f"index {r[0]} on {r[1]} is invalid (a build failed part-way)" for r in rows]
        rows = conn.exec_driver_sql(
            "SELECT conname, conrelid::regclass::text FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace"
            f" WHERE NOT c.convalidated AND n.nspname IN {within} ORDER BY 1"
        )
        problems += [f"constraint {r[0]} on {r[1]} is not validated" for r in rows]
        return problems

    def fingerprint(self, conn: Connection, ignore: Sequence[str]) -> str:
        # The default schema and those the models use; a table outside the default one is
        # named schema.table.
        listed = ", ".join(sql_literal(s) for s in self.schemas)
        within = f"(current_schema(){', ' + listed if listed else ''})"
        spaces = f"(SELECT oid FROM pg_namespace WHERE nspname IN {within})"

        def named(schema: str, table: str) -> str:
            return (
                f"CASE WHEN {schema} = current_schema() THEN {table}::text"
                f" ELSE {schema} || '.' || {table} END"
            )

        queries = (
            f"SELECT {named('table_schema', 'table_name')}, column_name || ' ' || data_type"
            " || ' ' || coalesce(character_maximum_length::text, '') || ' ' || is_nullable"
            " || ' ' || coalesce(column_default, '') || ' ' || coalesce(generation_expression, '')"
            " || ' ' || is_identity FROM information_schema.columns"
            f" WHERE table_schema IN {within} ORDER BY 1, ordinal_position",
            f"SELECT {named('schemaname', 'tablename')}, indexdef FROM pg_indexes"
            f" WHERE schemaname IN {within} ORDER BY 1, indexname",
            "SELECT conrelid::regclass::text, conname || ' ' || pg_get_constraintdef(oid)"
            f" FROM pg_constraint WHERE connamespace IN {spaces}"
            " AND conrelid <> 0 ORDER BY 1, conname",
            "SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)"
            " FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid"
            f" WHERE t.typnamespace IN {spaces} GROUP BY t.typname ORDER BY 1",
            "SELECT c.relname, coalesce(a.attname, '') || ' ' || d.description"
            " FROM pg_description d JOIN pg_class c ON c.oid = d.objoid"
            " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid"
            " WHERE d.classoid = 'pg_class'::regclass"
            f" AND c.relnamespace IN {spaces} ORDER BY 1, 2",
        )
        return schema_hash(conn, queries, ignore)

    compilation = _EnumCompilation

    def overrides(self) -> dict[ChangeKind, Override]:
        return {
            ChangeKind.DROP_NOT_NULL: _drop_not_null,
            ChangeKind.RETIRE_COLUMN: _drop_not_null,
            ChangeKind.ALTER_TYPE: _alter_type,
            ChangeKind.ADD_ENUM_VALUE: _add_enum_values,
            ChangeKind.ALTER_PRIMARY_KEY: _primary_key,
            ChangeKind.REMOVE_ENUM_VALUES: _recreate_enum,
            ChangeKind.DROP_ENUM_TYPE: _drop_enum_type,
        }

    @contextmanager
    def scratch(self, conn: Connection) -> Iterator[Connection]:
        """conn itself, inside a savepoint rolled back afterwards: another connection would wait
        for the locks a plan's transaction holds (a type it recreates) while conn waits for it."""
        savepoint = conn.begin_nested()
        try:
            yield conn
        finally:
            savepoint.rollback()

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
                    uses = _enum_uses(conn, type_.name)
                    found[type_.name] = Change(
                        ChangeKind.ADD_ENUM_VALUE,
                        table.key,
                        f"add {', '.join(repr(v) for v in new)} to enum type {type_.name}",
                        column=column.name,
                        name=type_.name,
                        values=new,
                        # What undoes it: the type as it is, recreated over the columns using it.
                        op={
                            "values": list(labels[type_.name]),
                            "columns": uses,
                            "order": list(type_.enums),
                        },
                    )
        return [*found.values(), *self._enum_removals(conn, metadata, labels)]

    def _enum_removals(
        self, conn: Connection, metadata: MetaData, labels: dict[str, list[str]]
    ) -> list[Change]:
        """Values the database's enum types have and the models' do not, and types of ours no
        column uses any more: removed on the contract step only (the planner keeps them)."""
        modelled: dict[str, tuple[str, Enum]] = {}
        for table in metadata.sorted_tables:
            for column in table.columns:
                type_ = column.type
                if isinstance(type_, Enum) and type_.native_enum and type_.name:
                    modelled.setdefault(type_.name, (table.name, type_))
        found = []
        for name, values in sorted(labels.items()):
            uses = _enum_uses(conn, name)
            if name in modelled:
                where, model = modelled[name]
                gone = tuple(v for v in values if v not in model.enums)
                if gone:
                    found.append(_removal(where, name, gone, model, uses))
            elif all(_gone(metadata, table, column) for table, column, _ in uses):
                # Used by no column, or only by columns the models dropped (it goes after them).
                found.append(
                    Change(
                        ChangeKind.DROP_ENUM_TYPE,
                        uses[0][0] if uses else "",
                        f"enum type {name} (no column of the models uses it)",
                        name=name,
                        columns=tuple(f"{t}.{c}" for t, c, _ in uses),
                    )
                )
        return found

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
        # Only the schemas this tool migrates: the default one and those the models use.
        args, env = self._pg_args()
        default = str(conn.exec_driver_sql("SELECT current_schema()").scalar_one())
        only = [arg for schema in (default, *self.schemas) for arg in ("-n", schema)]
        command = ["pg_dump", "-Fc", "--no-owner", *only, "-f", str(destination), *args]
        what = f"Backing up database {self.url.database} (pg_dump)"
        dump_to([*command, str(self.url.database)], env, destination, self.progress, what)

    def check_backup(self, path: Path) -> None:
        _, env = self._pg_args()
        run_tool(["pg_restore", "--list", str(path)], env)

    def restore_from(self, path: Path) -> None:
        # The dump holds the whole schema: empty it and replay the dump in one transaction, so
        # that objects created after the backup (which depend on restored ones) go too.
        args, env = self._pg_args()
        script = run_tool(["pg_restore", "--no-owner", "-f", "-", str(path)], env)
        # The schemas the dump holds (it creates them); another schema is never touched. A dump
        # of the whole database (before schemas were supported) holds public without creating it.
        held = _DUMPED_SCHEMA.findall(script)
        prelude = "".join(f"DROP SCHEMA IF EXISTS {s} CASCADE;\n" for s in held)  # as quoted
        if not held:
            prelude = "DROP SCHEMA IF EXISTS public CASCADE;\nCREATE SCHEMA public;\n"
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", *args]
        command = [*psql, "-d", str(self.url.database)]
        feed(command, env, prelude + script, self.progress, f"Restoring {path.name}")

    def create_database_sql(self, conn: Connection, name: str) -> str:
        # The encoding and collation of this database: the dump's text and sort order hold.
        encoding, collate, ctype = conn.exec_driver_sql(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database"
            " WHERE datname = current_database()"
        ).one()
        return (
            f"CREATE DATABASE {conn.dialect.identifier_preparer.quote(name)} TEMPLATE template0"
            f" ENCODING {sql_literal(encoding)} LC_COLLATE {sql_literal(collate)}"
            f" LC_CTYPE {sql_literal(ctype)}"
        )

    def drop_database(self, conn: Connection, name: str) -> None:
        # FORCE: a client killed part-way (Ctrl-C during the restore) may still be connected.
        quoted = conn.dialect.identifier_preparer.quote(name)
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")

    def create_privilege(self, error: DBAPIError) -> str | None:
        if getattr(error.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            return None
        role = self.url.username or "<role>"
        return f"the CREATEDB privilege (ALTER ROLE {role} CREATEDB)"

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
