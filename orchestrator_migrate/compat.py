"""The seed's API (execute_startup_migration, AutoMigrationSystem, ...) over the modern one.

Called from a server, a failed migration logs a warning and returns a failed result so that the
server can start in a degraded mode, as the seed promised; the CLI exits non-zero instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import MetaData

from .api import check, migrate
from .model.result import MigrationResult


def _graceful(overrides: dict[str, Any], metadata: MetaData | None) -> MigrationResult:
    try:
        return migrate(metadata=metadata, **overrides)
    except Exception as exc:  # a server must still start: report, never raise
        logger.warning("Database migration failed: {}", exc)
        return MigrationResult.from_error(exc)


def execute_startup_migration(
    database_url: str | None = None,
    base_dir: str | Path | None = None,
    *,
    metadata: MetaData | None = None,
    **overrides: Any,
) -> MigrationResult:
    """Migrate at server start; never raises, returns a result with success and error_message."""
    if database_url is not None:
        overrides["db_url"] = database_url
    if base_dir is not None:
        overrides["base_dir"] = Path(base_dir)
    return _graceful(overrides, metadata)


def initialize_database_with_migration(
    base_dir: str | Path | None = None,
    db_path: str | Path | None = None,
    *,
    metadata: MetaData | None = None,
) -> bool:
    """Migrate the server's database before it starts; True when it is ready."""
    overrides: dict[str, Any] = {}
    if base_dir is not None:
        overrides["base_dir"] = Path(base_dir)
    if db_path is not None:
        overrides["db_path"] = Path(db_path)
    return _graceful(overrides, metadata).success


class AutoMigrationSystem:
    """Manual control over one database, as in the seed's recovery procedures."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        metadata: MetaData | None = None,
        **overrides: Any,
    ) -> None:
        self.overrides = dict(overrides)
        if database_url is not None:
            self.overrides["db_url"] = database_url
        self.metadata = metadata

    def check_migration_status(self) -> dict[str, Any]:
        """{'migration_needed': bool, 'differences': [...], 'retained': [...], 'plan': {...}}."""
        result = check(metadata=self.metadata, **self.overrides)
        return {
            "migration_needed": result.migration_needed,
            "differences": [op.description for op in result.plan.operations],
            "retained": [c.description for c in result.plan.retained],
            "sql": result.plan.sql,
        }

    def rollback_last_migration(self, use_backup: bool = False) -> MigrationResult:
        """Undo the newest applied run; only use_backup=True is available so far."""
        from .api import rollback

        try:
            return rollback(use_backup=use_backup, **self.overrides)
        except Exception as exc:  # like the migration hook: report, never raise
            logger.warning("Rollback failed: {}", exc)
            return MigrationResult.from_error(exc)

    def execute_auto_migration(self, force_backup: bool = True) -> MigrationResult:
        """Migrate now; force_backup takes a backup even when BACKUP is off."""
        overrides = dict(self.overrides)
        if force_backup:
            overrides["backup"] = True
        return _graceful(overrides, self.metadata)
