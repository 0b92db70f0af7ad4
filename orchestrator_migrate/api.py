"""The modern Python API: migrate(), check(), plan(), history()."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from loguru import logger
from sqlalchemy import MetaData

from .apply import hooks
from .apply.runner import execute
from .config.hooks import load_hooks
from .config.settings import Settings, load_settings
from .context import Run, prepare_run
from .model.backup_info import BackupInfo
from .model.entries import HistoryEntry
from .model.errors import MigrateError
from .model.events import AfterApply, OnFailure
from .model.outcome import Outcome
from .model.plan import Plan
from .model.result import MigrationResult
from .progress import Progress

if TYPE_CHECKING:
    from pathlib import Path

    from .operate.health import Health
    from .operate.rehearse import Rehearsal
    from .operate.status import Status


def _settings(settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    if settings is not None and not overrides:
        return settings
    if settings is not None:
        # Validate the overrides like any other value; the given settings win over the sources.
        return load_settings({**settings.model_dump(), **overrides}, environ={})
    return load_settings(overrides)


def migrate(
    settings: Settings | None = None,
    *,
    metadata: MetaData | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> MigrationResult:
    """Bring the database up to date; raises a MigrateError subclass when refused or failed.

    Settings come from the environment and config files unless given; keyword overrides
    (e.g. db_url=..., backup=False) take precedence like CLI flags.
    """
    resolved = _settings(settings, overrides)
    prepared = prepare_run(resolved, metadata, progress=progress)
    run = replace(prepared, hooks=load_hooks(resolved.hooks))
    try:
        result = execute(run)
    except MigrateError as exc:
        failure = MigrationResult.from_error(exc)
        hooks.after_change(run, OnFailure(run.url_for_humans, exc, failure))
        _after_run(run, failure)
        raise
    if result.outcome is Outcome.APPLIED:
        hooks.after_change(run, AfterApply(run.url_for_humans, result))
    _after_run(run, result)
    return result


def _after_run(run: Run, result: MigrationResult) -> None:
    """What follows every run, whatever its outcome: the metrics file, if one is asked for."""
    path = run.settings.metrics_path()
    if path is None:
        return
    from .operate.metrics import from_run, write_file

    figures = from_run(run.settings, run.url_for_humans, run.backend.name, result, time.time())
    try:
        write_file(path, figures)
    except OSError as exc:  # never fails a run that has already ended
        logger.warning("Could not write MCP_TASK_ORCHESTRATOR_METRICS_FILE {}: {}", path, exc)


def check(
    settings: Settings | None = None, *, metadata: MetaData | None = None, **overrides: Any
) -> MigrationResult:
    """Detect and plan without writing anything; result.migration_needed tells."""
    return execute(prepare_run(_settings(settings, overrides), metadata), dry_run=True)


def plan(
    settings: Settings | None = None, *, metadata: MetaData | None = None, **overrides: Any
) -> Plan:
    """The plan a run would apply now, with its SQL; writes nothing."""
    return check(settings, metadata=metadata, **overrides).plan


def history(
    settings: Settings | None = None, *, limit: int | None = None, **overrides: Any
) -> list[HistoryEntry]:
    """The recorded runs, newest first."""
    from .backends import backend_for
    from .history.recorder import Recorder

    resolved = _settings(settings, overrides)
    backend = backend_for(resolved.database_url())
    engine = backend.create_engine(read_only=True)
    try:
        with engine.connect().execution_options(read_only=True) as conn, conn.begin():
            return Recorder().entries(conn, limit)
    finally:
        engine.dispose()


def backups_list(settings: Settings | None = None, **overrides: Any) -> list[BackupInfo]:
    """The backups in the backup directory, oldest first."""
    from .backup.files import listing

    return listing(_settings(settings, overrides).backup_path())


def backups_prune(settings: Settings | None = None, **overrides: Any) -> list[BackupInfo]:
    """Remove backups older than BACKUP_RETENTION_DAYS; returns what was removed."""
    from .backup.files import prune

    resolved = _settings(settings, overrides)
    return prune(resolved.backup_path(), resolved.backup_retention_days)


def restore_backup(
    backup_id: str,
    settings: Settings | None = None,
    *,
    progress: Progress | None = None,
    **overrides: Any,
) -> MigrationResult:
    """Replace the database with a backup, after backing up the current one; keeps the history."""
    from .undo.restore import find_backup, restore

    run = prepare_run(_settings(settings, overrides), MetaData(), progress=progress)
    return restore(run, find_backup(run, backup_id), f"restore of {backup_id}")


def rollback(
    settings: Settings | None = None,
    *,
    use_backup: bool = False,
    to: int | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> MigrationResult:
    """Undo the newest applied run (or every run after history id `to`): by inverse SQL, or
    from the backup taken before it with use_backup=True."""
    from .undo.rollback import rollback_by_sql, rollback_last, rollback_to

    run = prepare_run(_settings(settings, overrides), MetaData(), progress=progress)
    if not use_backup:
        return rollback_by_sql(run, to)
    return rollback_to(run, to) if to is not None else rollback_last(run)


def status(
    settings: Settings | None = None, *, metadata: MetaData | None = None, **overrides: Any
) -> Status:
    """What `status --json` reports: pending work, retired and foreign objects, drift, the last
    run, backups, the lock and integrity; writes nothing."""
    from .operate.status import status as read_status

    return read_status(_settings(settings, overrides), metadata)


def health(
    settings: Settings | None = None, *, metadata: MetaData | None = None, **overrides: Any
) -> Health:
    """HEALTHY, WARNING or CRITICAL with the reasons (`health.level`, `health.exit_code`);
    a database out of reach is CRITICAL, not an exception."""
    from .operate.health import health as judge

    return judge(_settings(settings, overrides), metadata)


def add_mcp_tools(server: Any, settings: Settings | None = None) -> None:
    """Add the tools orchestrator_database_health and orchestrator_migration_status to a server
    built on the official MCP SDK (2.x, extra `mcp`); settings are read at each call unless
    given."""
    from .operate.mcp_tools import add_tools

    add_tools(server, settings)


def rehearse(
    settings: Settings | None = None, *, metadata: MetaData | None = None, **overrides: Any
) -> Rehearsal:
    """Apply the pending plan to a throwaway copy of the database, measure and verify it, drop
    the copy; the database itself is only read."""
    from .operate.rehearse import rehearse as on_a_copy

    return on_a_copy(_settings(settings, overrides), metadata)


def export_alembic(
    directory: Path,
    settings: Settings | None = None,
    *,
    message: str | None = None,
    **overrides: Any,
) -> Path | None:
    """Write the pending plan as an Alembic revision in directory; None when nothing is
    pending."""
    from .operate.alembic_export import export_alembic as write_revision

    return write_revision(_settings(settings, overrides), directory, message)
