"""Which tables a run looks at: never our own, never those matched by IGNORE_TABLES."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

OWN_TABLES = frozenset(
    {"orchestrator_migrate_history", "orchestrator_migrate_state", "orchestrator_migrate_lease"}
)


def ignored(table: str, patterns: Sequence[str]) -> bool:
    """Whether a table is left out of the comparison (ours, or matched by IGNORE_TABLES)."""
    return table in OWN_TABLES or any(fnmatch.fnmatchcase(table, p) for p in patterns)
