"""One attempt to migrate: the facts its stages gather, from which its history row is made."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .backup_info import BackupInfo
from .plan import Operation, Plan


@dataclass
class Attempt:
    """What one attempt found and did so far; each stage fills in its part."""

    models_fingerprint: str
    started: float  # time.monotonic() at the start of the run
    started_at: datetime
    fingerprint_before: str = ""
    plan: Plan = field(default_factory=Plan)
    estimate_ms: int | None = None
    backup: BackupInfo | None = None
    schema_before: dict[str, Any] = field(default_factory=dict)
    committed: list[Operation] = field(default_factory=list)  # ahead of the plan's transaction


def elapsed_ms(since: float) -> int:
    """Milliseconds since a time.monotonic() reading."""
    return int((time.monotonic() - since) * 1000)
