"""The write phase's steps: refuse, back up, apply, and turn a failure into a typed error."""

from __future__ import annotations

from datetime import datetime

from loguru import logger
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from ..backup import files as backups
from ..config.filters import ignored
from ..history import record
from ..model.backup_info import BackupInfo
from ..model.errors import MigrateError, MigrationFailed, MigrationFailedNotRestored, RefusedChange
from ..model.plan import ChangeKind, Plan
from .context import Run


def refuse_if_needed(conn: Connection, plan: Plan) -> None:
    """Refuse, before any change, a plan whose data-dependent changes the data does not fit."""
    from ..planning.checks import refusals

    problems = refusals(conn, plan)
    if problems:
        raise RefusedChange(
            "migration refused, nothing changed: " + "; ".join(p.message for p in problems),
            tuple(problems),
        )


def refuse_if_too_slow(conn: Connection, plan: Plan, limit_ms: int) -> int:
    """Refuse, before any backup, a plan estimated over the limit; returns the estimate."""
    from ..planning.estimate import estimate_ms

    estimate = estimate_ms(conn, plan)
    if limit_ms and estimate > limit_ms:
        raise RefusedChange(
            f"Estimated execution time ({seconds_text(estimate)}) exceeds maximum allowed"
            f" ({seconds_text(limit_ms)}); nothing changed. Run it in a maintenance window with a"
            " higher MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT, or split the model change"
        )
    return estimate


def has_tables(conn: Connection, ignore: list[str]) -> bool:
    """Whether the database holds any table but ours: an empty one needs no backup."""
    return any(not ignored(name, ignore) for name in inspect(conn).get_table_names())


def backup(run: Run, conn: Connection) -> BackupInfo:
    """Take the backup, prune old ones, warn about space; refuse when it cannot be written."""
    directory = run.settings.backup_path()
    try:
        info = backups.create(run.backend, conn, directory, run.clock())
    except Exception as exc:  # disk full, read-only, file too large: refuse, change nothing
        raise RefusedChange(
            f"migration refused, nothing changed: cannot write a backup to {directory}: {exc}"
            " (fix MCP_TASK_ORCHESTRATOR_BACKUP_DIR, or set MCP_TASK_ORCHESTRATOR_BACKUP=false)"
        ) from exc
    logger.info("Backup created: {}", info.id)
    removed = backups.prune(directory, run.settings.backup_retention_days)
    if removed:
        logger.info(
            "Removed {} backups older than {} days",
            len(removed),
            run.settings.backup_retention_days,
        )
    warning = backups.storage_warning(directory, run.settings.backup_warn_size_mb)
    if warning:
        logger.warning(warning)
    return info


def apply(run: Run, conn: Connection, plan: Plan) -> Plan:
    """Execute the plan; after a table rename, plan and execute what else differs on it."""
    executed = list(plan.operations)
    _execute(conn, plan)
    if any(c.kind is ChangeKind.RENAME_TABLE for c in plan.changes):
        rest = run.plan(conn)
        _execute(conn, rest)
        executed += rest.operations
    return Plan(tuple(executed), plan.retained)


def _execute(conn: Connection, plan: Plan) -> None:
    for operation in plan.operations:
        logger.debug("Applying: {}", operation.description)
        for statement in operation.sql:
            conn.exec_driver_sql(statement)


def failed(
    run: Run,
    conn: Connection,
    exc: BaseException,
    plan: Plan,
    models_fp: str,
    fp_before: str,
    backup_info: BackupInfo | None,
    started_at: datetime,
    started: float,
    estimate: int | None,
) -> MigrateError:
    """Turn an exception during apply into a typed error, after checking the rollback held."""
    reason = _reason(exc, run.settings.migration_timeout)
    try:
        _restore_if_half_applied(run, conn, fp_before, backup_info)
        with conn.begin():
            run.recorder.clear_in_progress(conn)
            restored = run.backend.fingerprint(conn, run.settings.ignore_tables) == fp_before
            row = record.entry(
                run,
                started_at,
                "failed_restored" if restored else "failed",
                plan,
                models_fp,
                fp_before,
                None,
                backup_info,
                started,
                error=reason,
            )
            run.recorder.ensure(conn)
            run.recorder.record(conn, row)
    except Exception as record_exc:  # the database may be what failed
        logger.warning("Could not record the failed run in the history: {}", record_exc)
        restored = False
    if restored:
        error: MigrateError = MigrationFailed(
            f"Database migration failed and was rolled back, the database is unchanged: {reason}"
        )
    else:
        where = f"; restore backup {backup_info.path}" if backup_info else ""
        error = MigrationFailedNotRestored(
            f"Database migration failed and the database may be changed: {reason}{where}"
        )
    logger.error("Database migration failed: {}", reason)
    error.plan = plan
    return error


def recover_interrupted(run: Run, engine: Engine) -> None:
    """A run that died part-way (its marker is still there while we hold the lock) is undone
    from its backup before anything else, so the schema is never left in between."""
    from ..undo.restore import find_backup, keep_history

    with engine.connect() as conn, conn.begin():
        stale = run.recorder.in_progress(conn)
        entries = run.recorder.entries(conn) if stale else []
    if stale is None:
        return
    restored = False
    if stale.backup_id:
        info = find_backup(run, stale.backup_id)
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
            keep_history(run, conn, entries, stale.backup_id or "")
        h = run.recorder.history.c
        conn.execute(
            run.recorder.history.update()
            .where(h.id == stale.id)
            .values(
                outcome="interrupted_restored" if restored else "interrupted",
                error="the process died part-way"
                + ("; its backup was restored" if restored else "; nothing to restore"),
            )
        )
        run.recorder.forget_state(conn)


def _restore_if_half_applied(
    run: Run, conn: Connection, fp_before: str, backup_info: BackupInfo | None
) -> None:
    """Where DDL commits statement by statement, put the backup back after a failure."""
    if run.backend.transactional_ddl or backup_info is None:
        return
    with conn.begin():
        changed = run.backend.fingerprint(conn, run.settings.ignore_tables) != fp_before
    if changed:
        logger.warning("Restoring {} after a failure part-way through the plan", backup_info.id)
        run.backend.restore_from(backup_info.path)


def _reason(exc: BaseException, limit_ms: int) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc) else repr(exc)
    if "lock timeout" in text.lower():
        return (
            "a table stayed locked by another transaction (a long-running query?), so the"
            " migration gave up instead of blocking every reader behind it; the next start"
            " tries again"
        )
    if "interrupted" in text.lower() or "canceling statement" in text.lower():
        return (
            f"exceeded MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT ({limit_ms}ms) and was interrupted"
        )
    return text


def seconds_text(ms: int) -> str:
    """35000 -> '35s', 1500 -> '1.5s', 2 -> '0.002s'."""
    return f"{ms / 1000:g}s"
