"""MariaDB and MySQL: GET_LOCK, mariadb-dump backups, and restore when DDL fails half-way.

MariaDB commits every DDL statement on its own, so a plan cannot run in one transaction: a backup
is always taken before a change, and a failure part-way restores it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Column, inspect, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.engine import Connection
from sqlalchemy.exc import CompileError, DBAPIError
from sqlalchemy.pool import NullPool

from ..model.changes import Change, ChangeKind
from ..model.plan import Operation
from .base import REHEARSAL_PREFIX, Undo
from .lock import MigrationLock
from .server import Compilation, Override, ServerBackend, schema_hash
from .tools import dump_to, feed

DUMP_DONE = "-- Dump completed"
_INT_WIDTH = re.compile(r"^((?:TINY|SMALL|MEDIUM|BIG)?INT(?:EGER)?)\(\d+\)")
_NUMERIC = re.compile(r"^NUMERIC\b")
_CHARSET = re.compile(r" (?:CHARACTER SET|COLLATE) \w+")
# Spellings the server reports for what SQLAlchemy compiles otherwise: MariaDB's JSON is a
# LONGTEXT (with a json_valid CHECK), and a UUID column (10.7+) is what Uuid means on MySQL.
_ALIASES = {
    "INT": "INTEGER",
    "JSON": "LONGTEXT",
    "UUID": "CHAR(32)",
    "DECIMAL": "DECIMAL(10, 0)",  # the server's default precision
}


def _spelling(type_: Any) -> str:
    from sqlalchemy.dialects import mysql

    dialect: Any = mysql.dialect()
    spelled = " ".join(type_.compile(dialect=dialect).upper().split())
    spelled = _CHARSET.sub("", spelled)  # a column's collation is the table's business
    if spelled in ("BOOL", "BOOLEAN", "TINYINT(1)"):
        return "BOOL"
    spelled = _INT_WIDTH.sub(r"\1", spelled)  # display widths change nothing
    spelled = _NUMERIC.sub("DECIMAL", spelled)
    return _ALIASES.get(spelled, spelled)


def _nullable(conn: Connection, change: Change) -> list[str]:
    q = conn.dialect.identifier_preparer.quote
    spec = change.op.to_column().type.compile(dialect=conn.dialect)
    return [f"ALTER TABLE {q(change.table)} MODIFY {q(str(change.column))} {spec} NULL"]


def _primary_key(conn: Connection, change: Change) -> list[str]:
    # One statement: the table is never without its key.
    q = conn.dialect.identifier_preparer.quote
    columns = ", ".join(q(c) for c in change.op.columns)
    drop = "DROP PRIMARY KEY, " if change.columns else ""
    return [f"ALTER TABLE {q(change.table)} {drop}ADD PRIMARY KEY ({columns})"]


def _index(conn: Connection, change: Change) -> list[str]:
    from .ddl import render

    expressions = [c for c in change.op.columns if not isinstance(c, str | Column)]
    if expressions and getattr(conn.dialect, "is_mariadb", False):
        raise CompileError(
            "MariaDB has no expression indexes; index a generated column"
            " (sa.Computed(..., persisted=True)) that holds the expression instead"
        )
    return render(conn.dialect, change.op)


class _MySQLCompilation(Compilation):
    """One ALTER ... MODIFY carries a column's type and nullability together (a fill's UPDATE
    goes before it); and MariaDB refuses to change the type of a column a foreign key uses, on
    either side: those foreign keys are dropped before the plan and added back after it."""

    def __init__(self, backend: ServerBackend, conn: Connection, changes: Sequence[Change]) -> None:
        super().__init__(backend, conn, changes)
        self.rendered: set[int] = set()
        self.fills = {id(c.op): c for c in changes if c.fill and c.kind in _MODIFY}
        self.found: list[tuple[str, dict[str, Any]]] = []
        self.new_tables = {c.table for c in changes if c.kind is ChangeKind.ADD_TABLE}
        altered = {(c.table, c.column) for c in changes if c.kind is ChangeKind.ALTER_TYPE}
        dropped = {c.name for c in changes if c.kind is ChangeKind.DROP_FK}
        gone = {c.table for c in changes if c.kind is ChangeKind.DROP_TABLE}
        if not altered:
            return
        insp = inspect(conn)
        for table in sorted(set(insp.get_table_names()) - gone):
            for fk in insp.get_foreign_keys(table):
                uses = [(table, c) for c in fk["constrained_columns"]]
                uses += [(fk["referred_table"], c) for c in fk["referred_columns"]]
                if fk["name"] not in dropped and altered & set(uses):
                    self.found.append((table, dict(fk)))

    def adjust(self, change: Change, sql: list[str]) -> list[str]:
        if change.kind not in _MODIFY:
            return sql
        if id(change.op) in self.rendered:
            return []  # the MODIFY of a sibling change carries this one
        self.rendered.add(id(change.op))
        filled = self.fills.get(id(change.op))
        return self.backend.filled(self.conn, filled) if filled is not None else sql

    def undo(self, change: Change, sql: list[str], undo: list[str]) -> list[str]:
        """A foreign key over columns no index starts with gets an index of its own, named
        after it, which dropping the key leaves behind: the undo drops it too."""
        if change.kind is not ChangeKind.ADD_FK or change.table in self.new_tables:
            return undo
        columns = list(change.op.local_cols)
        insp = inspect(self.conn)
        indexed = [[str(c) for c in ix["column_names"]] for ix in insp.get_indexes(change.table)]
        indexed.append(insp.get_pk_constraint(change.table)["constrained_columns"])
        if any(list(cols[: len(columns)]) == columns for cols in indexed):
            return undo
        q = self.conn.dialect.identifier_preparer.quote
        name = q(str(change.op.constraint_name))
        return [*undo, f"ALTER TABLE {q(change.table)} DROP INDEX {name}"]

    def before(self) -> list[Operation]:
        return self._operation("drop_foreign_keys", "drop", self._drops(), self._adds())

    def after(self) -> list[Operation]:
        return self._operation("restore_foreign_keys", "add back", self._adds(), self._drops())

    def _drops(self) -> list[str]:
        q = self.conn.dialect.identifier_preparer.quote
        return [f"ALTER TABLE {q(t)} DROP FOREIGN KEY {q(fk['name'])}" for t, fk in self.found]

    def _adds(self) -> list[str]:
        from alembic.operations import ops

        from .ddl import render

        sql = []
        for table, fk in self.found:
            options = fk.get("options") or {}
            op = ops.CreateForeignKeyOp(
                fk["name"],
                table,
                fk["referred_table"],
                fk["constrained_columns"],
                fk["referred_columns"],
                ondelete=options.get("ondelete"),
                onupdate=options.get("onupdate"),
            )
            sql += render(self.conn.dialect, op)
        return sql

    def _operation(self, kind: str, verb: str, sql: list[str], undo: list[str]) -> list[Operation]:
        if not sql:
            return []
        names = ", ".join(f"{t}.{fk['name']}" for t, fk in self.found)
        return [
            Operation(
                kind=kind,
                table=self.found[0][0],
                description=f"{verb} the foreign keys on columns whose type changes: {names}",
                sql=tuple(sql),
                changes=(),
                reversible=True,
                undo=tuple(undo),
            )
        ]


_MODIFY = frozenset(
    {
        ChangeKind.ALTER_TYPE,
        ChangeKind.ALTER_DEFAULT,
        ChangeKind.SET_NOT_NULL,
        ChangeKind.DROP_NOT_NULL,
        ChangeKind.ALTER_COMMENT,
    }
)


class MySQLBackend(ServerBackend):
    """A MariaDB or MySQL database."""

    name = "mysql"
    backup_suffix = ".sql"
    undo = Undo.BACKUP
    # TEXT holds 64 KiB: a first run of a hundred tables records more SQL than that.
    long_text: Any = LONGTEXT

    def prepare(self) -> None:
        """Widen our own tables' TEXT columns, written by versions that used TEXT."""
        engine = self.create_engine()
        try:
            with engine.begin() as conn:
                narrow = conn.exec_driver_sql(
                    "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
                    " WHERE table_schema = DATABASE() AND data_type = 'text'"
                    " AND table_name IN ('orchestrator_migrate_history',"
                    " 'orchestrator_migrate_state')"
                ).all()
                for table, column, nullable in narrow:
                    null = "NULL" if nullable == "YES" else "NOT NULL"
                    conn.exec_driver_sql(f"ALTER TABLE {table} MODIFY `{column}` LONGTEXT {null}")
        finally:
            engine.dispose()

    def lock(self, timeout_s: float, lock_name: str) -> MigrationLock:
        from .server_locks import MySQLNamedLock

        return MySQLNamedLock(self.url, lock_name, timeout_s)

    def types_differ(self, inspected_type: Any, metadata_type: Any) -> bool:
        return _spelling(inspected_type) != _spelling(metadata_type)

    def fingerprint(self, conn: Connection, ignore: Sequence[str]) -> str:
        queries = (
            "SELECT TABLE_NAME, CONCAT_WS(' ', COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE,"
            " COALESCE(COLUMN_DEFAULT, ''), COLUMN_COMMENT, COALESCE(GENERATION_EXPRESSION, ''))"
            " FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION",
            "SELECT TABLE_NAME, CONCAT_WS(' ', INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME)"
            " FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
            " ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            "SELECT TABLE_NAME, CONCAT_WS(' ', CONSTRAINT_NAME, COLUMN_NAME,"
            " COALESCE(REFERENCED_TABLE_NAME, ''), COALESCE(REFERENCED_COLUMN_NAME, ''))"
            " FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE()"
            " ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
            "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
            "SELECT TABLE_NAME, CONCAT_WS(' ', CONSTRAINT_NAME, CHECK_CLAUSE)"
            " FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()"
            " ORDER BY TABLE_NAME, CONSTRAINT_NAME",
        )
        return schema_hash(conn, queries, ignore)

    rewrites = frozenset({ChangeKind.ALTER_TYPE, ChangeKind.SET_NOT_NULL})  # MariaDB copies
    compilation = _MySQLCompilation

    def overrides(self) -> dict[ChangeKind, Override]:
        return {
            ChangeKind.RETIRE_COLUMN: _nullable,
            ChangeKind.ADD_INDEX: _index,
            ChangeKind.ALTER_PRIMARY_KEY: _primary_key,
        }

    def alter_part(self, conn: Connection, change: Change) -> list[str]:
        # One ALTER ... MODIFY restates the whole column: every part that differs, at once.
        from .ddl import render

        return render(conn.dialect, change.op)

    def _client_args(self) -> tuple[list[str], dict[str, str]]:
        url = self.url
        args = ["-h", url.host or "localhost", "-P", str(url.port or 3306)]
        if url.username:
            args += ["-u", url.username]
        env = dict(os.environ)
        if url.password:
            env["MYSQL_PWD"] = str(url.password)
        return args, env

    def backup_to(self, conn: Connection, destination: Path) -> None:
        args, env = self._client_args()
        dump_to(
            [
                "mariadb-dump",
                "--single-transaction",
                "--routines",
                "--triggers",
                *args,
                "-r",
                str(destination),
                str(self.url.database),
            ],
            env,
            destination,
            self.progress,
            f"Backing up database {self.url.database} (mariadb-dump)",
        )

    def check_backup(self, path: Path) -> None:
        with path.open("rb") as dump:
            dump.seek(max(0, path.stat().st_size - 200))
            tail = dump.read().decode("utf-8", "replace")
        if DUMP_DONE not in tail:
            raise OSError(f"{path} is not a complete mariadb-dump file")

    def restore_from(self, path: Path) -> None:
        engine = sa_create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                tables = [
                    r[0]
                    for r in conn.execute(
                        text(
                            "SELECT TABLE_NAME FROM information_schema.TABLES"
                            " WHERE TABLE_SCHEMA = DATABASE()"
                        )
                    )
                ]
        finally:
            engine.dispose()
        # Tables created after the backup go too: the dump holds the whole database.
        drop = ", ".join(f"`{t}`" for t in tables)
        # Waits for readers that hold the tables, as long as LOCK_TIMEOUT allows.
        prelude = f"SET SESSION lock_wait_timeout = {max(1, int(self.busy_timeout_s))};\n"
        prelude += "SET FOREIGN_KEY_CHECKS=0;\n" + (
            f"DROP TABLE IF EXISTS {drop};\n" if drop else ""
        )
        args, env = self._client_args()
        script = prelude + path.read_text(encoding="utf-8") + "\nSET FOREIGN_KEY_CHECKS=1;\n"
        command = ["mariadb", *args, str(self.url.database)]
        feed(command, env, script, self.progress, f"Restoring {path.name}")

    def create_database_sql(self, conn: Connection, name: str) -> str:
        # The character set and collation of this database, for the tables a plan creates.
        charset, collation = conn.exec_driver_sql(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME"
            " FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()"
        ).one()
        quoted = conn.dialect.identifier_preparer.quote(name)
        return f"CREATE DATABASE {quoted} CHARACTER SET {charset} COLLATE {collation}"

    def drop_database(self, conn: Connection, name: str) -> None:
        # A client killed part-way (Ctrl-C during the restore) may still hold the tables' locks.
        users = conn.exec_driver_sql(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            (name,),
        ).all()
        for (connection_id,) in users:
            with suppress(DBAPIError):  # gone meanwhile
                conn.exec_driver_sql(f"KILL CONNECTION {int(connection_id)}")
        conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {max(1, int(self.busy_timeout_s))}")
        quoted = conn.dialect.identifier_preparer.quote(name)
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")

    def create_privilege(self, error: DBAPIError) -> str | None:
        args = getattr(error.orig, "args", ())
        if not args or args[0] not in (1044, 1227):  # access denied to a database; to an action
            return None
        user = self.url.username or "<user>"
        pattern = REHEARSAL_PREFIX.replace("_", "\\_") + "%"
        return (
            f"the privileges to create and drop databases named {REHEARSAL_PREFIX}..."
            f" (GRANT ALL ON `{pattern}`.* TO '{user}'@'...')"
        )

    @contextmanager
    def time_limit(self, conn: Connection, seconds: float) -> Iterator[None]:
        connection_id = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()

        def kill() -> None:
            killer = sa_create_engine(self.url, poolclass=NullPool)
            try:
                with killer.connect() as other:
                    other.exec_driver_sql(f"KILL QUERY {int(connection_id)}")
            finally:
                killer.dispose()

        # A DDL statement waiting for a table's metadata lock gives up instead of queueing.
        conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {max(1, int(seconds / 2))}")
        timer = threading.Timer(seconds, kill)
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
