"""The plan: changes grouped into operations, each holding the exact SQL that applies it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .changes import Change, Safety


@dataclass(frozen=True)
class Operation:
    """One executable step of a plan: the changes it carries and the SQL it runs."""

    kind: str
    table: str
    description: str
    sql: tuple[str, ...]
    changes: tuple[Change, ...]
    reversible: bool
    rebuilt_rows: int | None = None
    # On a server: the statements that undo it, for rollback by SQL (None: only the backup can).
    undo: tuple[str, ...] | None = None
    # Committed before the rest of the plan (PostgreSQL lets a new enum value be used only once
    # the transaction that added it has committed); a failure later runs its undo.
    commit_first: bool = False

    @property
    def destructive(self) -> bool:
        """Whether any change it carries removes data."""
        return any(change.destructive for change in self.changes)

    @property
    def safety(self) -> Safety:
        """The most demanding class among its changes."""
        order = list(Safety)
        return max((c.safety for c in self.changes), key=order.index, default=Safety.SAFE)

    def summary(self) -> dict[str, Any]:
        """What a report lists of it (status, a rehearsal): no SQL, no changes."""
        return {
            "description": self.description,
            "kind": self.kind,
            "table": self.table,
            "safety": self.safety.value,
            "destructive": self.destructive,
            "reversible": self.reversible,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "kind": self.kind,
            "table": self.table,
            "description": self.description,
            "sql": list(self.sql),
            "reversible": self.reversible,
            "undo": list(self.undo) if self.undo is not None else None,
            "safety": self.safety.value,
            "destructive": self.destructive,
            "changes": [change.to_dict() for change in self.changes],
        }


@dataclass(frozen=True)
class Plan:
    """Ordered operations to run, and what the database has that the models do not (kept)."""

    operations: tuple[Operation, ...] = ()
    retained: tuple[Change, ...] = ()

    @property
    def empty(self) -> bool:
        """True when there is nothing to apply."""
        return not self.operations

    @property
    def sql(self) -> list[str]:
        """Every statement in execution order."""
        return [stmt for op in self.operations for stmt in op.sql]

    @property
    def changes(self) -> list[Change]:
        """Every change the operations carry."""
        return [change for op in self.operations for change in op.changes]

    @property
    def retained_descriptions(self) -> list[str]:
        """What the database keeps beyond the models, with counts."""
        return [change.description for change in self.retained]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "operations": [op.to_dict() for op in self.operations],
            "retained": [change.to_dict() for change in self.retained],
        }
