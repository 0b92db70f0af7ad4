"""The plan: typed changes (what differs) grouped into operations (the SQL that fixes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ChangeKind(StrEnum):
    """One kind of difference between the models and the database."""

    ADD_TABLE = "add_table"
    DROP_TABLE = "drop_table"
    ADD_COLUMN = "add_column"
    DROP_COLUMN = "drop_column"
    ALTER_TYPE = "alter_type"
    SET_NOT_NULL = "set_not_null"
    DROP_NOT_NULL = "drop_not_null"
    ADD_INDEX = "add_index"
    DROP_INDEX = "drop_index"
    ADD_UNIQUE = "add_unique"
    DROP_UNIQUE = "drop_unique"
    ADD_FK = "add_foreign_key"
    DROP_FK = "drop_foreign_key"
    RENAME_COLUMN = "rename_column"
    RENAME_TABLE = "rename_table"
    RETIRE_COLUMN = "retire_column"


def constraint_signature(table: str, kind: str, columns: list[str] | tuple[str, ...]) -> str:
    """How an unnamed constraint is recognised across runs: 'table:unique:a,b'."""
    return f"{table}:{kind}:{','.join(columns)}"


class Safety(StrEnum):
    """How a change treats the data and the replicas still running the previous models."""

    SAFE = "safe"
    DATA_DEPENDENT = "data-dependent"
    RETIRING = "retiring"
    DESTRUCTIVE = "destructive"


DESTRUCTIVE_KINDS = frozenset({ChangeKind.DROP_TABLE, ChangeKind.DROP_COLUMN})
_DATA_DEPENDENT = frozenset(
    {ChangeKind.SET_NOT_NULL, ChangeKind.ADD_UNIQUE, ChangeKind.ADD_FK, ChangeKind.ALTER_TYPE}
)


@dataclass(frozen=True)
class Change:
    """One difference found by the comparison, described for humans."""

    kind: ChangeKind
    table: str
    description: str
    column: str | None = None
    name: str | None = None
    op: Any = field(default=None, compare=False, repr=False)
    rows: int | None = None
    retained: bool = False
    # SQL that fills the rows a NOT NULL column would leave NULL (its backfill or Python default).
    fill: str | None = None

    @property
    def destructive(self) -> bool:
        """Whether applying it removes data."""
        return self.kind in DESTRUCTIVE_KINDS and not self.retained

    @property
    def safety(self) -> Safety:
        """The class shown by `plan`: safe, data-dependent, retiring or destructive."""
        if self.kind in DESTRUCTIVE_KINDS:
            return Safety.RETIRING if self.retained else Safety.DESTRUCTIVE
        if self.kind is ChangeKind.RETIRE_COLUMN:
            return Safety.RETIRING
        if self.kind in _DATA_DEPENDENT:
            return Safety.DATA_DEPENDENT
        if self.kind is ChangeKind.ADD_INDEX and getattr(self.op, "unique", False):
            return Safety.DATA_DEPENDENT
        if self.kind is ChangeKind.ADD_COLUMN:
            col = self.op.column
            if not col.nullable and col.server_default is None and self.fill is None:
                return Safety.DATA_DEPENDENT
        return Safety.SAFE

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "kind": self.kind.value,
            "table": self.table,
            "column": self.column,
            "name": self.name,
            "description": self.description,
            "safety": self.safety.value,
            "destructive": self.destructive,
            "rows": self.rows,
            "fill": self.fill,
        }


@dataclass(frozen=True)
class Operation:
    """One executable step of a plan: the changes it carries and the SQL it runs."""

    kind: str
    table: str
    description: str
    sql: tuple[str, ...]
    changes: tuple[Change, ...]
    reversible: bool
    reverse_sql: tuple[str, ...] = ()
    rebuilt_rows: int | None = None

    @property
    def destructive(self) -> bool:
        """Whether any change it carries removes data."""
        return any(change.destructive for change in self.changes)

    @property
    def safety(self) -> Safety:
        """The most demanding class among its changes."""
        order = list(Safety)
        return max((c.safety for c in self.changes), key=order.index, default=Safety.SAFE)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "kind": self.kind,
            "table": self.table,
            "description": self.description,
            "sql": list(self.sql),
            "reversible": self.reversible,
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
