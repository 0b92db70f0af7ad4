"""The result of a run, with the seed's attribute names."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .backup import BackupInfo
from .errors import ExitCode
from .plan import Plan


class Outcome(StrEnum):
    """How a run ended."""

    UP_TO_DATE = "up_to_date"
    AHEAD = "ahead"
    APPLIED = "applied"
    PLANNED = "planned"
    REFUSED = "refused"
    FAILED_RESTORED = "failed_restored"
    FAILED = "failed"


@dataclass(frozen=True)
class MigrationResult:
    """What a run found and did."""

    outcome: Outcome
    plan: Plan = field(default_factory=Plan)
    execution_time_ms: int = 0
    backup_info: BackupInfo | None = None
    error_message: str | None = None
    warnings: tuple[str, ...] = ()
    history_id: int | None = None
    exit_code: ExitCode = ExitCode.OK

    @property
    def success(self) -> bool:
        """True unless the run was refused or failed."""
        return self.outcome in (Outcome.UP_TO_DATE, Outcome.AHEAD, Outcome.APPLIED, Outcome.PLANNED)

    @property
    def migration_needed(self) -> bool:
        """True when the models and the database differed at the start of the run."""
        return not self.plan.empty

    @property
    def operations_executed(self) -> int:
        """How many operations were applied and committed."""
        return len(self.plan.operations) if self.outcome is Outcome.APPLIED else 0

    @property
    def backup_created(self) -> bool:
        """Whether a backup was written."""
        return self.backup_info is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "outcome": self.outcome.value,
            "success": self.success,
            "exit_code": int(self.exit_code),
            "migration_needed": self.migration_needed,
            "operations_executed": self.operations_executed,
            "execution_time_ms": self.execution_time_ms,
            "backup_created": self.backup_created,
            "backup_info": self.backup_info.to_dict() if self.backup_info else None,
            "error_message": self.error_message,
            "warnings": list(self.warnings),
            "history_id": self.history_id,
            "plan": self.plan.to_dict(),
        }
