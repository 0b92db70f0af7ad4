"""History: one row per run that changed something or failed, and the last verified state."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import (
    Column,
    MetaData,
    Table,
    Text,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..model.attempt import Attempt
from ..model.entries import HistoryEntry, State
from ..model.outcome import IN_FORCE, Outcome
from ..model.plan import Plan
from .rows import Clock, owned_objects, row, utc_now
from .tables import HISTORY_TABLE, tables

# After rows are put back with their own ids, make the next id follow them (a dialect's way).
ResetSequence = Callable[[Connection, str, str], None]


def _no_reset(conn: Connection, table: str, column: str) -> None:
    """Where an auto-increment follows explicit ids by itself."""


class Recorder:
    """The sole reader and writer of the history and state tables, on a connection it is
    given; it knows the run's models (what they own) and clock."""

    def __init__(
        self,
        metadata: MetaData | None = None,
        clock: Clock = utc_now,
        reset_sequence: ResetSequence = _no_reset,
        long_text: Any = Text,
    ) -> None:
        self.history, self.state = tables(long_text)
        self.metadata = metadata if metadata is not None else MetaData()
        self.clock = clock
        self._reset_sequence = reset_sequence
        self._compatible: dict[str, bool] = {}

    def row(
        self, attempt: Attempt, outcome: Outcome, fp_after: str | None = None, error: str = ""
    ) -> HistoryEntry:
        """The history row of an attempt as it ends now."""
        return row(attempt, outcome, self.clock(), owned_objects(self.metadata), fp_after, error)

    def record_attempt(
        self, conn: Connection, attempt: Attempt, outcome: Outcome, fp_after: str | None = None
    ) -> int:
        """Record how an attempt ended (applied, or under way); returns the history id."""
        self.ensure(conn)
        return self.record(conn, self.row(attempt, outcome, fp_after))

    def record_failure(
        self, conn: Connection, attempt: Attempt, restored: bool, error: str
    ) -> None:
        """Record a failed attempt, and whether the database was shown to be as before."""
        self.ensure(conn)
        self.clear_in_progress(conn)
        outcome = Outcome.FAILED_RESTORED if restored else Outcome.FAILED
        self.record(conn, self.row(attempt, outcome, error=error))

    def record_applied(self, conn: Connection, attempt: Attempt, fp_after: str) -> int:
        """Record a verified run and the state it leaves (which makes sure the tables are there);
        returns the history id."""
        self.save_state(conn, attempt.models_fingerprint, fp_after, attempt.plan)
        self.clear_in_progress(conn)
        return self.record(conn, self.row(attempt, Outcome.APPLIED, fp_after))

    def record_undo(
        self,
        conn: Connection,
        attempt: Attempt,
        outcome: Outcome,
        fp_after: str,
        note: dict[str, str],
        sql: list[str] | None = None,
    ) -> int:
        """Record a restore or a rollback, what it did and the SQL it ran; the verified state
        is forgotten, so that the next start compares in full."""
        self.ensure(conn)
        done = self.row(attempt, outcome, fp_after)
        done = dataclasses.replace(done, operations=[note], sql=list(sql or []))
        history_id = self.record(conn, done)
        self.forget_state(conn)
        return history_id

    def record_matching(self, conn: Connection, models_fp: str, schema_fp: str, plan: Plan) -> None:
        """These models match this schema: remember it, and adopt models found already in
        force (a database made by hand or by an older tool), so that a later, newer run makes
        them recognisable as superseded."""
        self.save_state(conn, models_fp, schema_fp, plan)
        if self.seen(conn, models_fp):
            return
        attempt = Attempt(models_fp, 0.0, self.clock(), schema_fp)
        adopted = dataclasses.replace(self.row(attempt, Outcome.ADOPTED, schema_fp), duration_ms=0)
        self.record(conn, adopted)

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
        if keep_id:
            self._reset_sequence(conn, HISTORY_TABLE, "id")
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
        for found_row in conn.execute(query).mappings():
            values = dict(found_row)
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
        in_force = h.outcome.in_([o.value for o in IN_FORCE])
        query = select(h.id, h.models_fingerprint).where(in_force).order_by(h.id)
        return list(conn.execute(query))

    def last_modelled(self, conn: Connection) -> set[str] | None:
        """The columns ('table.column') of the models in force at the newest run that applied
        or adopted them; None when no run is recorded."""
        if not self.exists(conn):
            return None
        h = self.history.c
        in_force = h.outcome.in_([o.value for o in IN_FORCE])
        query = select(h.objects).where(in_force).order_by(h.id.desc()).limit(1)
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
        """The newest run recorded as under way (where DDL commits statement by statement)."""
        return next((e for e in self.entries(conn) if e.outcome == Outcome.IN_PROGRESS), None)

    def clear_in_progress(self, conn: Connection) -> None:
        """Remove the under-way marker once the run has ended one way or another."""
        if self.exists(conn):
            h = self.history
            conn.execute(h.delete().where(h.c.outcome == Outcome.IN_PROGRESS.value))

    def mark_interrupted(self, conn: Connection, entry: HistoryEntry, restored: bool) -> None:
        """A run that died part-way: say so, and whether its backup was put back."""
        h = self.history
        conn.execute(
            update(h)
            .where(h.c.id == entry.id)
            .values(
                outcome=(Outcome.INTERRUPTED_RESTORED if restored else Outcome.INTERRUPTED).value,
                error="the process died part-way"
                + ("; its backup was restored" if restored else "; nothing to restore"),
            )
        )
        self.forget_state(conn)

    def mark_rolled_back(self, conn: Connection, ids: list[int]) -> None:
        """These applied runs were undone."""
        h = self.history
        conn.execute(update(h).where(h.c.id.in_(ids)).values(outcome=Outcome.ROLLED_BACK.value))

    def reinstate(self, conn: Connection, entries: list[HistoryEntry], backup_id: str) -> None:
        """After a backup was put back: the history rows it predates return, and the runs it
        undid are marked rolled back."""
        self.ensure(conn)
        present = {e.id for e in self.entries(conn)}
        for entry in sorted(entries, key=lambda e: e.id or 0):
            if entry.id not in present:
                self.record(conn, entry, keep_id=True)
        undone = min((e.id or 0 for e in entries if e.backup_id == backup_id), default=None)
        if undone is not None:
            h = self.history
            conn.execute(
                update(h)
                .where(h.c.id >= undone, h.c.outcome.in_([o.value for o in IN_FORCE]))
                .values(outcome=Outcome.ROLLED_BACK.value)
            )

    def forget_state(self, conn: Connection) -> None:
        """Drop the verified state: the next start compares in full."""
        if self._usable(conn, self.state):
            conn.execute(self.state.delete())

    def save_state(self, conn: Connection, models_fp: str, schema_fp: str, plan: Plan) -> None:
        """Remember that these models and this schema match, and that the objects are ours."""
        self.ensure(conn)
        objects = owned_objects(self.metadata)
        merged = {kind: set(names) for kind, names in objects.items()}
        for kind, names in self.owned(conn).items():
            merged.setdefault(kind, set()).update(names)
        values = {
            "models_fingerprint": models_fp,
            "schema_fingerprint": schema_fp,
            "objects": json.dumps({kind: sorted(names) for kind, names in merged.items()}),
            "retained": json.dumps(plan.retained_descriptions),
        }
        the_row = self.state.c.id == 1
        if conn.execute(update(self.state).where(the_row).values(**values)).rowcount:
            return
        # A process that needs no lock (its schema already matches) may insert the row at the
        # same moment: the state is a cache, so whoever loses updates instead.
        try:
            with conn.begin_nested():
                conn.execute(insert(self.state).values(id=1, **values))
        except IntegrityError:
            conn.execute(update(self.state).where(the_row).values(**values))
