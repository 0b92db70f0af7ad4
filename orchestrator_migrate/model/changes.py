"""Changes: what differs between the models and the database, each of a kind."""

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
    ALTER_DEFAULT = "alter_default"
    ADD_ENUM_VALUE = "add_enum_value"
    SET_NOT_NULL = "set_not_null"
    DROP_NOT_NULL = "drop_not_null"
    ADD_INDEX = "add_index"
    DROP_INDEX = "drop_index"
    ADD_UNIQUE = "add_unique"
    DROP_UNIQUE = "drop_unique"
    ADD_CHECK = "add_check"
    DROP_CHECK = "drop_check"
    ADD_FK = "add_foreign_key"
    DROP_FK = "drop_foreign_key"
    RENAME_COLUMN = "rename_column"
    RENAME_TABLE = "rename_table"
    RETIRE_COLUMN = "retire_column"
    ALTER_COMMENT = "alter_comment"
    ALTER_TABLE_COMMENT = "alter_table_comment"
    ALTER_GENERATED = "alter_generated"
    ALTER_PRIMARY_KEY = "alter_primary_key"
    ALTER_CHECK = "alter_check"
    REMOVE_ENUM_VALUES = "remove_enum_values"
    DROP_ENUM_TYPE = "drop_enum_type"


def constraint_signature(table: str, kind: str, columns: list[str] | tuple[str, ...]) -> str:
    """How an unnamed constraint is recognised across runs: 'table:unique:a,b'."""
    return f"{table}:{kind}:{','.join(columns)}"


class Safety(StrEnum):
    """How a change treats the data and the replicas still running the previous models."""

    SAFE = "safe"
    DATA_DEPENDENT = "data-dependent"
    RETIRING = "retiring"
    DESTRUCTIVE = "destructive"


class Precheck(StrEnum):
    """The check a data-dependent change runs against the data before anything changes."""

    NEW_NOT_NULL = "new_not_null"  # a NOT NULL column without a value for the existing rows
    NULLS = "nulls"  # NOT NULL over NULLs
    DUPLICATES = "duplicates"  # UNIQUE over duplicates
    ORPHANS = "orphans"  # a foreign key over rows that reference nothing
    FITS = "fits"  # a narrower type over values that do not fit it
    CHECK = "check"  # a CHECK over rows that violate it
    PRIMARY_KEY = "primary_key"  # a primary key over NULLs or duplicates
    ENUM_ROWS = "enum_rows"  # enum values removed while rows hold them


@dataclass(frozen=True)
class Kind:
    """What a kind of change is, in one row of KINDS."""

    safety: Safety
    removes: bool = False  # removes data when applied (else it is kept: retired)
    owner: str | None = None  # the owned objects a removal must be among ("tables", ...)
    precheck: Precheck | None = None
    sql_reversible: bool = True  # rollback by inverse SQL can undo it


KINDS: dict[ChangeKind, Kind] = {
    ChangeKind.ADD_TABLE: Kind(Safety.SAFE),
    ChangeKind.DROP_TABLE: Kind(Safety.DESTRUCTIVE, removes=True, owner="tables"),
    ChangeKind.ADD_COLUMN: Kind(Safety.SAFE, precheck=Precheck.NEW_NOT_NULL),
    ChangeKind.DROP_COLUMN: Kind(Safety.DESTRUCTIVE, removes=True, owner="columns"),
    ChangeKind.ALTER_TYPE: Kind(Safety.DATA_DEPENDENT, precheck=Precheck.FITS),
    ChangeKind.ALTER_DEFAULT: Kind(Safety.SAFE),
    ChangeKind.ADD_ENUM_VALUE: Kind(Safety.SAFE),  # undone by recreating the type
    ChangeKind.SET_NOT_NULL: Kind(Safety.DATA_DEPENDENT, precheck=Precheck.NULLS),
    ChangeKind.DROP_NOT_NULL: Kind(Safety.SAFE),
    ChangeKind.ADD_INDEX: Kind(Safety.SAFE, precheck=Precheck.DUPLICATES),
    ChangeKind.DROP_INDEX: Kind(Safety.SAFE, owner="indexes"),
    ChangeKind.ADD_UNIQUE: Kind(Safety.DATA_DEPENDENT, precheck=Precheck.DUPLICATES),
    ChangeKind.DROP_UNIQUE: Kind(Safety.SAFE, owner="constraints"),
    ChangeKind.ADD_CHECK: Kind(Safety.DATA_DEPENDENT, precheck=Precheck.CHECK),
    ChangeKind.DROP_CHECK: Kind(Safety.SAFE, owner="checks"),
    ChangeKind.ADD_FK: Kind(Safety.DATA_DEPENDENT, precheck=Precheck.ORPHANS),
    ChangeKind.DROP_FK: Kind(Safety.SAFE, owner="constraints"),
    ChangeKind.RENAME_COLUMN: Kind(Safety.SAFE),
    ChangeKind.RENAME_TABLE: Kind(Safety.SAFE, sql_reversible=False),
    ChangeKind.RETIRE_COLUMN: Kind(Safety.RETIRING),
    ChangeKind.ALTER_COMMENT: Kind(Safety.SAFE),
    ChangeKind.ALTER_TABLE_COMMENT: Kind(Safety.SAFE),
    ChangeKind.ALTER_GENERATED: Kind(Safety.DATA_DEPENDENT, sql_reversible=False),
    ChangeKind.ALTER_PRIMARY_KEY: Kind(Safety.DATA_DEPENDENT, precheck=Precheck.PRIMARY_KEY),
    ChangeKind.ALTER_CHECK: Kind(Safety.DATA_DEPENDENT, precheck=Precheck.CHECK),
    # Old replicas may still write a removed value: kept until the contract step.
    ChangeKind.REMOVE_ENUM_VALUES: Kind(
        Safety.DATA_DEPENDENT,
        removes=True,
        owner="enums",
        precheck=Precheck.ENUM_ROWS,
        sql_reversible=False,
    ),
    ChangeKind.DROP_ENUM_TYPE: Kind(Safety.SAFE, removes=True, owner="enums", sql_reversible=False),
}


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
    # The columns of the index or constraint a DROP_INDEX, DROP_UNIQUE or DROP_FK removes (the
    # key an ALTER_PRIMARY_KEY replaces).
    columns: tuple[str, ...] = ()
    # An ALTER_TYPE that every old value fits (a longer VARCHAR, a larger integer, ...).
    widening: bool = False
    # The values an ADD_ENUM_VALUE adds to the enum type it names (an ALTER_CHECK: the old
    # condition).
    values: tuple[str, ...] = ()
    # Why no run applies it, and what to do instead (a generated column redefined, ...).
    refusal: str | None = None
    # The WHERE of a partial index an ADD_INDEX creates (its rows alone must be unique).
    where: str = ""
    # How the object a drop removes is recorded as ours when its name does not say (the
    # text of an unnamed CHECK).
    owned_as: str | None = None

    @property
    def destructive(self) -> bool:
        """Whether applying it removes data."""
        return KINDS[self.kind].removes and not self.retained

    @property
    def safety(self) -> Safety:
        """The class shown by `plan`: safe, data-dependent, retiring or destructive."""
        kind = KINDS[self.kind]
        if kind.removes and self.retained:
            return Safety.RETIRING
        if self.kind is ChangeKind.ALTER_TYPE and self.widening:
            return Safety.SAFE
        if self.kind is ChangeKind.ADD_INDEX and getattr(self.op, "unique", False):
            return Safety.DATA_DEPENDENT  # a unique index is a UNIQUE constraint
        if self.kind is ChangeKind.ADD_COLUMN:
            col = self.op.column
            if not col.nullable and col.server_default is None and self.fill is None:
                return Safety.DATA_DEPENDENT  # rows need a value the model does not give
        return kind.safety

    @property
    def dropped_signature(self) -> str:
        """How the constraint a DROP_UNIQUE or DROP_FK removes is recognised across runs."""
        kind = "fk" if self.kind is ChangeKind.DROP_FK else "unique"
        return constraint_signature(self.table, kind, self.columns)

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
