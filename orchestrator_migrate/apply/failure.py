"""A failed attempt: put the database back, record it, and say what happened in a typed error."""

from __future__ import annotations

from loguru import logger
from sqlalchemy.engine import Connection

from ..context import Run
from ..model.attempt import Attempt
from ..model.errors import MigrateError, MigrationFailed, MigrationFailedNotRestored
from .strategies import Strategy


def failed(
    run: Run, conn: Connection, attempt: Attempt, strategy: Strategy, exc: BaseException
) -> MigrateError:
    """Turn an exception during apply into a typed error, after checking the rollback held."""
    reason = _reason(exc, run.settings.migration_timeout)
    try:
        strategy.after_failure(run, conn, attempt)
        with conn.begin():
            now = run.backend.fingerprint(conn, run.settings.ignore_tables)
            restored = now == attempt.fingerprint_before
            run.recorder.record_failure(conn, attempt, restored, reason)
    except Exception as record_exc:  # the database may be what failed
        logger.warning("Could not record the failed run in the history: {}", record_exc)
        restored = False
    if restored:
        error: MigrateError = MigrationFailed(
            f"Database migration failed and was rolled back, the database is unchanged: {reason}"
        )
    else:
        where = f"; restore backup {attempt.backup.path}" if attempt.backup else ""
        error = MigrationFailedNotRestored(
            f"Database migration failed and the database may be changed: {reason}{where}"
        )
    logger.error("Database migration failed: {}", reason)
    error.plan = attempt.plan
    return error


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
