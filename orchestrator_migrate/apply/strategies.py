"""How a plan that fails part-way is undone, and what the next start recovers first: one
strategy per backend's undo mode, chosen here and nowhere else."""

from __future__ import annotations

from typing import Protocol

from loguru import logger
from sqlalchemy.engine import Connection, Engine

from ..backends.base import Backend, Undo
from ..backup.files import find
from ..config.settings import Settings
from ..context import Run
from ..model.attempt import Attempt
from ..model.outcome import Outcome


class Strategy(Protocol):
    """What the attempt does around applying, by how the backend undoes a failure."""

    # Whether a process that finds the schema already matching must record that under the
    # lock (where another process's DDL is visible before its history row).
    record_matching_under_lock: bool

    def needs_backup(self, settings: Settings) -> bool:
        """Whether a backup is taken before the plan."""

    def recover(self, run: Run, engine: Engine) -> None:
        """Under the lock, before anything else: undo what a run that died left behind."""

    def before_apply(self, run: Run, conn: Connection, attempt: Attempt) -> None:
        """Just before the first DDL statement."""

    def after_failure(self, run: Run, conn: Connection, attempt: Attempt) -> None:
        """After a failure and the transaction's rollback: put the database back."""


class InTransaction:
    """DDL is transactional: the rollback of the transaction undoes the whole plan."""

    record_matching_under_lock = False

    def needs_backup(self, settings: Settings) -> bool:
        return settings.backup

    def recover(self, run: Run, engine: Engine) -> None:
        """A run that died rolled back with its transaction: nothing to recover."""

    def before_apply(self, run: Run, conn: Connection, attempt: Attempt) -> None:
        """Nothing: the plan and its history row commit together."""

    def after_failure(self, run: Run, conn: Connection, attempt: Attempt) -> None:
        """The transaction's rollback undid the plan, but for what committed ahead of it (new
        enum values): their undo, newest first."""
        if not attempt.committed:
            return
        with conn.begin():
            for operation in reversed(attempt.committed):
                for statement in operation.undo or ():
                    conn.exec_driver_sql(statement)


class FromBackup:
    """DDL commits statement by statement: the backup taken before the plan undoes it, now
    or, when this process dies part-way, by the next holder of the lock."""

    record_matching_under_lock = True

    def needs_backup(self, settings: Settings) -> bool:
        return True  # even with BACKUP=false: it is the only way back

    def recover(self, run: Run, engine: Engine) -> None:
        with engine.connect() as conn, conn.begin():
            stale = run.recorder.in_progress(conn)
            entries = run.recorder.entries(conn) if stale else []
        if stale is None:
            return
        restored = False
        if stale.backup_id:
            info = find(run.settings.backup_path(), stale.backup_id)
            logger.warning(
                "Run #{} (pid {} on {}) died part-way; restoring {} first",
                stale.id,
                stale.pid,
                stale.host,
                info.id,
            )
            run.backend.restore_from(info.path)
            restored = True
        with engine.connect() as conn, conn.begin():
            if restored:
                run.recorder.reinstate(conn, entries, stale.backup_id or "")
            run.recorder.mark_interrupted(conn, stale, restored)

    def before_apply(self, run: Run, conn: Connection, attempt: Attempt) -> None:
        # Say first what is under way, so that the next holder of the lock can put the backup
        # back if this process dies part-way.
        run.recorder.record_attempt(conn, attempt, Outcome.IN_PROGRESS)
        conn.commit()
        conn.begin()

    def after_failure(self, run: Run, conn: Connection, attempt: Attempt) -> None:
        if attempt.backup is None:
            return
        with conn.begin():
            fingerprint = run.backend.fingerprint(conn, run.settings.ignore_tables)
        if fingerprint != attempt.fingerprint_before:
            logger.warning(
                "Restoring {} after a failure part-way through the plan", attempt.backup.id
            )
            run.backend.restore_from(attempt.backup.path)


_STRATEGIES: dict[Undo, Strategy] = {Undo.TRANSACTION: InTransaction(), Undo.BACKUP: FromBackup()}


def strategy_for(backend: Backend) -> Strategy:
    """The strategy for the backend's undo mode."""
    return _STRATEGIES[backend.undo]
