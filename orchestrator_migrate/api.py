"""The modern Python API: migrate(), check(), plan(), history()."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData

from .history import HistoryEntry
from .plan import Plan
from .result import MigrationResult
from .runner import execute, prepare_run
from .settings import Settings, load_settings


def _settings(settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    if settings is not None and not overrides:
        return settings
    if settings is not None:
        return settings.model_copy(update=overrides)
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
    from .history import Recorder

    resolved = _settings(settings, overrides)
    backend = backend_for(resolved.database_url())
    engine = backend.create_engine(read_only=True)
    try:
        with engine.connect().execution_options(read_only=True) as conn, conn.begin():
            return Recorder().entries(conn, limit)
    finally:
        engine.dispose()
