"""The result of a run, with the seed's attribute names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..model.backup_info import BackupInfo
from .errors import ExitCode, MigrateError, Refusal
from .outcome import Outcome
from .plan import Plan

__all__ = ["MigrationResult", "Outcome"]


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
    refusals: tuple[Refusal, ...] = ()
    # How long this process waited for the migration lock, and held it (None: it never took it).
    lock_wait_ms: int | None = None
    lock_hold_ms: int | None = None

    @classmethod
    def from_error(cls, error: BaseException) -> MigrationResult:
        """The result of a run that raised error: its outcome, plan and refusals."""
        if not isinstance(error, MigrateError):
            message = str(error) or type(error).__name__
            text = f"{type(error).__name__}: {message.splitlines()[0]}"
            return cls(Outcome.FAILED, error_message=text, exit_code=ExitCode.FAILED_NOT_RESTORED)
        return cls(
            error.outcome,
            error.plan if isinstance(error.plan, Plan) else Plan(),
            error_message=str(error) or type(error).__name__,
            exit_code=error.exit_code,
            refusals=tuple(error.refusals),
        )

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
            "refusals": [r.to_dict() for r in self.refusals],
            "lock_wait_ms": self.lock_wait_ms,
            "lock_hold_ms": self.lock_hold_ms,
        }
