"""The tool's own tables: the history of runs and the last verified state."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, Text

HISTORY_TABLE = "orchestrator_migrate_history"
STATE_TABLE = "orchestrator_migrate_state"


def tables(long_text: Any = Text) -> tuple[Table, Table]:
    """New Table objects for the history and the state, in a MetaData of their own; the JSON
    and SQL columns take long_text (a first run's SQL can pass MariaDB's 64 KiB TEXT)."""
    metadata = MetaData()
    history = Table(
        HISTORY_TABLE,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("started_at", String(40), nullable=False),
        Column("finished_at", String(40), nullable=False),
        Column("outcome", String(32), nullable=False),
        Column("operations", long_text, nullable=False),
        Column("sql", long_text, nullable=False),
        Column("models_fingerprint", String(64), nullable=False),
        Column("fingerprint_before", String(64), nullable=False),
        Column("fingerprint_after", String(64)),
        Column("backup_id", String(255)),
        Column("duration_ms", Integer, nullable=False),
        Column("estimate_ms", Integer),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("version", String(40), nullable=False),
        Column("error", long_text),
        Column("objects", long_text, nullable=False),
        Column("schema_before", long_text, nullable=False),
    )
    state = Table(
        STATE_TABLE,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("models_fingerprint", String(64), nullable=False),
        Column("schema_fingerprint", String(64), nullable=False),
        Column("objects", long_text, nullable=False),
        Column("retained", long_text, nullable=False),
    )
    return history, state
