"""orchestrator_migrate: keep a SQL database in step with its SQLAlchemy models at every start.

Everything importable from here is the public API; other modules may change.
"""

from .api import (
    add_mcp_tools,
    backups_list,
    backups_prune,
    check,
    export_alembic,
    health,
    history,
    migrate,
    plan,
    rehearse,
    restore_backup,
    rollback,
    status,
)
from .compat import (
    AutoMigrationSystem,
    execute_startup_migration,
    initialize_database_with_migration,
)
from .config.settings import Settings, load_settings
from .model.backup_info import BackupInfo
from .model.changes import Change, ChangeKind
from .model.entries import HistoryEntry
from .model.errors import (
    ConfigError,
    ExitCode,
    LockTimeout,
    MigrateError,
    MigrationFailed,
    MigrationFailedNotRestored,
    RefusedChange,
    TargetError,
)
from .model.events import AfterApply, AfterBackup, BeforeApply, Event, Hook, OnFailure
from .model.plan import Operation, Plan
from .model.result import MigrationResult, Outcome
from .version import __version__

__all__ = [
    "AfterApply",
    "AfterBackup",
    "AutoMigrationSystem",
    "BackupInfo",
    "BeforeApply",
    "Change",
    "ChangeKind",
    "ConfigError",
    "Event",
    "ExitCode",
    "HistoryEntry",
    "Hook",
    "LockTimeout",
    "MigrateError",
    "MigrationFailed",
    "MigrationFailedNotRestored",
    "MigrationResult",
    "OnFailure",
    "Operation",
    "Outcome",
    "Plan",
    "RefusedChange",
    "Settings",
    "TargetError",
    "__version__",
    "add_mcp_tools",
    "backups_list",
    "backups_prune",
    "check",
    "execute_startup_migration",
    "export_alembic",
    "health",
    "history",
    "initialize_database_with_migration",
    "load_settings",
    "migrate",
    "plan",
    "rehearse",
    "restore_backup",
    "rollback",
    "status",
]
