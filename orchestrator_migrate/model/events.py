"""The events a hook receives, in the order a run meets them; each names the run's database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .backup_info import BackupInfo
from .errors import MigrateError
from .plan import Plan
from .result import MigrationResult


@dataclass(frozen=True)
class BeforeApply:
    """The plan is about to be applied, under the lock, after the pre-checks passed; nothing
    has changed yet. A hook that raises stops the run (exit 4, nothing changed)."""

    database: str
    plan: Plan


@dataclass(frozen=True)
class AfterBackup:
    """The backup taken before the change is written and verified; nothing has changed yet.
    A hook that raises stops the run (exit 4, nothing changed; the backup stays)."""

    database: str
    backup: BackupInfo
    plan: Plan


@dataclass(frozen=True)
class AfterApply:
    """The plan was applied, verified and committed. A hook that raises is logged; the
    migration stands."""

    database: str
    result: MigrationResult


@dataclass(frozen=True)
class OnFailure:
    """The run was refused or failed (result.outcome says whether the database was put back).
    A hook that raises is logged."""

    database: str
    error: MigrateError
    result: MigrationResult


Event = BeforeApply | AfterBackup | AfterApply | OnFailure
Hook = Callable[[Event], object]
