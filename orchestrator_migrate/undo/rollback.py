"""Rollback: undo the newest applied run (or every run after one) from the backup taken before
it, or by inverse SQL in one transaction, checked against the schema recorded before the run."""

from __future__ import annotations

import time
from typing import Any

from loguru import logger
from sqlalchemy import and_, func, inspect, select, text
from sqlalchemy import column as column_
from sqlalchemy import table as table_
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnClause, ColumnElement

from ..apply.strategies import strategy_for
from ..backends.base import Undo
from ..context import Run
from ..model.attempt import Attempt, elapsed_ms
from ..model.backup_info import BackupInfo
from ..model.changes import KINDS, ChangeKind
from ..model.entries import HistoryEntry
from ..model.errors import MigrationFailed, RefusedChange
from ..model.names import quote_table, split_key
from ..model.outcome import Outcome
from ..model.plan import Plan
from ..model.result import MigrationResult
from .restore import find_backup, read_entries, restore


def rollback_last(run: Run) -> MigrationResult:
    """Restore the backup taken before the newest applied run."""
    entries = read_entries(run)
    applied = [e for e in entries if e.outcome == Outcome.APPLIED]
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
    entries = read_entries(run)
    later = sorted(
        (e for e in entries if e.outcome == Outcome.APPLIED and (e.id or 0) > history_id),
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
    one transaction, checked against the schema recorded before each run. Where DDL commits as
    it goes (MariaDB), a backup is taken first and restored if the rollback fails part-way."""
    started = time.monotonic()
    _runs_to_undo(read_entries(run), after_id)  # refuse before touching anything
    engine = run.backend.create_engine()
    try:
        lock = run.backend.lock(run.settings.lock_timeout / 1000, run.settings.lock_name)
        with lock, engine.connect() as conn:
            strategy_for(run.backend).recover(run, engine)  # a run or rollback that died
            net = _SafetyNet(run, conn, started)
            conn.begin()
            try:
                history_id, described = _undo_by_sql(run, conn, after_id, started)
                net.done()
                conn.commit()
            except RefusedChange:
                conn.rollback()
                net.restore_if_moved()
                raise
            except Exception as exc:
                conn.rollback()
                net.restore_if_moved()
                raise MigrationFailed(
                    f"rollback failed and was undone, the database is unchanged: {exc}"
                ) from exc
    finally:
        engine.dispose()
    logger.info("Rolled back {} by SQL in {}ms", described, elapsed_ms(started))
    return MigrationResult(Outcome.APPLIED, Plan(), elapsed_ms(started), history_id=history_id)


class _SafetyNet:
    """Where a failed statement cannot be rolled back with its transaction, the backup taken
    before the rollback's first statement, restored if the schema moved; and, as for a run,
    the record that the rollback is under way, so that the next holder of the lock restores
    that backup if this process dies part-way."""

    def __init__(self, run: Run, conn: Connection, started: float) -> None:
        from ..apply.stages import backup

        self.run = run
        self.conn = conn
        self.backup: BackupInfo | None = None
        if run.backend.undo is Undo.BACKUP:
            with conn.begin():
                self.fingerprint = run.backend.fingerprint(conn, run.settings.ignore_tables)
                self.backup = backup(run, conn)
                facts = Attempt("", started, run.clock(), self.fingerprint, backup=self.backup)
                run.recorder.record_attempt(conn, facts, Outcome.IN_PROGRESS)

    def done(self) -> None:
        """The rollback is recorded: it is no longer under way."""
        if self.backup is not None:
            self.run.recorder.clear_in_progress(self.conn)

    def restore_if_moved(self) -> None:
        if self.backup is None:
            return
        with self.conn.begin():
            now = self.run.backend.fingerprint(self.conn, self.run.settings.ignore_tables)
            if now == self.fingerprint:
                self.run.recorder.clear_in_progress(self.conn)
        if now != self.fingerprint:
            logger.warning(
                "Restoring {} after a failure part-way through the rollback", self.backup.id
            )
            self.run.backend.restore_from(self.backup.path)


def _undo_by_sql(
    run: Run, conn: Connection, after_id: int | None, started: float
) -> tuple[int, str]:
    """Reverse the runs newest first, mark them rolled back and record the rollback."""
    undone = _runs_to_undo(run.recorder.entries(conn), after_id)
    fp_before = run.backend.fingerprint(conn, run.settings.ignore_tables)
    facts = Attempt("", started, run.clock(), fp_before)
    statements: list[str] = []
    for entry in undone:  # newest first
        statements += _reverse_one(run, conn, entry)
    ids = [e.id or 0 for e in undone]
    run.recorder.mark_rolled_back(conn, ids)
    fp_after = run.backend.fingerprint(conn, run.settings.ignore_tables)
    described = ", ".join(f"#{i}" for i in ids)
    note = {"kind": "rollback_sql", "description": f"rolled back {described}"}
    history_id = run.recorder.record_undo(conn, facts, Outcome.ROLLBACK, fp_after, note, statements)
    return history_id, described


def _runs_to_undo(entries: list[HistoryEntry], after_id: int | None) -> list[HistoryEntry]:
    applied = [e for e in entries if e.outcome == Outcome.APPLIED]  # newest first
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
    changes = entry.changes
    kinds = {c["kind"] for c in changes}
    if any(c.get("destructive") for c in changes):
        raise RefusedChange(
            f"run #{entry.id} dropped data that only its backup holds; nothing changed. Use"
            " `orchestrator-migrate rollback --use-backup`"
        )
    # A server records each operation's undo; where it did not (SQLite rebuilds from the
    # snapshot), the kinds say what inverse SQL can undo.
    recorded = all(op.get("undo") is not None for op in entry.operations)
    one_way = sorted(k for k in kinds & _KNOWN if not KINDS[ChangeKind(k)].sql_reversible)
    if one_way and not recorded:
        raise RefusedChange(
            f"run #{entry.id} made changes that inverse SQL cannot undo ({', '.join(one_way)});"
            " nothing changed. Use `orchestrator-migrate rollback --use-backup`"
        )
    for table in entry.created_tables():
        rows = conn.exec_driver_sql(
            f"SELECT count(*) FROM {quote_table(conn.dialect, table)}"
        ).scalar_one()
        if rows:
            raise RefusedChange(
                f"table {table}, created by run #{entry.id}, now holds {rows} rows that the"
                " rollback would delete; nothing changed. Move or delete them first, or use"
                " `rollback --use-backup`"
            )
    renamed = entry.renamed_columns()
    for table, snap in entry.schema_before.items():
        _refuse_new_column_data(conn, entry, table, snap["columns"], renamed.get(table, {}))
    sql = run.backend.reverse_sql(conn, entry)
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
    kept = {renamed.get(c, c) for c in old}
    schema, bare = split_key(table)
    for column in inspect(conn).get_columns(bare, schema):
        name, default = column["name"], column.get("default")
        if name in kept:
            continue
        value: ColumnClause[Any] = column_(name)
        differs: ColumnElement[bool] = value.is_not(None)
        if default is not None:
            differs = and_(differs, value.is_distinct_from(text(f"({default})")))
        count = conn.execute(
            select(func.count()).select_from(table_(bare, schema=schema)).where(differs)
        ).scalar_one()
        if count:
            raise RefusedChange(
                f"column {table}.{name}, added by run #{entry.id}, holds {count} values the"
                " rollback would lose; nothing changed. Use `rollback --use-backup` to return"
                " to the backup, or clear them first"
            )


_KNOWN = {kind.value for kind in ChangeKind}
