"""orchestrator_migrate: keep a SQL database in step with its SQLAlchemy models at every start.

Everything importable from here is the public API; other modules may change.
"""

from .api import (
    backups_list,
    backups_prune,
    check,
    history,
    migrate,
    plan,
    restore_backup,
    rollback,
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
from .model.plan import Operation, Plan
from .model.result import MigrationResult, Outcome
from .version import __version__

__all__ = [
    "AutoMigrationSystem",
    "BackupInfo",
    "Change",
    "ChangeKind",
    "ConfigError",
    "ExitCode",
    "HistoryEntry",
    "LockTimeout",
    "MigrateError",
    "MigrationFailed",
    "MigrationFailedNotRestored",
    "MigrationResult",
    "Operation",
    "Outcome",
    "Plan",
    "RefusedChange",
    "Settings",
    "TargetError",
    "__version__",
    "backups_list",
    "backups_prune",
    "check",
    "execute_startup_migration",
    "history",
    "initialize_database_with_migration",
    "load_settings",
    "migrate",
    "plan",
    "restore_backup",
    "rollback",
]
