"""The runner: detect -> plan -> backup -> migrate -> verify -> record, under the lock."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime

from loguru import logger
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex, CreateTable

from . import backup as backups
from .backends import Backend, backend_for
from .errors import MigrateError, MigrationFailed, MigrationFailedNotRestored, RefusedChange
from .history import HistoryEntry, Recorder, State
from .plan import ChangeKind, Plan
from .planner import build_plan
from .result import MigrationResult, Outcome
from .settings import Settings
from .targets import merge, resolve
from .version import __version__

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Run:
    """Everything one run needs, passed in; nothing global."""

    settings: Settings
    backend: Backend
    metadata: MetaData
    recorder: Recorder
    clock: Clock

    @property
    def url_for_humans(self) -> str:
        return self.backend.url.render_as_string(hide_password=True)

    def plan(self, conn: Connection) -> Plan:
        return build_plan(conn, self.metadata, self.backend, self.settings, self.recorder)


def prepare_run(
    settings: Settings, metadata: MetaData | None = None, clock: Clock = _utc_now
) -> Run:
    """Resolve the targets and the backend for settings."""
    targets = resolve(settings.models, [metadata] if metadata is not None else [])
    backend = backend_for(settings.database_url(), busy_timeout_s=settings.lock_timeout / 1000)
    return Run(settings, backend, merge(targets), Recorder(), clock)


def models_fingerprint(run: Run, engine: Engine) -> str:
    """A hash of the DDL the models compile to, so that unchanged models skip the diff."""
    digest = hashlib.sha256(f"{__version__}\0{sorted(run.settings.ignore_tables)}\n".encode())
    for table in sorted(run.metadata.sorted_tables, key=lambda t: t.key):
        digest.update(str(CreateTable(table).compile(dialect=engine.dialect)).encode())
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            digest.update(str(CreateIndex(index).compile(dialect=engine.dialect)).encode())
    return digest.hexdigest()


def execute(run: Run, dry_run: bool | None = None) -> MigrationResult:
    """One run of the pipeline; raises a MigrateError subclass when refused or failed."""
    started = time.monotonic()
    settings = run.settings
    dry = settings.dry_run if dry_run is None else dry_run
    logger.info("Checking database schema: {}", run.url_for_humans)
    if not dry:
        run.backend.prepare()
    engine = run.backend.create_engine(read_only=dry)
    try:
        models_fp = models_fingerprint(run, engine)
        # The fast path takes no lock: most starts find nothing to do. A dry run (check, plan)
        # always compares in full, to list everything the database keeps beyond the models.
        with engine.connect().execution_options(read_only=True) as conn, conn.begin():
            schema_fp = run.backend.fingerprint(conn, settings.ignore_tables)
            state = None if dry else _verified(run, conn, models_fp, schema_fp)
            if state is not None:
                return _up_to_date(started, warnings=_report_retained(state.retained))
            ahead = None if settings.allow_downgrade else run.recorder.ahead_of(conn, models_fp)
            if ahead:
                logger.warning(ahead)
                return MigrationResult(Outcome.AHEAD, execution_time_ms=_ms(started))
            drifted = _drifted(run, conn, models_fp, schema_fp)
            plan = run.plan(conn)
        warnings = _report_retained(plan.retained_descriptions)
        if drifted:
            drift = (
                "Schema drift: the database schema changed outside orchestrator_migrate since"
                " these models were last verified; differences: "
                + (
                    "; ".join([o.description for o in plan.operations] + plan.retained_descriptions)
                    or "none"
                )
            )
            logger.warning(drift)
            warnings.append(drift)
        if plan.empty:
            if not dry:
                with engine.connect() as conn, conn.begin():
                    _save_state(run, conn, models_fp, schema_fp, plan)
                    _adopt(run, conn, models_fp, schema_fp)
            return _up_to_date(started, plan, warnings)
        if dry or not settings.auto_migration:
            why = "dry run" if dry else "MCP_TASK_ORCHESTRATOR_AUTO_MIGRATION=false"
            logger.warning(
                "Database migration needed: {} operations not applied ({})",
                len(plan.operations),
                why,
            )
            return MigrationResult(Outcome.PLANNED, plan, _ms(started), warnings=tuple(warnings))
        with run.backend.lock(settings.lock_timeout / 1000, settings.lock_name):
            return _apply_locked(run, engine, models_fp, started)
    finally:
        engine.dispose()


def _apply_locked(run: Run, engine: Engine, models_fp: str, started: float) -> MigrationResult:
    """Under the lock and in one transaction: re-plan, check, back up, apply, verify, record."""
    settings, backend = run.settings, run.backend
    started_at = run.clock()
    backup_info: backups.BackupInfo | None = None
    plan = Plan()
    estimate: int | None = None
    with engine.connect() as conn:
        tx = conn.begin()
        fp_before = backend.fingerprint(conn, settings.ignore_tables)
        try:
            # Again, under the lock: another process may have just done the work.
            if _verified(run, conn, models_fp, fp_before):
                tx.commit()
                return _up_to_date(started)
            plan = run.plan(conn)
            if plan.empty:
                _save_state(run, conn, models_fp, fp_before, plan)
                _adopt(run, conn, models_fp, fp_before)
                tx.commit()
                return _up_to_date(started, plan)
            _refuse_if_needed(conn, plan, run.metadata)
            estimate = _refuse_if_too_slow(conn, plan, settings.migration_timeout)
            if settings.backup and _has_tables(conn, settings.ignore_tables):
                backup_info = _backup(run, conn)
            created = {c.table for c in plan.changes if c.kind is ChangeKind.ADD_TABLE}
            touched = sorted({op.table for op in plan.operations} - created)
            before = backend.snapshot(conn, touched)
            applying = time.monotonic()
            limit = settings.migration_timeout / 1000
            with backend.time_limit(conn, limit) if limit else nullcontext():
                plan = _apply(run, conn, plan)
                problems = backend.verify(conn, plan.operations)
                leftover = run.plan(conn)
            problems += [
                f"still differs after applying: {o.description}" for o in leftover.operations
            ]
            if problems:
                raise _VerifyFailed("verification failed: " + "; ".join(problems))
            fp_after = backend.fingerprint(conn, settings.ignore_tables)
            entry = _entry(
                run,
                started_at,
                "applied",
                plan,
                models_fp,
                fp_before,
                fp_after,
                backup_info,
                started,
                estimate=estimate,
            )
            entry = dataclasses.replace(entry, schema_before=before)
            run.recorder.ensure(conn)
            history_id = run.recorder.record(conn, entry)
            _save_state(run, conn, models_fp, fp_after, plan)
            tx.commit()
        except RefusedChange as exc:
            tx.rollback()
            exc.plan = plan
            raise
        except BaseException as exc:
            tx.rollback()
            raise _failed(
                run,
                conn,
                exc,
                plan,
                models_fp,
                fp_before,
                backup_info,
                started_at,
                started,
                estimate,
            ) from exc
    logger.info(
        "Database migration completed: {} operations in {}ms (apply {}ms)",
        len(plan.operations),
        _ms(started),
        _ms(applying),
    )
    return MigrationResult(
        Outcome.APPLIED,
        plan,
        _ms(started),
        backup_info,
        warnings=tuple(plan.retained_descriptions),
        history_id=history_id,
    )


def _drifted(run: Run, conn: Connection, models_fp: str, schema_fp: str) -> bool:
    """Whether the schema changed by hand since these very models were verified on it."""
    state = run.recorder.verified_state(conn)
    return bool(
        state and state.models_fingerprint == models_fp and state.schema_fingerprint != schema_fp
    )


def _verified(run: Run, conn: Connection, models_fp: str, schema_fp: str) -> State | None:
    """The verified state when nothing can be left to do (with ALLOW_DESTRUCTIVE, retired
    objects are work)."""
    state = run.recorder.matches(conn, models_fp, schema_fp)
    if state is not None and run.settings.allow_destructive and state.retained:
        return None
    return state


def _apply(run: Run, conn: Connection, plan: Plan) -> Plan:
    """Execute the plan; after a table rename, plan and execute what else differs on it."""
    executed = list(plan.operations)
    _execute(conn, plan)
    if any(c.kind is ChangeKind.RENAME_TABLE for c in plan.changes):
        rest = run.plan(conn)
        _execute(conn, rest)
        executed += rest.operations
    return Plan(tuple(executed), plan.retained)


def _execute(conn: Connection, plan: Plan) -> None:
    for operation in plan.operations:
        logger.debug("Applying: {}", operation.description)
        for statement in operation.sql:
            conn.exec_driver_sql(statement)


def _up_to_date(
    started: float, plan: Plan | None = None, warnings: list[str] | None = None
) -> MigrationResult:
    logger.info("Database schema is up to date")
    return MigrationResult(
        Outcome.UP_TO_DATE, plan or Plan(), _ms(started), warnings=tuple(warnings or ())
    )


def _save_state(run: Run, conn: Connection, models_fp: str, schema_fp: str, plan: Plan) -> None:
    objects = _owned_objects(run.metadata)
    run.recorder.save_state(conn, models_fp, schema_fp, objects, plan.retained_descriptions)


def _adopt(run: Run, conn: Connection, models_fp: str, schema_fp: str) -> None:
    """Record models found already in force (a database made by hand or by an older tool), so
    that a later, newer run makes them recognisable as superseded."""
    if run.recorder.seen(conn, models_fp):
        return
    now = run.clock()
    entry = _entry(run, now, "adopted", Plan(), models_fp, schema_fp, schema_fp, None, 0.0)
    run.recorder.record(conn, dataclasses.replace(entry, duration_ms=0))


def _refuse_if_too_slow(conn: Connection, plan: Plan, limit_ms: int) -> int:
    from .estimate import estimate_ms

    estimate = estimate_ms(conn, plan)
    if limit_ms and estimate > limit_ms:
        raise RefusedChange(
            f"Estimated execution time ({_seconds(estimate)}) exceeds maximum allowed"
            f" ({_seconds(limit_ms)}); nothing changed. Run it in a maintenance window with a"
            " higher MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT, or split the model change"
        )
    return estimate


def _has_tables(conn: Connection, ignore: list[str]) -> bool:
    """Whether the database holds any table but ours: an empty one needs no backup."""
    from sqlalchemy import inspect

    from .filters import ignored

    return any(not ignored(name, ignore) for name in inspect(conn).get_table_names())


class _VerifyFailed(Exception):
    """Verification found a problem after applying."""


def _refuse_if_needed(conn: Connection, plan: Plan, metadata: MetaData) -> None:
    from .checks import refusals

    problems = refusals(conn, plan, metadata)
    if problems:
        raise RefusedChange("migration refused, nothing changed: " + "; ".join(problems))


def _backup(run: Run, conn: Connection) -> backups.BackupInfo:
    directory = run.settings.backup_path()
    try:
        info = backups.create(run.backend, conn, directory, run.clock())
    except Exception as exc:  # disk full, read-only, file too large: refuse, change nothing
        raise RefusedChange(
            f"migration refused, nothing changed: cannot write a backup to {directory}: {exc}"
            " (fix MCP_TASK_ORCHESTRATOR_BACKUP_DIR, or set MCP_TASK_ORCHESTRATOR_BACKUP=false)"
        ) from exc
    logger.info("Backup created: {}", info.id)
    removed = backups.prune(directory, run.settings.backup_retention_days)
    if removed:
        logger.info(
            "Removed {} backups older than {} days",
            len(removed),
            run.settings.backup_retention_days,
        )
    warning = backups.storage_warning(directory, run.settings.backup_warn_size_mb)
    if warning:
        logger.warning(warning)
    return info


def _failed(
    run: Run,
    conn: Connection,
    exc: BaseException,
    plan: Plan,
    models_fp: str,
    fp_before: str,
    backup_info: backups.BackupInfo | None,
    started_at: datetime,
    started: float,
    estimate: int | None,
) -> MigrateError:
    """Turn an exception during apply into a typed error, after checking the rollback held."""
    reason = _reason(exc, run.settings.migration_timeout)
    try:
        with conn.begin():
            restored = run.backend.fingerprint(conn, run.settings.ignore_tables) == fp_before
            entry = _entry(
                run,
                started_at,
                "failed_restored" if restored else "failed",
                plan,
                models_fp,
                fp_before,
                None,
                backup_info,
                started,
                error=reason,
            )
            run.recorder.ensure(conn)
            run.recorder.record(conn, entry)
    except Exception as record_exc:  # the database may be what failed
        logger.warning("Could not record the failed run in the history: {}", record_exc)
        restored = False
    if restored:
        error: MigrateError = MigrationFailed(
            f"Database migration failed and was rolled back, the database is unchanged: {reason}"
        )
    else:
        where = f"; restore backup {backup_info.path}" if backup_info else ""
        error = MigrationFailedNotRestored(
            f"Database migration failed and the database may be changed: {reason}{where}"
        )
    logger.error("Database migration failed: {}", reason)
    error.plan = plan
    return error


def _reason(exc: BaseException, limit_ms: int) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc) else repr(exc)
    if "interrupted" in text.lower():
        return (
            f"exceeded MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT ({limit_ms}ms) and was interrupted"
        )
    return text


def _entry(
    run: Run,
    started_at: datetime,
    outcome: str,
    plan: Plan,
    models_fp: str,
    fp_before: str,
    fp_after: str | None,
    backup_info: backups.BackupInfo | None,
    started: float,
    error: str | None = None,
    estimate: int | None = None,
) -> HistoryEntry:
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
        duration_ms=_ms(started),
        host=socket.gethostname(),
        pid=os.getpid(),
        version=__version__,
        error=error,
        estimate_ms=estimate,
        objects=_owned_objects(run.metadata),
    )


def _owned_objects(metadata: MetaData) -> dict[str, list[str]]:
    """The tables, columns and indexes the models define, recorded as ours to drop later."""
    tables = sorted(metadata.tables)
    columns = sorted(f"{t.name}.{c.name}" for t in metadata.sorted_tables for c in t.columns)
    indexes = sorted(str(i.name) for t in metadata.sorted_tables for i in t.indexes if i.name)
    return {"tables": tables, "columns": columns, "indexes": indexes}


def _report_retained(retained: list[str]) -> list[str]:
    """One warning per run for what the database keeps beyond the models."""
    if retained:
        logger.warning("Not in the models, kept with their data (retired): {}", "; ".join(retained))
    return [f"kept, not in the models: {text}" for text in retained]


def _seconds(ms: int) -> str:
    """35000 -> '35s', 1500 -> '1.5s', 2 -> '0.002s'."""
    return f"{ms / 1000:g}s"


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)
