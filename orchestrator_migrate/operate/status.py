"""Status: what an operator asks of a database before and after a deploy. It only reads: the
database (read-only connections), the backup directory and the lock's lease."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData

from ..apply.runner import execute
from ..backends.lock import Lease
from ..backup.files import listing
from ..config.settings import Settings
from ..context import Run, prepare_run
from ..model.changes import Change
from ..model.entries import HistoryEntry
from ..model.errors import Refusal, RefusedChange
from ..model.outcome import Outcome
from ..model.plan import Plan
from ..model.result import MigrationResult
from ..planning.planner import is_ours


@dataclass(frozen=True)
class Backups:
    """The backup directory at a glance."""

    directory: str
    count: int
    bytes: int
    oldest: str | None
    newest: str | None
    limit_mb: int  # BACKUP_WARN_SIZE_MB; 0 = no limit

    @property
    def over_limit(self) -> bool:
        return self.limit_mb > 0 and self.bytes > self.limit_mb * 1024 * 1024

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "count": self.count,
            "bytes": self.bytes,
            "oldest": self.oldest,
            "newest": self.newest,
            "limit_mb": self.limit_mb,
            "over_limit": self.over_limit,
        }


@dataclass(frozen=True)
class LockState:
    """The migration lock: free, or held by whom and for how long."""

    name: str
    holder: Lease | None
    held_for_s: float | None
    timeout_ms: int

    @property
    def held(self) -> bool:
        return self.holder is not None

    @property
    def held_too_long(self) -> bool:
        """Held longer than LOCK_TIMEOUT: starting replicas give up waiting for it."""
        return self.held_for_s is not None and self.held_for_s * 1000 > self.timeout_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "held": self.held,
            "holder": None if self.holder is None else self.holder.__dict__,
            "held_for_s": self.held_for_s,
            "timeout_ms": self.timeout_ms,
            "held_too_long": self.held_too_long,
        }


@dataclass(frozen=True)
class Status:
    """Everything `status` reports; `to_dict` is the `--json` document."""

    database: str
    backend: str
    outcome: Outcome  # of a dry run now: up_to_date, planned (pending) or ahead
    plan: Plan
    refusals: tuple[Refusal, ...]
    retired: tuple[Change, ...]
    foreign: tuple[Change, ...]
    drift: str | None
    history_recorded: bool
    last_run: HistoryEntry | None
    in_progress: HistoryEntry | None
    backups: Backups
    lock: LockState
    integrity: tuple[str, ...]
    checked_at: str
    notes: tuple[str, ...] = field(default=())

    @property
    def state(self) -> str:
        """fresh (nothing recorded, nothing to keep), up_to_date, pending or ahead."""
        if self.outcome is Outcome.AHEAD:
            return "ahead"
        if not self.plan.empty:
            return "fresh" if not self.history_recorded and _creates_only(self.plan) else "pending"
        return "up_to_date"

    @property
    def up_to_date(self) -> bool:
        return self.plan.empty

    @property
    def interrupted(self) -> bool:
        """A run died part-way and nobody is finishing it now (the next start restores it)."""
        return self.in_progress is not None and not self.lock.held

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "backend": self.backend,
            "state": self.state,
            "up_to_date": self.up_to_date,
            "pending": [op.summary() for op in self.plan.operations],
            "pending_count": len(self.plan.operations),
            "refusals": [r.to_dict() for r in self.refusals],
            "retired": [_kept(c) for c in self.retired],
            "retired_count": len(self.retired),
            "foreign": [_kept(c) for c in self.foreign],
            "foreign_count": len(self.foreign),
            "drift": self.drift,
            "history_recorded": self.history_recorded,
            "last_run": None if self.last_run is None else _run(self.last_run),
            "interrupted": self.interrupted,
            "backups": self.backups.to_dict(),
            "lock": self.lock.to_dict(),
            "integrity": list(self.integrity),
            "notes": list(self.notes),
            "checked_at": self.checked_at,
        }

    def lines(self) -> list[str]:
        """The human report."""
        out = [f"Database: {self.database} ({self.backend})", f"Schema: {_STATES[self.state]}"]
        out += [f"  - {op.description}  [{op.safety.value}]" for op in self.plan.operations]
        out += [f"  a run would be refused: {r.message}" for r in self.refusals]
        out += [f"Retired (kept with their data): {c.description}" for c in self.retired]
        out += [f"Not ours (left alone): {c.description}" for c in self.foreign]
        out += [self.drift] if self.drift else []
        if self.last_run is None:
            out.append("Last run: none recorded")
        else:
            out.append(f"Last run: {_last_run_line(self.last_run)}")
        if self.interrupted:
            out.append("A run was interrupted part-way; the next start finishes putting it back")
        b = self.backups
        size = f"{b.bytes / 1048576:.1f} MiB" + (" (over the limit)" if b.over_limit else "")
        span = f", oldest {b.oldest}, newest {b.newest}" if b.count else ""
        out.append(f"Backups: {b.count} in {b.directory}, {size}{span}")
        if self.lock.holder is None:
            out.append(f"Lock {self.lock.name}: free")
        else:
            held = f" ({self.lock.held_for_s:.0f}s)" if self.lock.held_for_s is not None else ""
            out.append(f"Lock {self.lock.name}: held by {self.lock.holder.describe()}{held}")
        out += [f"Integrity: {problem}" for problem in self.integrity]
        out += list(self.notes)
        return out


_STATES = {
    "fresh": "fresh (no run recorded yet; the next start creates the tables)",
    "up_to_date": "up to date",
    "pending": "migration pending",
    "ahead": "ahead of these models (a newer release migrated it); nothing to do",
}


def status(settings: Settings, metadata: MetaData | None = None) -> Status:
    """Compare (as `check` does, writing nothing) and gather the rest around it."""
    run = prepare_run(settings, metadata)
    result = _dry_run(run)
    engine = run.backend.create_engine(read_only=True)
    try:
        with engine.connect().execution_options(read_only=True) as conn, conn.begin():
            recorded = run.recorder.exists(conn)
            entries = run.recorder.entries(conn, 20) if recorded else []
            owned = run.recorder.owned(conn)
            integrity = tuple(run.backend.integrity_problems(conn))
    finally:
        engine.dispose()
    finished = [e for e in entries if e.outcome != Outcome.IN_PROGRESS]
    kept = result.plan.retained
    return Status(
        database=run.url_for_humans,
        backend=run.backend.name,
        outcome=result.outcome,
        plan=result.plan,
        refusals=result.refusals,
        retired=tuple(c for c in kept if is_ours(c, owned)),
        foreign=tuple(c for c in kept if not is_ours(c, owned)),
        drift=next((w for w in result.warnings if w.startswith("Schema drift")), None),
        history_recorded=recorded,
        last_run=finished[0] if finished else None,
        in_progress=next((e for e in entries if e.outcome == Outcome.IN_PROGRESS), None),
        backups=_backups(settings),
        lock=_lock(run),
        integrity=integrity,
        checked_at=run.clock().isoformat(),
        notes=_ahead_note(result),
    )


def _dry_run(run: Run) -> MigrationResult:
    """The comparison `check` makes; a change no run can apply is reported, not raised."""
    try:
        return execute(run, dry_run=True)
    except RefusedChange as exc:
        plan = exc.plan if isinstance(exc.plan, Plan) else Plan()
        refusals = tuple(exc.refusals) or (Refusal("", None, 0, [], str(exc)),)
        return MigrationResult(Outcome.PLANNED, plan, refusals=refusals)


def _ahead_note(result: MigrationResult) -> tuple[str, ...]:
    if result.outcome is not Outcome.AHEAD:
        return ()
    return (
        "Note: a newer release migrated this database; this release keeps working on it"
        " (retired, not dropped) and changes nothing",
    )


def _backups(settings: Settings) -> Backups:
    found = listing(settings.backup_path())
    return Backups(
        directory=str(settings.backup_path()),
        count=len(found),
        bytes=sum(b.size_bytes for b in found),
        oldest=found[0].created_at if found else None,
        newest=found[-1].created_at if found else None,
        limit_mb=settings.backup_warn_size_mb,
    )


def _lock(run: Run) -> LockState:
    lock = run.backend.lock(run.settings.lock_timeout / 1000, run.settings.lock_name)
    try:
        holder = lock.current_holder()
    finally:
        lock.close()
    held_for = None
    if holder is not None:
        try:
            since = datetime.fromisoformat(holder.since)
            held_for = max(0.0, (run.clock() - since).total_seconds())
        except (TypeError, ValueError):
            held_for = None
    return LockState(lock.name, holder, held_for, run.settings.lock_timeout)


def _creates_only(plan: Plan) -> bool:
    return all(op.kind in ("add_table", "add_index") for op in plan.operations)


def _kept(change: Change) -> dict[str, Any]:
    return {
        "description": change.description,
        "kind": change.kind.value,
        "table": change.table,
        "column": change.column,
        "name": change.name,
    }


def _run(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "outcome": entry.outcome,
        "started_at": entry.started_at,
        "finished_at": entry.finished_at,
        "duration_ms": entry.duration_ms,
        "estimate_ms": entry.estimate_ms,
        "operations": len(entry.operations),
        "backup_id": entry.backup_id,
        "error": entry.error,
        "version": entry.version,
        "host": entry.host,
        "pid": entry.pid,
    }


def _last_run_line(entry: HistoryEntry) -> str:
    estimate = f" (estimated {entry.estimate_ms}ms)" if entry.estimate_ms is not None else ""
    error = f": {entry.error}" if entry.error else ""
    return (
        f"#{entry.id} {entry.outcome} at {entry.finished_at}, {len(entry.operations)} operations"
        f" in {entry.duration_ms}ms{estimate}{error}"
    )
