"""History rows: how an attempt is written down, and what the models own."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Enum, MetaData

from ..model.attempt import Attempt, elapsed_ms
from ..model.changes import constraint_signature
from ..model.entries import HistoryEntry
from ..model.outcome import Outcome
from ..model.tablecopy import check_signature, check_text, named_checks, unnamed_checks
from ..version import __version__

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


def row(
    attempt: Attempt,
    outcome: Outcome,
    now: datetime,
    objects: dict[str, list[str]],
    fp_after: str | None = None,
    error: str = "",
) -> HistoryEntry:
    """The history row of an attempt that ends now."""
    plan = attempt.plan
    return HistoryEntry(
        started_at=attempt.started_at.isoformat(),
        finished_at=now.isoformat(),
        outcome=outcome.value,
        operations=[op.to_dict() for op in plan.operations],
        sql=plan.sql,
        models_fingerprint=attempt.models_fingerprint,
        fingerprint_before=attempt.fingerprint_before,
        fingerprint_after=fp_after,
        backup_id=attempt.backup.id if attempt.backup else None,
        duration_ms=elapsed_ms(attempt.started),
        host=socket.gethostname(),
        pid=os.getpid(),
        version=__version__,
        error=error or None,
        estimate_ms=attempt.estimate_ms,
        objects=objects,
        schema_before=attempt.schema_before,
    )


def owned_objects(metadata: MetaData) -> dict[str, list[str]]:
    """The tables, columns, indexes and constraints the models define, recorded as ours."""
    tables = sorted(metadata.tables)
    columns = sorted(f"{t.key}.{c.name}" for t in metadata.sorted_tables for c in t.columns)
    indexes = sorted(str(i.name) for t in metadata.sorted_tables for i in t.indexes if i.name)
    constraints = sorted(
        constraint_signature(t.key, kind, [c.name for c in getattr(con, "columns", ())])
        for t in metadata.sorted_tables
        for con in t.constraints
        for kind in [_KINDS.get(type(con).__name__)]
        if kind
    )
    checks = sorted(
        [name for t in metadata.sorted_tables for name in named_checks(t)]
        + [
            check_signature(t.key, check_text(con))
            for t in metadata.sorted_tables
            for con in unnamed_checks(t)
        ]
    )
    enums = sorted(
        {
            str(c.type.name)
            for t in metadata.sorted_tables
            for c in t.columns
            if isinstance(c.type, Enum) and c.type.native_enum and c.type.name
        }
    )
    return {
        "enums": enums,
        "tables": tables,
        "columns": columns,
        "indexes": indexes,
        "constraints": constraints,
        "checks": checks,
    }


_KINDS = {"UniqueConstraint": "unique", "ForeignKeyConstraint": "fk"}
