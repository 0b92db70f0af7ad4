"""What the database-server backends share: an engine per URL, client tools, a schema hash."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import MetaData, Text, inspect
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import CompileError, DBAPIError
from sqlalchemy.pool import NullPool

from ..config.filters import ignored
from ..model.changes import Change, ChangeKind
from ..model.entries import HistoryEntry
from ..model.errors import ConfigError, RefusedChange
from ..model.names import quote_table, split_key
from ..model.plan import Operation
from ..progress import LogProgress, Progress
from .base import REHEARSAL_PREFIX
from .reach import guard


class Compilation:
    """One compile's state, for a dialect that needs it: operations before and after the
    plan's own, and a last look at each change's statements."""

    def __init__(self, backend: ServerBackend, conn: Connection, changes: Sequence[Change]):
        self.backend = backend
        self.conn = conn
        self.changes = changes

    def before(self) -> list[Operation]:
        return []

    def after(self) -> list[Operation]:
        return []

    def adjust(self, change: Change, sql: list[str]) -> list[str]:
        return sql

    def undo(self, change: Change, sql: list[str], undo: list[str]) -> list[str]:
        """The statements that undo an operation whose statements are sql, after undo (the
        inverse of its change): PostgreSQL drops the enum types sql created."""
        return undo


Override = Callable[[Connection, Change], list[str]]


class ServerBackend:
    """The parts of a server backend that do not depend on the server: the compile loop
    (a subclass overrides the SQL of the kinds where its dialect differs), fills, renames."""

    name = "server"
    long_text: Any = Text
    # Kinds after which the server copies the table (its rows feed the time estimate).
    rewrites: frozenset[ChangeKind] = frozenset({ChangeKind.ALTER_TYPE})
    compilation: type[Compilation] = Compilation
    rewrites_expressions = True
    commits_first: frozenset[ChangeKind] = frozenset()  # kinds committed ahead of the plan
    where_option: str | None = None
    supports_schemas = False
    schemas: tuple[str, ...] = ()

    def overrides(self) -> dict[ChangeKind, Override]:
        """This dialect's own SQL for some kinds; the rest is Alembic's rendering of the op."""
        return {}

    def more_changes(self, conn: Connection, metadata: MetaData) -> list[Change]:
        return []

    def compile(
        self, conn: Connection, changes: Sequence[Change], metadata: MetaData
    ) -> list[Operation]:
        compilation = self.compilation(self, conn, changes)
        operations = compilation.before()
        for change in changes:
            try:
                sql = compilation.adjust(change, self._sql(conn, change))
            except CompileError as exc:  # e.g. a virtual Computed on PostgreSQL before 18
                raise CompileError(f"{self.name} cannot {change.description}: {exc}") from exc
            undo = self._undo(compilation, change, sql)
            operations.append(
                Operation(
                    kind=change.kind.value,
                    table=change.table,
                    description=change.description,
                    sql=tuple(sql),
                    changes=(change,),
                    reversible=undo is not None,
                    rebuilt_rows=self._rows(conn, change),
                    undo=tuple(undo) if undo is not None else None,
                    commit_first=change.kind in self.commits_first,
                )
            )
        return operations + compilation.after()

    def _undo(self, compilation: Compilation, change: Change, sql: list[str]) -> list[str] | None:
        """The statements that undo one change's sql; None when only the backup can."""
        from .inverse import inverse

        if not sql:
            return []  # a sibling change's statement carries it (MariaDB's one MODIFY)
        inverses = inverse(change)
        if inverses is None:
            return None
        undo: list[str] = []
        for reverse in inverses:
            try:
                undo += self._sql(compilation.conn, reverse)
            except Exception:  # e.g. an unnamed constraint: no name to drop it by
                return None  # Alembic cannot render the reverse: only the backup can undo it
        return compilation.undo(change, sql, undo)

    def _sql(self, conn: Connection, change: Change) -> list[str]:
        from alembic.operations import ops

        from .ddl import ALTER_PARTS, rename_sql, render

        if change.fill is not None:
            return self.filled(conn, change)
        if change.kind in (ChangeKind.RENAME_TABLE, ChangeKind.RENAME_COLUMN):
            return rename_sql(conn.dialect, change)
        if change.kind is ChangeKind.ALTER_CHECK:  # the old condition out, the new one in
            op = change.op
            drop = ops.DropConstraintOp(
                op.constraint_name, op.table_name, type_="check", schema=op.schema
            )
            return [*render(conn.dialect, drop), *render(conn.dialect, op)]
        override = self.overrides().get(change.kind)
        if override is not None:
            return override(conn, change)
        if change.kind in ALTER_PARTS:
            return self.alter_part(conn, change)
        return render(conn.dialect, change.op)

    def alter_part(self, conn: Connection, change: Change) -> list[str]:
        """The statements of one part (type, default, nullability) of an ALTER COLUMN."""
        from .ddl import only_part, render

        return render(conn.dialect, only_part(change))

    def _rows(self, conn: Connection, change: Change) -> int | None:
        if change.kind not in self.rewrites:
            return None
        table = quote_table(conn.dialect, change.table)
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())

    def __init__(
        self, url: URL, busy_timeout_s: float = 60.0, progress: Progress | None = None
    ) -> None:
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self.progress: Progress = progress or LogProgress()

    def create_engine(self, read_only: bool = False) -> Engine:
        return guard(sa_create_engine(self.url), self.url)

    def prepare(self) -> None:
        """Nothing to create: the server holds the database."""

    def types_differ(self, inspected_type: Any, metadata_type: Any) -> bool:
        raise NotImplementedError

    def same_kind(self, dropped_type: Any, added_type: Any) -> bool:
        return not self.types_differ(dropped_type, added_type)

    @contextmanager
    def scratch(self, conn: Connection) -> Iterator[Connection]:
        """A connection of its own: DDL on conn has committed statement by statement."""
        with conn.engine.connect() as other:
            yield other.execution_options(isolation_level="AUTOCOMMIT")

    def index_names(self, conn: Connection, table: str) -> set[str]:
        schema, name = split_key(table)
        return {str(ix["name"]) for ix in inspect(conn).get_indexes(name, schema=schema)}

    def reset_sequence(self, conn: Connection, table: str, column: str) -> None:
        """An auto-increment counter follows explicit ids by itself."""

    def snapshot(self, conn: Connection, tables: Sequence[str]) -> dict[str, Any]:
        """The columns of each table, so that a rollback can count values in columns the run
        added (the statements that undo the run are recorded with its operations)."""
        insp = inspect(conn)
        found: dict[str, Any] = {}
        for table in tables:
            schema, name = split_key(table)
            if insp.has_table(name, schema=schema):
                found[table] = {"columns": [c["name"] for c in insp.get_columns(name, schema)]}
        return found

    def reverse_sql(self, conn: Connection, entry: HistoryEntry) -> list[str]:
        """The undo statements recorded with the run's operations, newest operation first."""
        statements: list[str] = []
        for operation in reversed(entry.operations):
            undo = operation.get("undo")
            if undo is None:
                raise RefusedChange(
                    f"run #{entry.id} has a step that inverse SQL cannot undo"
                    f" ({operation.get('description')}); nothing changed. Use"
                    " `orchestrator-migrate rollback --use-backup`"
                )
            statements += undo
        return statements

    def filled(self, conn: Connection, change: Change) -> list[str]:
        """The statements of an ADD_COLUMN or SET_NOT_NULL whose NULLs a fill answers for:
        the column nullable, its NULLs filled, then NOT NULL."""
        from alembic.operations import ops

        from .ddl import render

        q = conn.dialect.identifier_preparer.quote
        table, column = quote_table(conn.dialect, change.table), q(str(change.column))
        if change.kind is ChangeKind.SET_NOT_NULL:
            update = f"UPDATE {table} SET {column} = ({change.fill}) WHERE {column} IS NULL"
            return [update, *self.alter_part(conn, change)]
        model = change.op.column
        nullable = model._copy()
        nullable.nullable = True
        not_null = ops.AlterColumnOp(
            change.table,
            model.name,
            modify_nullable=False,
            existing_type=model.type,
            existing_server_default=model.server_default,
            existing_nullable=True,
            existing_comment=model.comment,
        )
        return [
            *render(conn.dialect, ops.AddColumnOp(change.table, nullable)),
            f"UPDATE {table} SET {column} = ({change.fill})",
            *render(conn.dialect, not_null),
        ]

    def verify(self, conn: Connection, operations: Sequence[Operation]) -> list[str]:
        # The server checks constraints as each statement runs; the fresh diff does the rest.
        return []

    def integrity_problems(self, conn: Connection) -> list[str]:
        # The server keeps its constraints; what it allows to be left unusable, a dialect adds.
        return []

    backup_suffix: str

    def backup_to(self, conn: Connection, destination: Path) -> None:
        raise NotImplementedError

    def restore_from(self, path: Path) -> None:
        raise NotImplementedError

    @contextmanager
    def throwaway_copy(self, workdir: Path) -> Iterator[URL]:
        """A scratch database on this server, created like this one, with this one's dump (the
        backup's tool: consistent while writers run) restored into it; dropped afterwards,
        whatever happens."""
        name = REHEARSAL_PREFIX + secrets.token_hex(6)
        admin = sa_create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        created = False
        try:
            with admin.connect() as conn:
                try:
                    conn.exec_driver_sql(self.create_database_sql(conn, name))
                except DBAPIError as exc:
                    privilege = self.create_privilege(exc)
                    if privilege is None:
                        raise
                    raise self._no_privilege(privilege) from exc
                created = True
            dump = workdir / (name + self.backup_suffix)
            engine = self.create_engine(read_only=True)
            try:
                with engine.connect() as conn, conn.begin():
                    self.backup_to(conn, dump)
            finally:
                engine.dispose()
            copy = type(self)(self.url.set(database=name), self.busy_timeout_s, self.progress)
            copy.restore_from(dump)
            dump.unlink()
            yield copy.url
        finally:
            self._drop_scratch(admin, name, created)
            admin.dispose()

    def create_database_sql(self, conn: Connection, name: str) -> str:
        """CREATE DATABASE for a scratch database like the one conn is on."""
        return f"CREATE DATABASE {conn.dialect.identifier_preparer.quote(name)}"

    def drop_database(self, conn: Connection, name: str) -> None:
        """Drop a scratch database, even while a connection (a killed client's) still uses it."""
        quoted = conn.dialect.identifier_preparer.quote(name)
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")

    def create_privilege(self, error: DBAPIError) -> str | None:
        """The privilege (and how to grant it) whose lack made CREATE DATABASE fail; None when
        it failed for another reason."""
        return None

    def _no_privilege(self, privilege: str) -> ConfigError:
        return ConfigError(
            f"user {self.url.username or ''!r} may not create a scratch database on the server at"
            f" {self._server()}; it needs {privilege}. Nothing was changed"
        )

    def _server(self) -> str:
        return (self.url.host or "localhost") + (f":{self.url.port}" if self.url.port else "")

    def _drop_scratch(self, admin: Engine, name: str, created: bool) -> None:
        try:
            with admin.connect() as conn:
                self.drop_database(conn, name)
        except Exception as exc:  # never hides how the rehearsal ended
            if created:
                logger.warning(
                    "Could not drop the rehearsal's scratch database {} on {}: {}; drop it by hand",
                    name,
                    self._server(),
                    exc,
                )
            else:
                logger.debug("No scratch database {} to drop: {}", name, exc)


def schema_hash(conn: Connection, queries: Sequence[str], ignore: Sequence[str]) -> str:
    """A hash of (table, description) rows from catalog queries, without ignored tables."""
    digest = hashlib.sha256()
    for query in queries:
        for table, described in conn.exec_driver_sql(query):
            if not ignored(str(table).strip('"'), ignore):
                digest.update(f"{table}\0{described}\n".encode())
    return digest.hexdigest()


def run_tool(command: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    """Run a database client tool; OSError with its message when it fails or is missing."""
    try:
        done = subprocess.run(
            command, env=env, input=stdin, capture_output=True, text=True, timeout=3600
        )
    except FileNotFoundError as exc:
        raise OSError(f"{command[0]} is not installed (the database's client tools)") from exc
    if done.returncode != 0:
        raise OSError(f"{command[0]} failed: {done.stderr.strip()[:500]}")
    return done.stdout
