"""The stages of an attempt under the lock: refuse, back up, execute."""

from __future__ import annotations

from loguru import logger
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ..backup import files as backups
from ..config.filters import ignored
from ..context import Run
from ..model.backup_info import BackupInfo
from ..model.errors import RefusedChange
from ..model.plan import Operation, Plan


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


def has_tables(conn: Connection, ignore: list[str], schemas: tuple[str, ...] = ()) -> bool:
    """Whether the database holds any table but ours, in the default schema or one the models
    use: an empty one needs no backup."""
    insp = inspect(conn)
    return any(
        not ignored(name, ignore)
        for schema in (None, *schemas)
        for name in insp.get_table_names(schema=schema)
    )


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


def execute(conn: Connection, plan: Plan, committed: list[Operation] | None = None) -> None:
    """Run the plan's statements, exactly those `plan --sql` shows, in order. The operations
    at its head that must commit first do, and are added to committed."""
    ahead = True
    for operation in plan.operations:
        logger.debug("Applying: {}", operation.description)
        for statement in operation.sql:
            conn.exec_driver_sql(statement)
        ahead = ahead and operation.commit_first
        if ahead and committed is not None:
            conn.commit()
            conn.begin()
            committed.append(operation)


def seconds_text(ms: int) -> str:
    """35000 -> '35s', 1500 -> '1.5s', 2 -> '0.002s'."""
    return f"{ms / 1000:g}s"
