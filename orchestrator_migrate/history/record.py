"""Record: history entries for a run, the verified state, and models found already in force."""

from __future__ import annotations

import dataclasses
import os
import socket
from datetime import datetime

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from ..apply.context import Run, elapsed_ms
from ..model.backup_info import BackupInfo
from ..model.entries import HistoryEntry
from ..model.plan import Plan, constraint_signature
from ..version import __version__


def entry(
    run: Run,
    started_at: datetime,
    outcome: str,
    plan: Plan,
    models_fp: str,
    fp_before: str,
    fp_after: str | None,
    backup_info: BackupInfo | None,
    started: float,
    error: str | None = None,
    estimate: int | None = None,
) -> HistoryEntry:
    """The history row of a run."""
    return HistoryEntry(
        started_at=started_at.isoformat(),
        finished_at=run.clock().isoformat(),
        outcome=outcome,
        operations=[op.to_dict() for op in plan.operations],
        sql=plan.sql,
        models_fingerprint=models_fp,
        fingerprint_before=fp_before,
        fingerprint_after=fp_after,
        backup_id=backup_info.id if backup_info else None,
        duration_ms=elapsed_ms(started),
        host=socket.gethostname(),
        pid=os.getpid(),
        version=__version__,
        error=error,
        estimate_ms=estimate,
        objects=owned_objects(run.metadata),
    )


def owned_objects(metadata: MetaData) -> dict[str, list[str]]:
    """The tables, columns and indexes the models define, recorded as ours to drop later."""
    tables = sorted(metadata.tables)
    columns = sorted(f"{t.name}.{c.name}" for t in metadata.sorted_tables for c in t.columns)
    indexes = sorted(str(i.name) for t in metadata.sorted_tables for i in t.indexes if i.name)
    constraints = sorted(
        constraint_signature(t.name, kind, [c.name for c in getattr(con, "columns", ())])
        for t in metadata.sorted_tables
        for con in t.constraints
        for kind in [_KINDS.get(type(con).__name__)]
        if kind
    )
    return {"tables": tables, "columns": columns, "indexes": indexes, "constraints": constraints}


_KINDS = {"UniqueConstraint": "unique", "ForeignKeyConstraint": "fk"}


def save_state(run: Run, conn: Connection, models_fp: str, schema_fp: str, plan: Plan) -> None:
    """Remember that these models match this schema, and what it keeps beyond them."""
    objects = owned_objects(run.metadata)
    run.recorder.save_state(conn, models_fp, schema_fp, objects, plan.retained_descriptions)


def adopt(run: Run, conn: Connection, models_fp: str, schema_fp: str) -> None:
    """Record models found already in force (a database made by hand or by an older tool), so
    that a later, newer run makes them recognisable as superseded."""
    if run.recorder.seen(conn, models_fp):
        return
    row = entry(run, run.clock(), "adopted", Plan(), models_fp, schema_fp, schema_fp, None, 0.0)
    run.recorder.record(conn, dataclasses.replace(row, duration_ms=0))
