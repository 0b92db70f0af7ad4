"""How a run ends: one enum for results, errors and the history."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How a run ended (also the outcome column of the history)."""

    UP_TO_DATE = "up_to_date"
    AHEAD = "ahead"
    APPLIED = "applied"
    PLANNED = "planned"
    REFUSED = "refused"
    FAILED_RESTORED = "failed_restored"
    FAILED = "failed"
    LOCK_TIMEOUT = "lock_timeout"
    INVALID = "invalid"  # a setting, flag or models reference is wrong; nothing touched
    # Only in the history:
    ADOPTED = "adopted"  # models found already in force
    IN_PROGRESS = "in_progress"  # under way, where DDL commits statement by statement
    INTERRUPTED = "interrupted"  # died part-way, nothing to restore
    INTERRUPTED_RESTORED = "interrupted_restored"  # died part-way, its backup restored
    RESTORED = "restored"  # a backup put back
    ROLLBACK = "rollback"  # a rollback by inverse SQL
    ROLLED_BACK = "rolled_back"  # an applied run undone since


# Outcomes of runs whose models define the schema in force (not failed, not rolled back).
IN_FORCE = (Outcome.APPLIED, Outcome.ADOPTED)
