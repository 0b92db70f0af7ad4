"""One attempt under the lock, in named stages: re-plan, refuse, back up, apply, verify, record.
Each stage fills in the Attempt; a failure anywhere is undone by the backend's strategy."""

from __future__ import annotations

import time
from contextlib import nullcontext

from loguru import logger
from sqlalchemy.engine import Connection, Engine

from ..context import Run
from ..model.attempt import Attempt, elapsed_ms
from ..model.changes import ChangeKind
from ..model.errors import RefusedChange
from ..model.events import AfterBackup, BeforeApply
from ..model.outcome import Outcome
from ..model.plan import Plan
from ..model.result import MigrationResult
from . import hooks, stages
from .failure import failed
from .look import Look, up_to_date, verified
from .strategies import Strategy, strategy_for


def attempt(run: Run, engine: Engine, found: Look, started: float) -> MigrationResult:
    """Migrate under the lock, in one transaction where the backend allows it."""
    strategy = strategy_for(run.backend)
    strategy.recover(run, engine)
    facts = Attempt(found.models_fp, started, run.clock())
    with engine.connect() as conn:
        conn.begin()
        try:
            done = _replan(run, conn, facts, found)
            if done is not None:
                conn.commit()
                return done
            _refuse(run, conn, facts)
            hooks.before_change(run, BeforeApply(run.url_for_humans, facts.plan))
            _back_up(run, conn, facts, strategy)
            if facts.backup is not None:
                event = AfterBackup(run.url_for_humans, facts.backup, facts.plan)
                hooks.before_change(run, event)
            strategy.before_apply(run, conn, facts)
            applying = _apply(run, conn, facts)
            history_id = _record(run, conn, facts)
            conn.commit()
        except RefusedChange as exc:
            conn.rollback()
            exc.plan = facts.plan
            raise
        except BaseException as exc:
            conn.rollback()
            raise failed(run, conn, facts, strategy, exc) from exc
    logger.info(
        "Database migration completed: {} operations in {}ms (apply {}ms)",
        len(facts.plan.operations),
        elapsed_ms(started),
        elapsed_ms(applying),
    )
    return MigrationResult(
        Outcome.APPLIED,
        facts.plan,
        elapsed_ms(started),
        facts.backup,
        warnings=tuple(facts.plan.retained_descriptions),
        history_id=history_id,
    )


def _replan(run: Run, conn: Connection, facts: Attempt, found: Look) -> MigrationResult | None:
    """Again, under the lock: another process may have just done the work. The plan made
    before the lock stands when the schema has not moved since and no step of it counted rows
    (rows may have been written in between)."""
    facts.fingerprint_before = run.backend.fingerprint(conn, run.settings.ignore_tables)
    if verified(run, conn, facts.models_fingerprint, facts.fingerprint_before):
        return up_to_date(facts.started)
    if found.schema_fp == facts.fingerprint_before and _row_free(found.plan):
        logger.debug("Schema unchanged since the look: its plan stands")
        facts.plan = found.plan
    else:
        facts.plan = run.plan(conn)
    if facts.plan.empty:
        run.recorder.record_matching(
            conn, facts.models_fingerprint, facts.fingerprint_before, facts.plan
        )
        return up_to_date(facts.started, facts.plan)
    return None


def _row_free(plan: Plan) -> bool:
    """A plan that says nothing about rows, which may have been written since it was made:
    no rebuild's count, no fill or removal with its count, nothing kept with its count."""
    return (
        not plan.empty
        and not plan.retained
        and all(op.rebuilt_rows is None and not op.destructive for op in plan.operations)
        and all(change.fill is None for change in plan.changes)
    )


def _refuse(run: Run, conn: Connection, facts: Attempt) -> None:
    """Refuse, before any change, data that does not fit and a plan over the time limit."""
    stages.refuse_if_needed(conn, facts.plan)
    facts.estimate_ms = stages.refuse_if_too_slow(conn, facts.plan, run.settings.migration_timeout)


def _back_up(run: Run, conn: Connection, facts: Attempt, strategy: Strategy) -> None:
    """The backup (an empty database needs none), and the definitions a rollback needs."""
    if strategy.needs_backup(run.settings) and stages.has_tables(
        conn, run.settings.ignore_tables, run.backend.schemas
    ):
        facts.backup = stages.backup(run, conn)
    created = {c.table for c in facts.plan.changes if c.kind is ChangeKind.ADD_TABLE}
    touched = sorted({op.table for op in facts.plan.operations} - created)
    facts.schema_before = run.backend.snapshot(conn, touched)


def _apply(run: Run, conn: Connection, facts: Attempt) -> float:
    """Execute the plan and verify it within the time limit; returns when applying began."""
    applying = time.monotonic()
    limit = run.settings.migration_timeout / 1000
    with run.backend.time_limit(conn, limit) if limit else nullcontext():
        stages.execute(conn, facts.plan, facts.committed)
        problems = run.backend.verify(conn, facts.plan.operations)
        leftover = run.plan(conn)
    problems += [f"still differs after applying: {o.description}" for o in leftover.operations]
    if problems:
        raise VerifyFailed("verification failed: " + "; ".join(problems))
    return applying


def _record(run: Run, conn: Connection, facts: Attempt) -> int:
    """The history row and the verified state, in the migration's transaction."""
    fp_after = run.backend.fingerprint(conn, run.settings.ignore_tables)
    return run.recorder.record_applied(conn, facts, fp_after)


class VerifyFailed(Exception):
    """Verification found a problem after applying."""
