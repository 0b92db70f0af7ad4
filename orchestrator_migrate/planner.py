"""Plan: decide which detected changes to apply and which to keep, then compile them to SQL."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from .backends.base import Backend
from .history import Recorder
from .plan import Change, ChangeKind, Plan
from .settings import Settings


def build_plan(
    conn: Connection,
    metadata: MetaData,
    backend: Backend,
    settings: Settings,
    recorder: Recorder,
) -> Plan:
    """The plan that brings the database on conn to the models, computed before any write."""
    from .detect import diff  # Alembic loads only when the fast path did not suffice

    changes = diff(conn, metadata, backend, settings.ignore_tables)
    owned = recorder.owned(conn) if changes else {}
    apply: list[Change] = []
    retained: list[Change] = []
    for change in changes:
        if _keep(change, settings.allow_destructive, owned):
            retained.append(change)
        else:
            apply.append(change)
    operations = backend.compile(conn, apply, metadata) if apply else []
    return Plan(tuple(operations), tuple(retained))


def _keep(change: Change, allow_destructive: bool, owned: dict[str, set[str]]) -> bool:
    """Whether a change that removes something must leave it in place."""
    if change.kind is ChangeKind.DROP_TABLE:
        return not (allow_destructive and change.table in owned.get("tables", set()))
    if change.kind is ChangeKind.DROP_COLUMN:
        key = f"{change.table}.{change.column}"
        return not (allow_destructive and key in owned.get("columns", set()))
    if change.kind is ChangeKind.DROP_INDEX:
        # An index no target ever defined was added by hand (a DBA's): never ours to drop.
        return change.name not in owned.get("indexes", set())
    return False
