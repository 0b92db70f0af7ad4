"""The runner: detect -> plan -> backup -> migrate -> verify -> record, under the lock."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from loguru import logger
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..history import record
from ..model.backup_info import BackupInfo
from ..model.entries import State
from ..model.errors import MigrateError, MigrationFailed, Refusal, RefusedChange
from ..model.plan import ChangeKind, Plan
from ..model.result import MigrationResult, Outcome
from . import steps
from .context import Run, elapsed_ms, models_fingerprint


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
        # The fast path takes no lock: most starts find nothing to do. A dry run (check, plan)
        # always compares in full, to list everything the database keeps beyond the models.
        with (
            _nothing_changed(),
            engine.connect().execution_options(read_only=True) as conn,
            conn.begin(),
        ):
            models_fp = models_fingerprint(run, engine)
            schema_fp = run.backend.fingerprint(conn, settings.ignore_tables)
            state = None if dry else _verified(run, conn, models_fp, schema_fp)
            if state is not None:
                return _up_to_date(started, warnings=_report_retained(state.retained))
            ahead = None if settings.allow_downgrade else run.recorder.ahead_of(conn, models_fp)
            if ahead:
                logger.warning(ahead)
                return MigrationResult(Outcome.AHEAD, execution_time_ms=elapsed_ms(started))
            drifted = _drifted(run, conn, models_fp, schema_fp)
            plan = run.plan(conn)
            reporting = dry or not settings.auto_migration
            refused = _would_refuse(conn, plan) if reporting and not plan.empty else ()
        warnings = _report_retained(plan.retained_descriptions)
        if drifted:
            warnings.append(_drift_warning(plan))
        if plan.empty and not dry and not run.backend.transactional_ddl:
            # Another process's DDL is visible before its history row: record under the lock.
            with run.backend.lock(settings.lock_timeout / 1000, settings.lock_name):
                return _apply_locked(run, engine, models_fp, started)
        if plan.empty:
            if not dry:
                _remember_unlocked(run, engine, models_fp, schema_fp, plan)
            return _up_to_date(started, plan, warnings)
        if dry or not settings.auto_migration:
            why = "dry run" if dry else "MCP_TASK_ORCHESTRATOR_AUTO_MIGRATION=false"
            logger.warning(
                "Database migration needed: {} operations not applied ({})",
                len(plan.operations),
                why,
            )
            return MigrationResult(
                Outcome.PLANNED,
                plan,
                elapsed_ms(started),
                warnings=tuple(warnings),
                refusals=refused,
            )
        with run.backend.lock(settings.lock_timeout / 1000, settings.lock_name):
            return _apply_locked(run, engine, models_fp, started)
    finally:
        engine.dispose()


def _apply_locked(run: Run, engine: Engine, models_fp: str, started: float) -> MigrationResult:
    """Under the lock and in one transaction: re-plan, check, back up, apply, verify, record."""
    settings, backend = run.settings, run.backend
    started_at = run.clock()
    backup_info: BackupInfo | None = None
    plan = Plan()
    estimate: int | None = None
    if not backend.transactional_ddl:
        steps.recover_interrupted(run, engine)
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
                record.save_state(run, conn, models_fp, fp_before, plan)
                record.adopt(run, conn, models_fp, fp_before)
                tx.commit()
                return _up_to_date(started, plan)
            steps.refuse_if_needed(conn, plan)
            estimate = steps.refuse_if_too_slow(conn, plan, settings.migration_timeout)
            # Without transactional DDL the backup is what undoes a failure part-way: always.
            needs_backup = settings.backup or not backend.transactional_ddl
            if needs_backup and steps.has_tables(conn, settings.ignore_tables):
                backup_info = steps.backup(run, conn)
            created = {c.table for c in plan.changes if c.kind is ChangeKind.ADD_TABLE}
            touched = sorted({op.table for op in plan.operations} - created)
            before = backend.snapshot(conn, touched)
            if not backend.transactional_ddl:
                # DDL commits as it goes: say first what is under way, so that the next holder
                # of the lock can put the backup back if this process dies part-way.
                run.recorder.ensure(conn)
                run.recorder.record(
                    conn,
                    record.entry(
                        run,
                        started_at,
                        "in_progress",
                        plan,
                        models_fp,
                        fp_before,
                        None,
                        backup_info,
                        started,
                    ),
                )
                tx.commit()
                tx = conn.begin()
            applying = time.monotonic()
            limit = settings.migration_timeout / 1000
            with backend.time_limit(conn, limit) if limit else nullcontext():
                plan = steps.apply(run, conn, plan)
                problems = backend.verify(conn, plan.operations)
                leftover = run.plan(conn)
            problems += [
                f"still differs after applying: {o.description}" for o in leftover.operations
            ]
            if problems:
                raise _VerifyFailed("verification failed: " + "; ".join(problems))
            fp_after = backend.fingerprint(conn, settings.ignore_tables)
            entry = dataclasses.replace(
                record.entry(
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
                ),
                schema_before=before,
            )
            run.recorder.ensure(conn)
            run.recorder.clear_in_progress(conn)
            history_id = run.recorder.record(conn, entry)
            record.save_state(run, conn, models_fp, fp_after, plan)
            tx.commit()
        except RefusedChange as exc:
            tx.rollback()
            exc.plan = plan
            raise
        except BaseException as exc:
            tx.rollback()
            raise steps.failed(
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
        elapsed_ms(started),
        elapsed_ms(applying),
    )
    return MigrationResult(
        Outcome.APPLIED,
        plan,
        elapsed_ms(started),
        backup_info,
        warnings=tuple(plan.retained_descriptions),
        history_id=history_id,
    )


def _would_refuse(conn: Connection, plan: Plan) -> tuple[Refusal, ...]:
    """What the pre-checks would refuse now, so that a plan shows what a run would meet."""
    from ..planning.checks import refusals

    found = tuple(refusals(conn, plan))
    for refusal in found:
        logger.warning("A run would be refused: {}", refusal.message)
    return found


def _remember_unlocked(
    run: Run, engine: Engine, models_fp: str, schema_fp: str, plan: Plan
) -> None:
    """Record the verified state without the lock; losing a race to a process recording the
    same thing at the same moment is fine, since the state is only a cache."""
    try:
        with engine.connect() as conn, conn.begin():
            record.save_state(run, conn, models_fp, schema_fp, plan)
            record.adopt(run, conn, models_fp, schema_fp)
    except DBAPIError as exc:
        logger.debug("Another process recorded the verified state first: {}", exc)


def _drift_warning(plan: Plan) -> str:
    differences = [o.description for o in plan.operations] + plan.retained_descriptions
    text = (
        "Schema drift: the database schema changed outside orchestrator_migrate since these"
        f" models were last verified; differences: {'; '.join(differences) or 'none'}"
    )
    logger.warning(text)
    return text


def _verified(run: Run, conn: Connection, models_fp: str, schema_fp: str) -> State | None:
    """The verified state when nothing can be left to do (with ALLOW_DESTRUCTIVE, retired
    objects are work)."""
    state = run.recorder.matches(conn, models_fp, schema_fp)
    if state is not None and run.settings.allow_destructive and state.retained:
        return None
    return state


def _drifted(run: Run, conn: Connection, models_fp: str, schema_fp: str) -> bool:
    """Whether the schema changed by hand since these very models were verified on it."""
    state = run.recorder.verified_state(conn)
    return bool(
        state and state.models_fingerprint == models_fp and state.schema_fingerprint != schema_fp
    )


def _up_to_date(
    started: float, plan: Plan | None = None, warnings: list[str] | None = None
) -> MigrationResult:
    logger.info("Database schema is up to date")
    return MigrationResult(
        Outcome.UP_TO_DATE, plan or Plan(), elapsed_ms(started), warnings=tuple(warnings or ())
    )


def _report_retained(retained: list[str]) -> list[str]:
    """One warning per run for what the database keeps beyond the models."""
    if retained:
        logger.warning("Not in the models, kept with their data (retired): {}", "; ".join(retained))
    return [f"kept, not in the models: {text}" for text in retained]


@contextmanager
def _nothing_changed() -> Iterator[None]:
    """Before the lock the run only reads: whatever fails there has changed nothing (exit 5)."""
    try:
        yield
    except MigrateError:
        raise
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip() or type(exc).__name__
        logger.opt(exception=exc).debug("Failed while reading the schema")
        raise MigrationFailed(
            f"Database migration failed before changing anything, the database is unchanged:"
            f" {type(exc).__name__}: {reason.splitlines()[0]}"
        ) from exc


class _VerifyFailed(Exception):
    """Verification found a problem after applying."""
