"""Restore: put a verified backup back, after backing up the database as it is; the history
survives and records it."""

from __future__ import annotations

import time

from loguru import logger
from sqlalchemy.engine import Connection

from ..backup import files as backups
from ..context import Run
from ..model.attempt import Attempt, elapsed_ms
from ..model.backup_info import BackupInfo
from ..model.entries import HistoryEntry
from ..model.errors import MigrationFailedNotRestored, RefusedChange
from ..model.names import split_key
from ..model.outcome import Outcome
from ..model.plan import Plan
from ..model.result import MigrationResult


def find_backup(run: Run, backup_id: str) -> BackupInfo:
    """The backup with this id; ConfigError saying where it was looked for."""
    return backups.find(run.settings.backup_path(), backup_id)


def restore(run: Run, info: BackupInfo, reason: str) -> MigrationResult:
    """Replace the database with a verified backup; the history survives and records it."""
    started = time.monotonic()
    backend = run.backend
    try:
        backend.check_backup(info.path)
    except Exception as exc:
        raise RefusedChange(f"backup {info.id} is not usable, nothing changed: {exc}") from exc
    engine = backend.create_engine()
    try:
        with run.backend.lock(run.settings.lock_timeout / 1000, run.settings.lock_name):
            with engine.connect() as conn, conn.begin():
                entries = run.recorder.entries(conn)
                fp_before = backend.fingerprint(conn, run.settings.ignore_tables)
                safety = backups.create(backend, conn, run.settings.backup_path(), run.clock())
            logger.info("Backup created: {} (the database before the restore)", safety.id)
            engine.dispose()  # no connection of ours may hold the file while it is replaced
            facts = Attempt("", started, run.clock(), fp_before, backup=safety)
            _put_back(run, info, safety)
            with engine.connect() as conn, conn.begin():
                history_id = _record(run, conn, facts, entries, f"{reason}: restored {info.id}")
    finally:
        engine.dispose()
    logger.info("Backup restored: {} ({}ms)", info.id, elapsed_ms(started))
    return MigrationResult(
        Outcome.APPLIED, Plan(), elapsed_ms(started), safety, history_id=history_id
    )


def _put_back(run: Run, info: BackupInfo, safety: BackupInfo) -> None:
    try:
        run.backend.restore_from(info.path)
    except Exception as exc:
        raise MigrationFailedNotRestored(
            f"restoring {info.id} failed: {exc}; the database before the restore is"
            f" saved as {safety.path}"
        ) from exc


def _record(
    run: Run, conn: Connection, facts: Attempt, entries: list[HistoryEntry], what: str
) -> int:
    """The history the backup predates back in place, and a row for the restore."""
    assert facts.backup is not None
    restored_id = what.rsplit("restored ", 1)[-1]
    run.recorder.reinstate(conn, entries, restored_id)
    fp_after = run.backend.fingerprint(conn, run.settings.ignore_tables)
    note = {"kind": "restore_backup", "description": what}
    return run.recorder.record_undo(conn, facts, Outcome.RESTORED, fp_after, note)


def read_entries(run: Run) -> list[HistoryEntry]:
    """The history, read without writing anything (a missing database reads as empty)."""
    engine = run.backend.create_engine(read_only=True)
    try:
        with engine.connect().execution_options(read_only=True) as conn, conn.begin():
            _adopt_recorded_schemas(run, conn)
            return run.recorder.entries(conn)
    finally:
        engine.dispose()


def _adopt_recorded_schemas(run: Run, conn: Connection) -> None:
    """Undo runs without the models: the schemas they used are those of the tables the history
    records as ours, so that fingerprints and backups cover the same schemas as the runs."""
    if not run.backend.supports_schemas or run.backend.schemas:
        return
    tables = run.recorder.owned(conn).get("tables", set())
    schemas = {split_key(t)[0] for t in tables}
    run.backend.schemas = tuple(sorted(s for s in schemas if s))
