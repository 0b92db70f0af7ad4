"""What the history holds: one recorded run, and the last verified state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded run."""

    started_at: str
    finished_at: str
    outcome: str
    operations: list[dict[str, Any]]
    sql: list[str]
    models_fingerprint: str
    fingerprint_before: str
    fingerprint_after: str | None
    backup_id: str | None
    duration_ms: int
    host: str
    pid: int
    version: str
    error: str | None = None
    estimate_ms: int | None = None
    objects: dict[str, list[str]] = field(default_factory=dict)
    schema_before: dict[str, Any] = field(default_factory=dict)
    id: int | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return asdict(self)

    @property
    def changes(self) -> list[dict[str, Any]]:
        """Every change its operations carried, as recorded."""
        return [c for op in self.operations for c in op.get("changes", [])]

    def created_tables(self) -> list[str]:
        """The tables the run created."""
        return sorted({c["table"] for c in self.changes if c["kind"] == "add_table"})

    def renamed_columns(self) -> dict[str, dict[str, str]]:
        """Per table, each column the run renamed: old name -> new name."""
        renamed: dict[str, dict[str, str]] = {}
        for c in self.changes:
            if c["kind"] == "rename_column":
                renamed.setdefault(c["table"], {})[c["name"]] = c["column"]
        return renamed


@dataclass(frozen=True)
class State:
    """The last verified match of models and schema, and what the schema keeps beyond them."""

    models_fingerprint: str
    schema_fingerprint: str
    retained: list[str]
