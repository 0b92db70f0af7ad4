"""Health: HEALTHY, WARNING or CRITICAL with the reasons, and an exit code a probe can use.

Readiness semantics: a database with no history yet is healthy (the next start creates it); one
ahead of this process's models (an old replica during a rollout) is healthy with a note. Only
what stops the database from serving is critical: it cannot be reached, a run died part-way and
was not put back, a failed run left it unrestored, or its integrity check fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import MetaData

from ..config.settings import Settings
from ..model.errors import ConfigError, DatabaseUnavailable, MigrateError
from ..model.outcome import Outcome
from ..model.result import MigrationResult
from .status import Status, status


class Level(StrEnum):
    """The overall verdict; its exit code is 0, 1 or 2."""

    HEALTHY = "HEALTHY"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"

    @property
    def exit_code(self) -> int:
        return list(Level).index(self)


@dataclass(frozen=True)
class Reason:
    """One finding: its level, a short code for alerts, and a sentence for humans."""

    level: Level
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level.value, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Health:
    """The verdict, why, and the status it was read from (None when the database was out of
    reach)."""

    reasons: tuple[Reason, ...]
    notes: tuple[str, ...]
    status: Status | None

    @property
    def level(self) -> Level:
        order = list(Level)
        return max((r.level for r in self.reasons), key=order.index, default=Level.HEALTHY)

    @property
    def exit_code(self) -> int:
        return self.level.exit_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.level.value,
            "exit_code": self.exit_code,
            "reasons": [r.to_dict() for r in self.reasons],
            "notes": list(self.notes),
            "details": None if self.status is None else self.status.to_dict(),
        }

    def lines(self) -> list[str]:
        out = [self.level.value]
        out += [f"  {r.level.value}: {r.message}" for r in self.reasons]
        out += [f"  {note}" for note in self.notes]
        return out


def health(settings: Settings, metadata: MetaData | None = None) -> Health:
    """Judge the database; never raises for a database problem (that is CRITICAL)."""
    try:
        found = status(settings, metadata)
    except MigrateError as exc:
        message = MigrationResult.from_error(exc).error_message or "the database cannot be read"
        reason = Reason(Level.CRITICAL, _code(exc), message)
        return Health((reason,), (), None)
    return Health(tuple(reasons(found)), _notes(found), found)


def reasons(found: Status) -> list[Reason]:
    """Every finding in a status, most serious first."""
    out = [Reason(Level.CRITICAL, "integrity", f"integrity: {p}") for p in found.integrity]
    last = found.last_run
    if found.interrupted:
        out.append(
            Reason(
                Level.CRITICAL,
                "interrupted",
                "a run died part-way and nobody is finishing it; the next start puts it back",
            )
        )
    if last is not None and last.outcome == Outcome.FAILED:
        out.append(
            Reason(
                Level.CRITICAL, "failed", f"the last run failed and was not restored: {last.error}"
            )
        )
    if last is not None and last.outcome in (Outcome.FAILED_RESTORED, Outcome.INTERRUPTED_RESTORED):
        out.append(
            Reason(
                Level.WARNING,
                "failed_restored",
                f"the last run failed; the database was put back as before: {last.error}",
            )
        )
    if found.state == "pending":
        count = len(found.plan.operations)
        out.append(Reason(Level.WARNING, "pending", f"migration pending: {count} operations"))
    out += [
        Reason(Level.WARNING, "refused", f"a run would be refused: {r.message}")
        for r in found.refusals
    ]
    if found.drift:
        out.append(Reason(Level.WARNING, "drift", found.drift))
    if found.backups.over_limit:
        b = found.backups
        out.append(
            Reason(
                Level.WARNING,
                "backup_storage",
                f"backups take {b.bytes / 1048576:.1f} MiB in {b.directory}, over the"
                f" MCP_TASK_ORCHESTRATOR_BACKUP_WARN_SIZE_MB limit of {b.limit_mb}",
            )
        )
    if found.lock.held_too_long and found.lock.holder is not None:
        out.append(
            Reason(
                Level.WARNING,
                "lock_held",
                f"the migration lock is held by {found.lock.holder.describe()} for"
                f" {found.lock.held_for_s:.0f}s, longer than LOCK_TIMEOUT"
                f" ({found.lock.timeout_ms}ms): starting replicas give up waiting",
            )
        )
    order = list(Level)
    return sorted(out, key=lambda r: -order.index(r.level))


def _code(error: MigrateError) -> str:
    """unreachable (the database), config (a setting or the models), or error (reading it)."""
    if isinstance(error, DatabaseUnavailable):
        return "unreachable"
    return "config" if isinstance(error, ConfigError) else "error"


def _notes(found: Status) -> tuple[str, ...]:
    notes = list(found.notes)
    if found.state == "fresh":
        notes.append("no run recorded yet: the next start creates the schema")
    return tuple(notes)
