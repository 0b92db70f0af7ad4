"""Rollback and restore: undo runs by inverse SQL or from their backups; the history survives."""

from __future__ import annotations

import dataclasses
import time

from loguru import logger
from sqlalchemy import update
from sqlalchemy.engine import Connection

from ..apply.context import Run, elapsed_ms
from ..backup import files as backups
from ..history.record import entry as new_entry
from ..model.backup_info import BackupInfo
from ..model.entries import HistoryEntry
from ..model.errors import ConfigError, MigrationFailed, MigrationFailedNotRestored, RefusedChange
from ..model.plan import Plan
from ..model.result import MigrationResult, Outcome


def find_backup(run: Run, backup_id: str) -> BackupInfo:
    """The backup with this id; ConfigError listing where it was looked for."""
    directory = run.settings.backup_path()
    for info in backups.listing(directory):
        if info.id == backup_id or info.path.name == backup_id:
            return info
    raise ConfigError(
        f"backup {backup_id!r} not found in {directory}; `orchestrator-migrate backups list`"
        " shows the backups there"
    )


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
            started_at = run.clock()
            try:
                backend.restore_from(info.path)
            except Exception as exc:
                raise MigrationFailedNotRestored(
                    f"restoring {info.id} failed: {exc}; the database before the restore is"
                    f" saved as {safety.path}"
                ) from exc
            with engine.connect() as conn, conn.begin():
                keep_history(run, conn, entries, info.id)
                fp_after = backend.fingerprint(conn, run.settings.ignore_tables)
                entry = new_entry(
                    run,
                    started_at,
                    "restored",
                    Plan(),
                    "",
                    fp_before,
                    fp_after,
                    safety,
                    started,
                    error=None,
                )
                note = [{"kind": "restore_backup", "description": f"{reason}: restored {info.id}"}]
                history_id = run.recorder.record(conn, dataclasses.replace(entry, operations=note))
                run.recorder.forget_state(conn)
    finally:
        engine.dispose()
    logger.info("Backup restored: {} ({}ms)", info.id, elapsed_ms(started))
    return MigrationResult(
        Outcome.APPLIED, Plan(), elapsed_ms(started), safety, history_id=history_id
    )


def keep_history(run: Run, conn: Connection, entries: list[HistoryEntry], backup_id: str) -> None:
    """Put back the history rows the backup predates and mark the undone runs rolled back."""
    run.recorder.ensure(conn)
    present = {e.id for e in run.recorder.entries(conn)}
    for entry in sorted(entries, key=lambda e: e.id or 0):
        if entry.id not in present:
            run.recorder.record(conn, entry, keep_id=True)
    undone_from = min((e.id or 0 for e in entries if e.backup_id == backup_id), default=None)
    if undone_from is not None:
        h = run.recorder.history.c
        conn.execute(
            update(run.recorder.history)
            .where(h.id >= undone_from, h.outcome.in_(("applied", "adopted")))
            .values(outcome="rolled_back")
        )


def _read_entries(run: Run) -> list[HistoryEntry]:
    """The history, read without writing anything (a missing database reads as empty)."""
    engine = run.backend.create_engine(read_only=True)
    try:
        with engine.connect().execution_options(read_only=True) as conn, conn.begin():
            return run.recorder.entries(conn)
    finally:
        engine.dispose()


def rollback_last(run: Run) -> MigrationResult:
    """Restore the backup taken before the newest applied run."""
    entries = _read_entries(run)
    applied = [e for e in entries if e.outcome == "applied"]
    if not applied:
        raise RefusedChange("nothing to roll back: no applied run in the history")
    last = applied[0]
    if not last.backup_id:
        raise RefusedChange(
            f"run #{last.id} took no backup (the database was empty or BACKUP was off);"
            " nothing changed"
        )
    return restore(run, find_backup(run, last.backup_id), f"rollback of run #{last.id}")


def rollback_to(run: Run, history_id: int) -> MigrationResult:
    """Undo every applied run after history_id by restoring the backup of the first of them."""
    entries = _read_entries(run)
    later = sorted(
        (e for e in entries if e.outcome == "applied" and (e.id or 0) > history_id),
        key=lambda e: e.id or 0,
    )
    if not later:
        raise RefusedChange(f"nothing to roll back: no applied run after #{history_id}")
    first = later[0]
    if not first.backup_id:
        raise RefusedChange(f"run #{first.id} took no backup; nothing changed")
    ids = ", ".join(f"#{e.id}" for e in later)
    return restore(run, find_backup(run, first.backup_id), f"rollback of runs {ids}")


def rollback_by_sql(run: Run, after_id: int | None = None) -> MigrationResult:
    """Undo the newest applied run (or every applied run after after_id) with inverse SQL, in
    one transaction, checked against the schema recorded before each run."""
    started = time.monotonic()
    _runs_to_undo(_read_entries(run), after_id)  # refuse before touching anything
    backend = run.backend
    engine = backend.create_engine()
    try:
        lock = run.backend.lock(run.settings.lock_timeout / 1000, run.settings.lock_name)
        with lock, engine.connect() as conn:
            tx = conn.begin()
            try:
                undone = _runs_to_undo(run.recorder.entries(conn), after_id)
                fp_before = backend.fingerprint(conn, run.settings.ignore_tables)
                statements: list[str] = []
                for entry in undone:  # newest first
                    sql = _reverse_one(run, conn, entry)
                    statements += sql
                started_at = run.clock()
                h = run.recorder.history.c
                ids = [e.id for e in undone]
                conn.execute(
                    update(run.recorder.history).where(h.id.in_(ids)).values(outcome="rolled_back")
                )
                fp_after = backend.fingerprint(conn, run.settings.ignore_tables)
                entry = new_entry(
                    run, started_at, "rollback", Plan(), "", fp_before, fp_after, None, started
                )
                described = ", ".join(f"#{i}" for i in ids)
                note = [{"kind": "rollback_sql", "description": f"rolled back {described}"}]
                history_id = run.recorder.record(
                    conn, dataclasses.replace(entry, operations=note, sql=statements)
                )
                run.recorder.forget_state(conn)
                tx.commit()
            except RefusedChange:
                tx.rollback()
                raise
            except Exception as exc:
                tx.rollback()
                raise MigrationFailed(
                    f"rollback failed and was undone, the database is unchanged: {exc}"
                ) from exc
    finally:
        engine.dispose()
    logger.info("Rolled back {} by SQL in {}ms", described, elapsed_ms(started))
    return MigrationResult(Outcome.APPLIED, Plan(), elapsed_ms(started), history_id=history_id)


def _runs_to_undo(entries: list[HistoryEntry], after_id: int | None) -> list[HistoryEntry]:
    applied = [e for e in entries if e.outcome == "applied"]  # newest first
    if after_id is not None:
        applied = [e for e in applied if (e.id or 0) > after_id]
    elif applied:
        applied = applied[:1]
    if not applied:
        where = f" after #{after_id}" if after_id is not None else ""
        raise RefusedChange(f"nothing to roll back: no applied run{where} in the history")
    return applied


def _reverse_one(run: Run, conn: Connection, entry: HistoryEntry) -> list[str]:
    """Execute the inverse of one run and check the schema is what it was before it."""
    changes = [c for op in entry.operations for c in op.get("changes", [])]
    kinds = {c["kind"] for c in changes}
    if any(c.get("destructive") for c in changes):
        raise RefusedChange(
            f"run #{entry.id} dropped data that only its backup holds; nothing changed. Use"
            " `orchestrator-migrate rollback --use-backup`"
        )
    if "rename_table" in kinds:
        raise RefusedChange(
            f"run #{entry.id} renamed a table; rolling that back by SQL is not supported,"
            " nothing changed. Use `orchestrator-migrate rollback --use-backup`"
        )
    quote = conn.dialect.identifier_preparer.quote
    created = sorted({c["table"] for c in changes if c["kind"] == "add_table"})
    for table in created:
        rows = conn.exec_driver_sql(f"SELECT count(*) FROM {quote(table)}").scalar_one()
        if rows:
            raise RefusedChange(
                f"table {table}, created by run #{entry.id}, now holds {rows} rows that the"
                " rollback would delete; nothing changed. Move or delete them first, or use"
                " `rollback --use-backup`"
            )
    renamed: dict[str, dict[str, str]] = {}
    for c in changes:
        if c["kind"] == "rename_column":
            renamed.setdefault(c["table"], {})[c["name"]] = c["column"]
    for table, snap in entry.schema_before.items():
        _refuse_new_column_data(conn, entry, table, snap["columns"], renamed.get(table, {}))
    sql = run.backend.reverse_sql(conn, entry.schema_before, created, renamed)
    for statement in sql:
        conn.exec_driver_sql(statement)
    problems = run.backend.verify(conn, [])
    now = run.backend.fingerprint(conn, run.settings.ignore_tables)
    if now != entry.fingerprint_before:
        problems.append(f"the schema is not the one recorded before run #{entry.id}")
    if problems:
        raise RuntimeError("; ".join(problems))
    return sql


def _refuse_new_column_data(
    conn: Connection, entry: HistoryEntry, table: str, old: list[str], renamed: dict[str, str]
) -> None:
    """Columns the run added lose their values in a rollback: refuse when they hold any."""
    quote = conn.dialect.identifier_preparer.quote
    kept = {renamed.get(c, c) for c in old}
    for row in conn.exec_driver_sql(f"PRAGMA table_info({quote(table)})"):
        name, default = row[1], row[4]
        if name in kept:
            continue
        differs = f"{quote(name)} IS NOT NULL"
        if default is not None:
            differs += f" AND {quote(name)} IS NOT ({default})"
        count = conn.exec_driver_sql(
            f"SELECT count(*) FROM {quote(table)} WHERE {differs}"
        ).scalar_one()
        if count:
            raise RefusedChange(
                f"column {table}.{name}, added by run #{entry.id}, holds {count} values the"
                " rollback would lose; nothing changed. Use `rollback --use-backup` to return"
                " to the backup, or clear them first"
            )
