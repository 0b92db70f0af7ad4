"""The modern Python API: migrate(), check(), plan(), history()."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData

from .apply.runner import execute
from .config.settings import Settings, load_settings
from .context import prepare_run
from .model.backup_info import BackupInfo
from .model.entries import HistoryEntry
from .model.plan import Plan
from .model.result import MigrationResult


def _settings(settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    if settings is not None and not overrides:
        return settings
    if settings is not None:
        # Validate the overrides like any other value; the given settings win over the sources.
        return load_settings({**settings.model_dump(), **overrides}, environ={})
    return load_settings(overrides)


def migrate(
    settings: Settings | None = None, *, metadata: MetaData | None = None, **overrides: Any
) -> MigrationResult:
    """Bring the database up to date; raises a MigrateError subclass when refused or failed.

    Settings come from the environment and config files unless given; keyword overrides
    (e.g. db_url=..., backup=False) take precedence like CLI flags.
    """
    return execute(prepare_run(_settings(settings, overrides), metadata))


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
    backup_id: str, settings: Settings | None = None, **overrides: Any
) -> MigrationResult:
    """Replace the database with a backup, after backing up the current one; keeps the history."""
    from .undo.restore import find_backup, restore

    run = prepare_run(_settings(settings, overrides), MetaData())
    return restore(run, find_backup(run, backup_id), f"restore of {backup_id}")


def rollback(
    settings: Settings | None = None,
    *,
    use_backup: bool = False,
    to: int | None = None,
    **overrides: Any,
) -> MigrationResult:
    """Undo the newest applied run (or every run after history id `to`): by inverse SQL, or
    from the backup taken before it with use_backup=True."""
    from .undo.rollback import rollback_by_sql, rollback_last, rollback_to

    run = prepare_run(_settings(settings, overrides), MetaData())
    if not use_backup:
        return rollback_by_sql(run, to)
    return rollback_to(run, to) if to is not None else rollback_last(run)
