"""History: one row per run that changed something or failed, and the last verified state."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..model.entries import HistoryEntry, State

HISTORY_TABLE = "orchestrator_migrate_history"
# Outcomes of runs whose models define the schema in force (not failed, not rolled back).
IN_FORCE = ("applied", "adopted")
STATE_TABLE = "orchestrator_migrate_state"


def _tables() -> tuple[Table, Table]:
    metadata = MetaData()
    history = Table(
        HISTORY_TABLE,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("started_at", String(40), nullable=False),
        Column("finished_at", String(40), nullable=False),
        Column("outcome", String(32), nullable=False),
        Column("operations", Text, nullable=False),
        Column("sql", Text, nullable=False),
        Column("models_fingerprint", String(64), nullable=False),
        Column("fingerprint_before", String(64), nullable=False),
        Column("fingerprint_after", String(64)),
        Column("backup_id", String(255)),
        Column("duration_ms", Integer, nullable=False),
        Column("estimate_ms", Integer),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("version", String(40), nullable=False),
        Column("error", Text),
        Column("objects", Text, nullable=False),
        Column("schema_before", Text, nullable=False),
    )
    state = Table(
        STATE_TABLE,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("models_fingerprint", String(64), nullable=False),
        Column("schema_fingerprint", String(64), nullable=False),
        Column("objects", Text, nullable=False),
        Column("retained", Text, nullable=False),
    )
    return history, state


class Recorder:
    """Reads and writes the history and state tables on a connection it is given."""

    def __init__(self) -> None:
        self.history, self.state = _tables()
        self._compatible: dict[str, bool] = {}

    def ensure(self, conn: Connection) -> None:
        """Create the tables when missing; bring tables written by an older version up to date."""
        self.history.create(conn, checkfirst=True)
        self.state.create(conn, checkfirst=True)
        quote = conn.dialect.identifier_preparer.quote
        for column in self._missing(conn, self.history):
            # Older rows get an empty value; every later row is written in full.
            empty = "'{}'" if column.name in ("objects", "schema_before") else "NULL"
            not_null = " NOT NULL" if not column.nullable and empty != "NULL" else ""
            conn.exec_driver_sql(
                f"ALTER TABLE {HISTORY_TABLE} ADD COLUMN {quote(column.name)}"
                f" {column.type.compile(conn.dialect)} DEFAULT {empty}{not_null}"
            )
        if self._missing(conn, self.state):
            self.state.drop(conn)  # only a cache of the last verification: start it afresh
            self.state.create(conn)
        self._compatible.clear()

    def _missing(self, conn: Connection, table: Table) -> list[Column[Any]]:
        have = {c["name"] for c in inspect(conn).get_columns(table.name)}
        return [c for c in table.columns if c.name not in have]

    def _usable(self, conn: Connection, table: Table) -> bool:
        """Whether the table exists with every column this version reads."""
        if not self._compatible.get(table.name):
            # Only a usable table is remembered: another process may create it at any moment.
            exists = conn.dialect.has_table(conn, table.name)
            self._compatible[table.name] = exists and not self._missing(conn, table)
        return self._compatible[table.name]

    def exists(self, conn: Connection) -> bool:
        """Whether the history table exists with the columns this version reads."""
        return self._usable(conn, self.history)

    def record(self, conn: Connection, entry: HistoryEntry, keep_id: bool = False) -> int:
        """Insert one history row; returns its id."""
        values = asdict(entry)
        if not keep_id:
            values.pop("id")
        values["operations"] = json.dumps(entry.operations)
        values["sql"] = json.dumps(entry.sql)
        values["objects"] = json.dumps(entry.objects)
        values["schema_before"] = json.dumps(entry.schema_before)
        result = conn.execute(insert(self.history).values(**values))
        if keep_id and conn.dialect.name == "postgresql":
            # An explicit id leaves the serial behind; the next row must not reuse an id.
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{HISTORY_TABLE}', 'id'),"
                f" (SELECT max(id) FROM {HISTORY_TABLE}))"
            )
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    def entries(self, conn: Connection, limit: int | None = None) -> list[HistoryEntry]:
        """The newest entries first."""
        if not self.exists(conn):
            return []
        query = select(self.history).order_by(self.history.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        found = []
        for row in conn.execute(query).mappings():
            values = dict(row)
            values["operations"] = json.loads(values["operations"])
            values["sql"] = json.loads(values["sql"])
            values["objects"] = json.loads(values["objects"])
            values["schema_before"] = json.loads(values["schema_before"])
            found.append(HistoryEntry(**values))
        return found

    def verified_state(self, conn: Connection) -> State | None:
        """The models and schema fingerprints last verified to match, if any."""
        if not self._usable(conn, self.state):
            return None
        row = conn.execute(select(self.state).where(self.state.c.id == 1)).first()
        if row is None:
            return None
        return State(row.models_fingerprint, row.schema_fingerprint, json.loads(row.retained))

    def matches(self, conn: Connection, models_fp: str, schema_fp: str) -> State | None:
        """The verified state when it is exactly these models on exactly this schema."""
        state = self.verified_state(conn)
        if state and (state.models_fingerprint, state.schema_fingerprint) == (models_fp, schema_fp):
            return state
        return None

    def _in_force(self, conn: Connection) -> list[Any]:
        """(id, models fingerprint) of the runs whose schema is in force, oldest first."""
        if not self.exists(conn):
            return []
        h = self.history.c
        query = select(h.id, h.models_fingerprint).where(h.outcome.in_(IN_FORCE)).order_by(h.id)
        return list(conn.execute(query))

    def last_modelled(self, conn: Connection) -> set[str] | None:
        """The columns ('table.column') of the models in force at the newest run that applied
        or adopted them; None when no run is recorded."""
        if not self.exists(conn):
            return None
        h = self.history.c
        query = select(h.objects).where(h.outcome.in_(IN_FORCE)).order_by(h.id.desc()).limit(1)
        raw = conn.execute(query).scalar()
        columns = json.loads(raw).get("columns") if raw else None
        return set(columns) if columns is not None else None  # older rows did not say

    def seen(self, conn: Connection, models_fp: str) -> bool:
        """Whether a run in force applied or adopted these models."""
        return any(row[1] == models_fp for row in self._in_force(conn))

    def ahead_of(self, conn: Connection, models_fp: str) -> str | None:
        """Why the schema is ahead of these models, when a later run in force applied others."""
        rows = self._in_force(conn)
        mine = [row[0] for row in rows if row[1] == models_fp]
        newer = [row[0] for row in rows if mine and row[0] > mine[-1] and row[1] != models_fp]
        if not newer:
            return None
        return (
            f"Database schema is ahead of these models: they were in force until run #{mine[-1]},"
            f" and run #{newer[-1]} applied newer ones; not migrating back (an old replica during"
            " a rollout?). Use `rollback`, or `run --allow-downgrade`"
        )

    def owned(self, conn: Connection) -> dict[str, set[str]]:
        """Every table, column and index a target has defined while this tool watched."""
        found: dict[str, set[str]] = {}
        rows: list[str] = []
        if self._usable(conn, self.state):
            rows += [r[0] for r in conn.execute(select(self.state.c.objects))]
        if self.exists(conn):
            rows += [r[0] for r in conn.execute(select(self.history.c.objects))]
        for raw in rows:
            for kind, names in json.loads(raw).items():
                found.setdefault(kind, set()).update(names)
        return found

    def in_progress(self, conn: Connection) -> HistoryEntry | None:
        """The newest run recorded as under way (on a database without transactional DDL)."""
        return next((e for e in self.entries(conn) if e.outcome == "in_progress"), None)

    def clear_in_progress(self, conn: Connection) -> None:
        """Remove the under-way marker once the run has ended one way or another."""
        if self.exists(conn):
            conn.execute(self.history.delete().where(self.history.c.outcome == "in_progress"))

    def forget_state(self, conn: Connection) -> None:
        """Drop the verified state: the next start compares in full."""
        if self._usable(conn, self.state):
            conn.execute(self.state.delete())

    def save_state(
        self,
        conn: Connection,
        models_fingerprint: str,
        schema_fingerprint: str,
        objects: dict[str, list[str]],
        retained: list[str],
    ) -> None:
        """Remember that these models and this schema match, and that the objects are ours."""
        self.ensure(conn)
        merged = {kind: set(names) for kind, names in objects.items()}
        for kind, names in self.owned(conn).items():
            merged.setdefault(kind, set()).update(names)
        values = {
            "models_fingerprint": models_fingerprint,
            "schema_fingerprint": schema_fingerprint,
            "objects": json.dumps({kind: sorted(names) for kind, names in merged.items()}),
            "retained": json.dumps(retained),
        }
        row = self.state.c.id == 1
        if conn.execute(update(self.state).where(row).values(**values)).rowcount:
            return
        # A process that needs no lock (its schema already matches) may insert the row at the
        # same moment: the state is a cache, so whoever loses updates instead.
        try:
            with conn.begin_nested():
                conn.execute(insert(self.state).values(id=1, **values))
        except IntegrityError:
            conn.execute(update(self.state).where(row).values(**values))
