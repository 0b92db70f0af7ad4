"""SQLite: file lock, backups (the file copied under a read transaction, or the backup API),
ALTER where SQLite allows it and a table rebuild otherwise."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    event,
    inspect,
    text,
)
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.schema import CreateTable

from ..config.filters import ignored
from ..model.changes import Change, ChangeKind, constraint_signature
from ..model.entries import HistoryEntry
from ..model.errors import ConfigError
from ..model.plan import Operation
from ..model.tablecopy import check_signature, check_text, copy_tables
from ..progress import LogProgress, Progress, tracked
from .base import REHEARSAL_PREFIX, Undo
from .lock import FileMigrationLock, MigrationLock, ProcessLocalLock
from .reach import guard

REBUILD_PREFIX = "_om_new_"
TIME_CHECK_EVERY_VM_STEPS = 1000
# Where a connection keeps the progress handler of its time limit (SQLite allows one handler).
_DEADLINE_HANDLER = "om_deadline_handler"
# A rebuild's row copy: INSERT INTO "_om_new_<table>" ... SELECT ... FROM "<table>".
_COPY_INTO = re.compile(r'^INSERT INTO "' + REBUILD_PREFIX + r'((?:[^"]|"")+)"')
# The virtual machine's jumps that close a loop over rows.
_LOOP_JUMPS = frozenset({"Next", "Prev", "Goto", "SorterNext", "VNext"})
BACKUP_PAGES_PER_STEP = 1024
# The child that copies the database file's first SIZE bytes over DESTINATION, in the kernel
# where it can, printing the bytes done. DESTINATION is never truncated first: ext4 writes out a
# file truncated to zero as it is closed, so the copy would return only once on disk, leaving
# the check nothing to overlap with.
_COPY_PROGRAM = """
import errno, os, sys
source, destination, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
src = os.open(source, os.O_RDONLY)
dst = os.open(destination, os.O_WRONLY | os.O_CREAT, 0o600)
done, kernel = 0, hasattr(os, "copy_file_range")
while done < size:
    n = min(size - done, 1 << 25)
    try:
        if kernel:
            n = os.copy_file_range(src, dst, n, done, done)
        else:
            n = os.pwrite(dst, os.pread(src, n, done), done)
    except OSError as exc:  # no copy in the kernel between these two: read and write instead
        unsupported = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)
        if not kernel or exc.errno not in unsupported:
            raise
        kernel = False
        continue
    if n == 0:
        sys.exit(f"{source} ends at {done} bytes, before {size}")
    done += n
    print(done, flush=True)
if os.fstat(dst).st_size > size:
    os.ftruncate(dst, size)
"""

# How SQLAlchemy stores each declared type on SQLite; equal families need no migration.
_TEXT_LIKE = ("CHAR", "CLOB", "TEXT", "DATE", "TIME", "JSON", "UUID", "ENUM")
_REAL_LIKE = ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")


def storage_family(declared: str) -> str:
    """The family of a declared SQLite column type (SQLite affinity, as SQLAlchemy uses it)."""
    decl = declared.upper()
    if "INT" in decl or decl.startswith("BOOL"):
        return "integer"
    if any(word in decl for word in _TEXT_LIKE):
        return "text"
    if not decl or "BLOB" in decl:
        return "blob"
    if any(word in decl for word in _REAL_LIKE):
        return "real"
    return "numeric"


def value_kind(declared: str) -> str:
    """What a declared SQLite type holds, finer than its storage family: text, date and time,
    boolean, integer, JSON, or the declared name itself."""
    decl = declared.upper().split("(")[0].strip()
    if decl.startswith("BOOL"):
        return "boolean"
    if "INT" in decl:
        return "integer"
    if "DATE" in decl or "TIME" in decl:
        return "datetime"
    if any(word in decl for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    return decl


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SQLiteBackend:
    """The embedded default."""

    name = "sqlite"
    backup_suffix = ".db"
    long_text: Any = Text
    undo = Undo.TRANSACTION
    rewrites_expressions = False  # it keeps the CREATE statement as written
    where_option: str | None = "sqlite_where"
    supports_schemas = False
    schemas: tuple[str, ...] = ()

    def __init__(
        self, url: URL, busy_timeout_s: float = 60.0, progress: Progress | None = None
    ) -> None:
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self.progress: Progress = progress or LogProgress()
        database = url.database or ""
        self.in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        self.path: Path | None = None if self.in_memory else Path(database).absolute()

    def create_engine(self, read_only: bool = False) -> Engine:
        url = self.url
        if read_only and self.path is not None:
            # Plan against the file without writing to it; a missing file plans as empty.
            if self.path.exists():
                url = URL.create(
                    "sqlite", database=f"file:{self.path}", query={"mode": "ro", "uri": "true"}
                )
            else:
                url = URL.create("sqlite")
        engine = sa_create_engine(
            url, connect_args={"timeout": self.busy_timeout_s, "isolation_level": None}
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, record: Any) -> None:
            # Foreign keys stay off on our connection: a rebuild must never fire ON DELETE.
            dbapi_connection.execute("PRAGMA foreign_keys=OFF")

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            read_only = conn.get_execution_options().get("read_only", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        @event.listens_for(engine, "do_execute")
        def _execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
            # A rebuild's row copy runs with its progress told; True: it has run.
            if parameters:  # never a copy's: its SQL is complete
                return False
            return self._copy_with_progress(cursor, statement, context.root_connection.info)

        return guard(engine, self.url)

    def prepare(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def lock(self, timeout_s: float, lock_name: str) -> MigrationLock:
        if self.path is None:
            return ProcessLocalLock(timeout_s)
        return FileMigrationLock(self.path.with_name(self.path.name + ".lock"), timeout_s)

    def types_differ(self, inspected_type: Any, metadata_type: Any) -> bool:
        from sqlalchemy.dialects import sqlite

        dialect = sqlite.dialect()
        old = storage_family(inspected_type.compile(dialect=dialect))
        new = storage_family(metadata_type.compile(dialect=dialect))
        return old != new

    def more_changes(self, conn: Connection, metadata: MetaData) -> list[Change]:
        return []  # an Enum is a VARCHAR here: nothing beyond Alembic's comparison

    def same_kind(self, dropped_type: Any, added_type: Any) -> bool:
        # Storage families are too coarse here: TEXT and DATETIME share one, yet a text column
        # dropped beside a new date column is no rename.
        from sqlalchemy.dialects import sqlite

        dialect = sqlite.dialect()
        old = value_kind(dropped_type.compile(dialect=dialect))
        return old == value_kind(added_type.compile(dialect=dialect))

    @contextmanager
    def scratch(self, conn: Connection) -> Iterator[Connection]:
        """conn itself, inside a savepoint rolled back afterwards."""
        savepoint = conn.begin_nested()
        try:
            yield conn
        finally:
            savepoint.rollback()

    def index_names(self, conn: Connection, table: str) -> set[str]:
        rows = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)
        )
        return {str(r[0]) for r in rows}

    def fingerprint(self, conn: Connection, ignore: Sequence[str]) -> str:
        rows = conn.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
            " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).all()
        digest = hashlib.sha256()
        for type_, name, tbl_name, sql in rows:
            if ignored(tbl_name, ignore):
                continue
            digest.update(f"{type_}\0{name}\0{tbl_name}\0{_normalized(sql or '')}\n".encode())
        return digest.hexdigest()

    def compile(
        self, conn: Connection, changes: Sequence[Change], metadata: MetaData
    ) -> list[Operation]:

        new_tables = {c.table for c in changes if c.kind is ChangeKind.ADD_TABLE}
        by_table: dict[str, list[Change]] = {}
        for change in changes:
            by_table.setdefault(change.table, []).append(change)
        operations: list[Operation] = []
        for table, table_changes in by_table.items():
            if table not in new_tables and any(self._needs_rebuild(c) for c in table_changes):
                operations.append(self._rebuild(conn, table, table_changes, metadata))
                continue
            for change in table_changes:
                operations.append(
                    Operation(
                        kind=change.kind.value,
                        table=table,
                        description=change.description,
                        sql=tuple(self._direct_sql(conn, change)),
                        changes=(change,),
                        reversible=True,
                    )
                )
        return operations

    @staticmethod
    def _direct_sql(conn: Connection, change: Change) -> list[str]:
        from .ddl import rename_sql, render

        if change.kind in (ChangeKind.RENAME_TABLE, ChangeKind.RENAME_COLUMN):
            return rename_sql(conn.dialect, change)
        return render(conn.dialect, change.op)

    @staticmethod
    def _needs_rebuild(change: Change) -> bool:
        direct = (
            ChangeKind.ADD_INDEX,
            ChangeKind.DROP_INDEX,
            ChangeKind.ADD_TABLE,
            ChangeKind.DROP_TABLE,
            ChangeKind.RENAME_TABLE,
            ChangeKind.RENAME_COLUMN,
        )
        if change.kind in direct:
            return False
        if change.kind is ChangeKind.ADD_COLUMN:
            col: Column[Any] = change.op.column
            if change.fill is not None:
                return True
            default = col.server_default
            plain_default = default is None or isinstance(getattr(default, "arg", None), str)
            return bool(
                col.primary_key
                or col.unique
                or col.foreign_keys
                or (not col.nullable and default is None)
                or not plain_default
            )
        return True

    def _rebuild(
        self, conn: Connection, table: str, changes: list[Change], metadata: MetaData
    ) -> Operation:
        """Copy the table into one built from the models, swap, and recreate what depends on it."""
        q = _quote(table)
        old_columns = {row[1]: row for row in conn.exec_driver_sql(f"PRAGMA table_info({q})")}
        target = self._target(conn, metadata, table, changes, old_columns)
        create = str(CreateTable(target).compile(dialect=conn.dialect))
        sql = _swap_sql(
            table,
            _renamed_create(create, REBUILD_PREFIX + table),
            _copy_sql(table, target, changes, old_columns),
            self._dependants(conn, table, changes, {c.name for c in target.columns}),
        )
        rows = conn.exec_driver_sql(f"SELECT count(*) FROM {q}").scalar_one()
        summary = "; ".join(c.description for c in changes)
        return Operation(
            kind="rebuild_table",
            table=table,
            description=f"rebuild table {table}: {summary}",
            sql=tuple(sql),
            changes=tuple(changes),
            reversible=not any(c.destructive for c in changes),
            rebuilt_rows=int(rows),
        )

    def _target(
        self,
        conn: Connection,
        metadata: MetaData,
        table: str,
        changes: list[Change],
        old_columns: dict[str, Any],
    ) -> Table:
        """The table as the models define it, with what the database keeps beyond them: the
        columns not dropped (as the database declares them) and a DBA's constraints."""
        dropping = {c.column for c in changes if c.kind is ChangeKind.DROP_COLUMN}
        retiring = {c.column for c in changes if c.kind is ChangeKind.RETIRE_COLUMN}
        # A renamed column's values move to its new name; the old name is not kept beside it.
        dropping |= {c.name for c in changes if c.kind is ChangeKind.RENAME_COLUMN}
        scratch = MetaData()
        copy_tables(metadata, scratch)
        target = scratch.tables[table]
        for name, (_, _, decl, notnull, default, _pk) in old_columns.items():
            if name not in target.c and name not in dropping:
                target.append_column(
                    Column(
                        name,
                        _declared_type(decl),
                        nullable=not notnull or name in retiring,
                        server_default=text(default) if default is not None else None,
                    )
                )
        self._keep_foreign_constraints(conn, target, changes)
        return target

    def _dependants(
        self, conn: Connection, table: str, changes: list[Change], kept_columns: set[str]
    ) -> _Dependants:
        """The table's indexes (but those dropped or on dropped columns, plus those added),
        triggers, every view, and its AUTOINCREMENT counter."""
        from .ddl import render

        dropping = {c.name for c in changes if c.kind is ChangeKind.DROP_INDEX}
        master: Sequence[Any] = conn.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            " ORDER BY rowid"
        ).all()
        views = [(name, ddl) for type_, name, _, ddl in master if type_ == "view"]
        triggers = [ddl for type_, _, tbl, ddl in master if type_ == "trigger" and tbl == table]
        indexes = []
        for type_, name, tbl, ddl in master:
            if type_ != "index" or tbl != table or name in dropping:
                continue
            index_cols = {r[2] for r in conn.exec_driver_sql(f"PRAGMA index_info({_quote(name)})")}
            if index_cols <= kept_columns:
                indexes.append(ddl)
        for change in changes:
            if change.kind is ChangeKind.ADD_INDEX:
                indexes += render(conn.dialect, change.op)
        return _Dependants(indexes, triggers, views, self._sequence(conn, table))

    @staticmethod
    def _keep_foreign_constraints(conn: Connection, target: Table, changes: list[Change]) -> None:
        """Carry over UNIQUE, named CHECK and FOREIGN KEY constraints the database has and the
        models do not (a DBA's), unless this plan drops them (they were ours)."""
        dropping = {
            c.dropped_signature
            for c in changes
            if c.kind in (ChangeKind.DROP_UNIQUE, ChangeKind.DROP_FK)
        }
        modelled = {
            constraint_signature(target.name, kind, [c.name for c in con.columns])
            for con in target.constraints
            for kind in ["fk" if isinstance(con, ForeignKeyConstraint) else "unique"]
            if isinstance(con, UniqueConstraint | ForeignKeyConstraint)
        }
        insp = inspect(conn)
        for uc in insp.get_unique_constraints(target.name):
            cols = list(uc["column_names"])
            sig = constraint_signature(target.name, "unique", cols)
            if sig not in modelled | dropping and all(c in target.c for c in cols):
                target.append_constraint(UniqueConstraint(*cols))
        dropping_checks = {c.name for c in changes if c.kind is ChangeKind.DROP_CHECK}
        modelled_checks = {
            str(con.name) for con in target.constraints if isinstance(con, CheckConstraint)
        }
        dropping_texts = {c.owned_as for c in changes if c.kind is ChangeKind.DROP_CHECK}
        modelled_texts = {
            check_signature(target.name, check_text(con))
            for con in target.constraints
            if isinstance(con, CheckConstraint)
        }
        for ck in insp.get_check_constraints(target.name):
            name = ck.get("name")
            if name and name not in modelled_checks | dropping_checks:
                target.append_constraint(CheckConstraint(text(ck["sqltext"]), name=name))
            signature = check_signature(target.name, str(ck["sqltext"]))
            if not name and signature not in modelled_texts | dropping_texts:  # a DBA's
                target.append_constraint(CheckConstraint(text(ck["sqltext"])))
        for fk in insp.get_foreign_keys(target.name):
            cols, referred = list(fk["constrained_columns"]), fk["referred_table"]
            sig = constraint_signature(target.name, "fk", cols)
            if sig in modelled | dropping or not all(c in target.c for c in cols):
                continue
            scratch = target.metadata
            if referred not in scratch.tables:  # another application's table: a stub to refer to
                Table(referred, scratch, *(Column(c, Integer) for c in fk["referred_columns"]))
            target.append_constraint(
                ForeignKeyConstraint(
                    cols,
                    [f"{referred}.{c}" for c in fk["referred_columns"]],
                    ondelete=(fk.get("options") or {}).get("ondelete"),
                    onupdate=(fk.get("options") or {}).get("onupdate"),
                )
            )

    @staticmethod
    def _sequence(conn: Connection, table: str) -> int | None:
        has = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='sqlite_sequence'"
        ).first()
        if not has:
            return None
        row = conn.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
        ).first()
        return int(row[0]) if row else None

    def backup_to(self, conn: Connection, destination: Path) -> None:
        """One snapshot of the database, held by a read transaction from start to end: the file
        itself, copied in the kernel by a child process, when it holds that snapshot
        (_file_holds); else every page through the backup API. Not fsynced here: a backup's
        caller does it, a throwaway copy needs none."""
        if self.path is None:
            raise RuntimeError("an in-memory database has nothing to back up")
        name, what = self.path.name, f"Backing up {self.path.name}"
        source = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.busy_timeout_s)
        with closing(source), _read_snapshot(source) as (page_size, pages):
            size = page_size * pages
            if _file_holds(source, self.path) and _copy_file(
                self.path, destination, size, self.progress, what
            ):
                logger.debug("Backup of {}: the file, copied under a read transaction", name)
                return
            logger.debug("Backup of {}: through the backup API", name)
            with closing(sqlite3.connect(destination)) as target:
                _backup_pages(source, target, page_size, self.progress, what)

    def check_backup(self, path: Path) -> None:
        """quick_check, every page of the copy read: its b-trees and free pages, and that the
        pages its header counts are all in the file (a short copy is corrupt)."""
        # No memory map, though it reads a third faster: every page read would count in this
        # process's resident size, a database's worth of it.
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as copy:
            result = copy.execute("PRAGMA quick_check").fetchone()
        if not result or result[0] != "ok":
            raise RuntimeError(f"backup {path} failed its integrity check: {result}")

    def snapshot(self, conn: Connection, tables: Sequence[str]) -> dict[str, Any]:
        """The definitions a rollback needs to rebuild these tables as they are now."""
        found: dict[str, Any] = {}
        for table in tables:
            rows = conn.exec_driver_sql(
                "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
                " ORDER BY rowid",
                (table,),
            ).all()
            create = [sql for type_, sql in rows if type_ == "table"]
            if not create:
                continue
            found[table] = {
                "sql": create[0],
                "indexes": [sql for type_, sql in rows if type_ == "index"],
                "triggers": [sql for type_, sql in rows if type_ == "trigger"],
                "columns": [
                    r[1] for r in conn.exec_driver_sql(f"PRAGMA table_info({_quote(table)})")
                ],
                "sequence": self._sequence(conn, table),
            }
        return found

    def reverse_sql(self, conn: Connection, entry: HistoryEntry) -> list[str]:
        """SQL that drops the created tables and rebuilds the others as the snapshot shows."""
        before = entry.schema_before
        created = entry.created_tables()
        renamed_columns = entry.renamed_columns()
        views = [
            (name, sql)
            for name, sql in conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid"
            )
        ]
        sql = [f"DROP TABLE {_quote(table)}" for table in created]
        for table, snap in before.items():
            live = {r[1] for r in conn.exec_driver_sql(f"PRAGMA table_info({_quote(table)})")}
            now_called = renamed_columns.get(table, {})
            pairs = [(c, now_called.get(c, c)) for c in snap["columns"]]
            # A renamed column is live once its run has applied (an export reads the schema
            # before it).
            pairs = [(old, new) for old, new in pairs if new in live or old in now_called]
            into = ", ".join(_quote(old) for old, _ in pairs)
            select = ", ".join(_quote(new) for _, new in pairs)
            copy = (
                f"INSERT INTO {_quote(REBUILD_PREFIX + table)} ({into})"
                f" SELECT {select} FROM {_quote(table)}"
            )
            create = _renamed_create(snap["sql"], REBUILD_PREFIX + table)
            dependants = _Dependants(snap["indexes"], snap["triggers"], views, snap["sequence"])
            sql += _swap_sql(table, create, copy, dependants)
        return sql

    def reset_sequence(self, conn: Connection, table: str, column: str) -> None:
        """SQLite's rowid follows explicit ids by itself."""

    def restore_from(self, path: Path) -> None:
        if self.path is None:
            raise RuntimeError("an in-memory database cannot be restored from a file")
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        target = sqlite3.connect(self.path, timeout=self.busy_timeout_s)
        with closing(source), closing(target):
            # The backup API writes every page under the database's own locks, WAL included,
            # and holds the target's until the last page is in.
            _copy_pages(source, target, self.progress, f"Restoring {path.name}")

    @contextmanager
    def throwaway_copy(self, workdir: Path) -> Iterator[URL]:
        """A file in workdir, copied as a backup is (one snapshot while writers run, WAL
        included); removed afterwards with its journal and lock files. A database file not
        created yet is copied as an empty one."""
        if self.path is None:
            raise ConfigError(
                "an in-memory database has no copy to rehearse on; point"
                " MCP_TASK_ORCHESTRATOR_DB_PATH or _DB_URL at a database file"
            )
        copy = workdir / f"{REHEARSAL_PREFIX}{secrets.token_hex(6)}.db"
        try:
            if self.path.exists():
                engine = self.create_engine(read_only=True)
                try:
                    with engine.connect().execution_options(read_only=True) as conn:
                        self.backup_to(conn, copy)
                finally:
                    engine.dispose()
            yield URL.create("sqlite", database=str(copy))
        finally:
            for leftover in workdir.glob(copy.name + "*"):
                leftover.unlink(missing_ok=True)

    def verify(self, conn: Connection, operations: Sequence[Operation]) -> list[str]:
        problems = [
            f"quick_check: {row[0]}"
            for row in conn.exec_driver_sql("PRAGMA quick_check")
            if row[0] != "ok"
        ]
        # A table rebuilt under its old name may be renamed later in the plan.
        now_called = {
            str(c.name): c.table
            for op in operations
            for c in op.changes
            if c.kind is ChangeKind.RENAME_TABLE
        }
        rebuilt = {
            now_called.get(op.table, op.table): op.rebuilt_rows
            for op in operations
            if op.rebuilt_rows is not None
        }
        touched = set(rebuilt) | {now_called.get(op.table, op.table) for op in operations}
        tables = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            refs = {r[2] for r in conn.exec_driver_sql(f"PRAGMA foreign_key_list({_quote(table)})")}
            if table in touched or refs & touched:
                for row in conn.exec_driver_sql(f"PRAGMA foreign_key_check({_quote(table)})"):
                    problems.append(
                        f"foreign key violation: {row[0]} rowid {row[1]} references {row[2]}"
                    )
        for table, expected in rebuilt.items():
            actual = conn.exec_driver_sql(f"SELECT count(*) FROM {_quote(table)}").scalar_one()
            if actual != expected:
                problems.append(f"table {table}: {actual} rows after rebuild, {expected} before")
        leftovers = [t for t in tables if t.startswith(REBUILD_PREFIX)]
        problems += [f"temporary table {t} left behind" for t in leftovers]
        return problems

    def integrity_problems(self, conn: Connection) -> list[str]:
        problems = [
            f"quick_check: {row[0]}"
            for row in conn.exec_driver_sql("PRAGMA quick_check")
            if row[0] != "ok"
        ]
        problems += [
            f"foreign key violation: {row[0]} rowid {row[1]} references {row[2]}"
            for row in conn.exec_driver_sql("PRAGMA foreign_key_check")
        ]
        names = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")
        problems += [
            f"temporary table {r[0]} left behind" for r in names if r[0].startswith(REBUILD_PREFIX)
        ]
        return problems

    @contextmanager
    def time_limit(self, conn: Connection, seconds: float) -> Iterator[None]:
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        deadline = time.monotonic() + seconds

        def past_deadline() -> int:
            return 1 if time.monotonic() > deadline else 0

        dbapi.set_progress_handler(past_deadline, TIME_CHECK_EVERY_VM_STEPS)
        conn.info[_DEADLINE_HANDLER] = past_deadline
        try:
            yield
        finally:
            conn.info.pop(_DEADLINE_HANDLER, None)
            dbapi.set_progress_handler(None, 0)

    def _copy_with_progress(self, cursor: Any, statement: str, info: dict[Any, Any]) -> bool:
        """Run a rebuild's row copy (and return True), telling progress the rows copied so far;
        any other statement is left to run as usual (False). The rows done are counted from
        the virtual machine's steps, in the one progress handler SQLite allows, which keeps
        checking the time limit's deadline too."""
        match = _COPY_INTO.match(statement)
        if match is None:
            return False
        table = match.group(1).replace('""', '"')
        dbapi = cursor.connection
        total = int(dbapi.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()[0])
        per_row = _steps_per_row(dbapi, statement)
        deadline = info.get(_DEADLINE_HANDLER)
        with tracked(self.progress, f"Rebuilding table {table}", total, "rows") as advance:
            steps, told = 0, 0

            def handler() -> int:
                nonlocal steps, told
                steps += TIME_CHECK_EVERY_VM_STEPS
                rows = min(total, steps // per_row)
                if rows > told:
                    advance(rows - told)
                    told = rows
                return deadline() if deadline is not None else 0

            dbapi.set_progress_handler(handler, TIME_CHECK_EVERY_VM_STEPS)
            try:
                cursor.execute(statement)
            finally:
                dbapi.set_progress_handler(deadline, TIME_CHECK_EVERY_VM_STEPS if deadline else 0)
            advance(total - told)
        return True


def _steps_per_row(dbapi: sqlite3.Connection, statement: str) -> int:
    """How many virtual machine steps statement takes per row: the length of its loops (each
    closed by a jump back), from EXPLAIN; the one-time prologue after Init's target excluded."""
    program = dbapi.execute("EXPLAIN " + statement).fetchall()
    prologue = program[0][3] if program and program[0][1] == "Init" else len(program)
    loops = [
        int(address) - int(target) + 1
        for address, opcode, _, target, *_ in program
        if opcode in _LOOP_JUMPS and target < address < prologue
    ]
    return max(1, sum(loops))


def _copy_pages(
    source: sqlite3.Connection, target: sqlite3.Connection, progress: Progress, what: str
) -> None:
    """Copy source into target through the backup API, under one read transaction (so one
    snapshot even while writers work: no restart from their changes)."""
    with _read_snapshot(source) as (page_size, _):
        _backup_pages(source, target, page_size, progress, what)


@contextmanager
def _read_snapshot(source: sqlite3.Connection) -> Iterator[tuple[int, int]]:
    """A read transaction on source for the block (its snapshot taken before the block
    starts); the page size and the pages of that snapshot."""
    source.isolation_level = None
    source.execute("BEGIN")
    try:
        source.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        page_size = int(source.execute("PRAGMA page_size").fetchone()[0])
        pages = int(source.execute("PRAGMA page_count").fetchone()[0])
        yield page_size, pages
    finally:
        source.execute("ROLLBACK")


def _file_holds(source: sqlite3.Connection, path: Path) -> bool:
    """Whether the database file at path alone holds source's snapshot, and keeps holding it
    while source's read transaction lasts. With a rollback journal, always: the read lock keeps
    writers out of the file. With WAL, when a checkpoint asked after the snapshot was taken
    has copied the whole log into the file: the snapshot's read mark then keeps every later
    frame out of it. A newer frame, a reader holding the checkpoint back, or a file this
    process may not write leaves the log longer than what was copied: False."""
    if str(source.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        return True
    try:
        with closing(sqlite3.connect(path, timeout=0)) as other:
            busy, log, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error:
        return False
    return bool(busy == 0 and log == copied)


def _backup_pages(
    source: sqlite3.Connection,
    target: sqlite3.Connection,
    page_size: int,
    progress: Progress,
    what: str,
) -> None:
    """Copy source into target through the backup API, a step of pages at a time, telling
    progress the bytes copied."""
    pages = int(source.execute("PRAGMA page_count").fetchone()[0])
    with tracked(progress, what, pages * page_size, "bytes") as advance:
        told = 0

        def step(status: int, remaining: int, total: int) -> None:
            nonlocal told
            done = (total - remaining) * page_size
            if done > told:
                advance(done - told)
                told = done

        source.backup(target, pages=BACKUP_PAGES_PER_STEP, progress=step)


def _copy_file(source: Path, destination: Path, size: int, progress: Progress, what: str) -> bool:
    """Copy source's first size bytes over destination, telling progress the bytes done; False
    off POSIX (Windows locks byte ranges another process cannot read) or when this process's
    interpreter cannot start a Python child (an embedding program). In a child: closing a
    descriptor of the database file here would drop every lock SQLite holds on it in this
    process (POSIX locks belong to the process, not to the descriptor)."""
    python = sys.executable
    if os.name != "posix" or not python:
        return False
    if not Path(python).name.lower().startswith(("python", "pypy")):
        return False
    command = [python, "-I", "-S", "-c", _COPY_PROGRAM, str(source), str(destination), str(size)]
    with tempfile.TemporaryFile() as errors, tracked(progress, what, size, "bytes") as advance:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
        )
        assert proc.stdout is not None
        told = 0
        try:
            for line in proc.stdout:
                done = min(size, int(line))
                if done > told:
                    advance(done - told)
                    told = done
            proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: no copy may outlive the read transaction
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if proc.returncode != 0 or told != size:
            errors.seek(0)
            said = errors.read().decode("utf-8", "replace").strip().splitlines()[-1:]
            raise OSError(
                f"copying {source} to {destination} failed"
                f" (exit status {proc.returncode}, {told} of {size} bytes): {' '.join(said)}"
            )
    return True


def _copy_sql(table: str, target: Table, changes: list[Change], old_columns: dict[str, Any]) -> str:
    """INSERT ... SELECT from the old table into the new one: renamed columns from their old
    name, filled columns through COALESCE with their fill."""
    source = {str(c.column): str(c.name) for c in changes if c.kind is ChangeKind.RENAME_COLUMN}
    fills = {c.column: c.fill for c in changes if c.fill is not None}
    copied: list[str] = []
    selected: list[str] = []
    for column in target.columns:
        if column.computed is not None:
            continue  # SQLite computes it; it cannot be written
        src = source.get(column.name, column.name)
        expr = fills.get(column.name)
        if expr:
            exists = src in old_columns
            selected.append(f"COALESCE({_quote(src)}, ({expr}))" if exists else f"({expr})")
            copied.append(column.name)
        elif src in old_columns:
            selected.append(_quote(src))
            copied.append(column.name)
    cols = ", ".join(_quote(c) for c in copied)
    new = _quote(REBUILD_PREFIX + table)
    return f"INSERT INTO {new} ({cols}) SELECT {', '.join(selected)} FROM {_quote(table)}"


@dataclass(frozen=True)
class _Dependants:
    """What a rebuilt table takes along: its indexes and triggers, the views (all of them,
    since SQLite checks every view on a rename), and its AUTOINCREMENT counter."""

    indexes: list[str]
    triggers: list[str]
    views: list[tuple[str, str]]
    sequence: int | None


def _swap_sql(table: str, create_new: str, copy: str, dependants: _Dependants) -> list[str]:
    """The SQL of a table rebuild: views out, new table, copy, swap, dependants back."""
    indexes, triggers, views = dependants.indexes, dependants.triggers, dependants.views
    sequence = dependants.sequence
    q, new = _quote(table), _quote(REBUILD_PREFIX + table)
    sql = [f"DROP VIEW {_quote(name)}" for name, _ in views]
    sql += [
        create_new,
        copy,
        f"DROP TABLE {q}",
        # Legacy rename leaves other tables' triggers alone instead of failing on them.
        "PRAGMA legacy_alter_table=ON",
        f"ALTER TABLE {new} RENAME TO {q}",
        "PRAGMA legacy_alter_table=OFF",
    ]
    sql += indexes + triggers + [view_sql for _, view_sql in views]
    if sequence is not None:
        sql.append(f"UPDATE sqlite_sequence SET seq = {int(sequence)} WHERE name = '{table}'")
    return sql


_CREATE_HEAD = re.compile(r'^\s*CREATE\s+TABLE\s+(?:"((?:[^"]|"")+)"|([^\s(]+))\s*', re.IGNORECASE)


def _renamed_create(sql: str, new_name: str) -> str:
    """A CREATE TABLE statement with another table name."""
    match = _CREATE_HEAD.match(sql)
    if match is None:
        raise RuntimeError(f"unexpected CREATE TABLE statement: {sql[:80]}")
    return f"CREATE TABLE {_quote(new_name)} " + sql[match.end() :]


def _normalized(sql: str) -> str:
    """Whitespace and the quoting of a CREATE TABLE's name do not change a schema."""
    text = " ".join(sql.split())
    match = _CREATE_HEAD.match(text)
    if match is None:
        return text
    name = (match.group(1) or "").replace('""', '"') or match.group(2)
    return f"CREATE TABLE {name} " + text[match.end() :]


def _declared_type(declared: str) -> Any:
    """A type that renders exactly as the database declared it."""
    from sqlalchemy.types import UserDefinedType

    class Declared(UserDefinedType[Any]):
        cache_ok = True

        def get_col_spec(self, **kw: Any) -> str:
            return declared

    return Declared()
