"""How a run ends: one enum for results, errors and the history."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How a run ended."""

    UP_TO_DATE = "up_to_date"
    AHEAD = "ahead"
    APPLIED = "applied"
    PLANNED = "planned"
    REFUSED = "refused"
    FAILED_RESTORED = "failed_restored"
    FAILED = "failed"
    LOCK_TIMEOUT = "lock_timeout"
    INVALID = "invalid"  # a setting, flag or models reference is wrong; nothing touched
