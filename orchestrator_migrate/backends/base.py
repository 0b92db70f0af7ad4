"""The one small protocol every database backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import MetaData
from sqlalchemy.engine import URL, Connection, Engine

from ..model.changes import Change
from ..model.entries import HistoryEntry
from ..model.plan import Operation
from ..progress import Progress
from .lock import MigrationLock

# The name of every throwaway copy a rehearsal migrates: a file, or a scratch database.
REHEARSAL_PREFIX = "om_rehearsal_"


class Undo(StrEnum):
    """How a plan that fails part-way is undone on a backend."""

    TRANSACTION = "transaction"  # DDL is transactional: the plan rolls back with its transaction
    BACKUP = "backup"  # DDL commits as it goes: the backup taken before the plan is restored


class Backend(Protocol):
    """Everything dialect-specific: engine, lock, types, DDL, backup, verify, time limit."""

    name: str
    url: URL
    backup_suffix: str
    undo: Undo
    # The type of our own tables' JSON and SQL columns (a run's SQL can pass 64 KiB).
    long_text: Any
    # The database rewrites the SQL of generated columns and partial indexes as it stores it
    # (so the comparison asks it how it spells the models' own).
    rewrites_expressions: bool
    # The Index keyword that makes an index partial here ("postgresql_where"), if any.
    where_option: str | None
    # Whether tables may live in schemas of their own (schema= in the models), and those the
    # models use besides the connection's default one (set once the models are known).
    supports_schemas: bool
    schemas: tuple[str, ...]
    # Told how long work goes (a rebuild's copy, a backup, a restore); logs by default.
    progress: Progress

    def create_engine(self, read_only: bool = False) -> Engine:
        """An engine whose transactions cover DDL; read_only never writes, not even a file."""

    def lock(self, timeout_s: float, lock_name: str) -> MigrationLock:
        """The cross-process migration lock for this database."""

    def prepare(self) -> None:
        """Make the database reachable (e.g. create the SQLite file's directory)."""

    def types_differ(self, inspected_type: Any, metadata_type: Any) -> bool:
        """Whether a reflected column type must change to match the model's type."""

    def same_kind(self, dropped_type: Any, added_type: Any) -> bool:
        """Whether a dropped and an added column hold the same kind of value (a likely rename)."""

    def more_changes(self, conn: Connection, metadata: MetaData) -> list[Change]:
        """Differences Alembic's comparison does not report (PostgreSQL: new enum values)."""

    def scratch(self, conn: Connection) -> AbstractContextManager[Connection]:
        """A connection on which a temporary table can be created and dropped while conn's
        transaction is open, without committing it or waiting for its locks."""

    def index_names(self, conn: Connection, table: str) -> set[str]:
        """Every index on table, those its reflection skips (SQLite's expression indexes) too."""

    def fingerprint(self, conn: Connection, ignore: Sequence[str]) -> str:
        """A stable hash of the database schema (not its data), without our own tables."""

    def compile(
        self, conn: Connection, changes: Sequence[Change], metadata: MetaData
    ) -> list[Operation]:
        """The operations, with their SQL, that turn the database into the models."""

    def backup_to(self, conn: Connection, destination: Path) -> None:
        """Write a consistent copy of the database to destination."""

    def check_backup(self, path: Path) -> None:
        """Raise when the copy at path is not a readable, intact database."""

    def snapshot(self, conn: Connection, tables: Sequence[str]) -> dict[str, Any]:
        """The definitions a rollback needs to rebuild these tables as they are now."""

    def reverse_sql(self, conn: Connection, entry: HistoryEntry) -> list[str]:
        """SQL that undoes the recorded run entry: its recorded inverse statements (servers),
        or the created tables dropped and the others rebuilt as its snapshot shows (SQLite)."""

    def reset_sequence(self, conn: Connection, table: str, column: str) -> None:
        """After rows were inserted with explicit ids, make the next generated id follow them."""

    def restore_from(self, path: Path) -> None:
        """Replace the whole database with the copy at path (the caller holds the lock)."""

    def throwaway_copy(self, workdir: Path) -> AbstractContextManager[URL]:
        """A consistent copy of the database, taken while writers run, for a rehearsal to
        migrate: a file in workdir, or a scratch database on the server (named
        REHEARSAL_PREFIX...), yielded as its URL and removed afterwards whatever happens;
        ConfigError naming the privilege when the user may not create one."""

    def verify(self, conn: Connection, operations: Sequence[Operation]) -> list[str]:
        """Problems found after applying (integrity, foreign keys, row counts); empty when sound."""

    def integrity_problems(self, conn: Connection) -> list[str]:
        """What a health check should flag in the database as it is (cheap enough for a probe):
        a corrupt file, broken foreign keys, invalid indexes, leftovers of ours."""

    def time_limit(self, conn: Connection, seconds: float) -> AbstractContextManager[None]:
        """Interrupt statements on conn after seconds; the interrupted statement raises."""
