"""A backup file, as the results and the history describe it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BackupInfo:
    """One backup file."""

    id: str
    path: Path
    size_bytes: int
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "id": self.id,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "created_at": self.created_at,
        }
