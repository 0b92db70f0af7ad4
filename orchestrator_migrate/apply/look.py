"""The look before the lock: most starts find the schema verified and stop here. It only reads;
whatever fails here has changed nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from loguru import logger
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..context import Run, models_fingerprint
from ..model.attempt import elapsed_ms
from ..model.entries import State
from ..model.errors import MigrateError, MigrationFailed, Refusal
from ..model.outcome import Outcome
from ..model.plan import Plan
from ..model.result import MigrationResult


@dataclass(frozen=True)
class Look:
    """What the look found: the plan, or a result that ends the run (up to date, ahead)."""

    models_fp: str
    schema_fp: str = ""
    plan: Plan = field(default_factory=Plan)
    warnings: tuple[str, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    done: MigrationResult | None = None


def look(run: Run, engine: Engine, dry: bool, started: float) -> Look:
    """Compare without the lock. A dry run (check, plan) always compares in full, to list
    everything the database keeps beyond the models, and runs the pre-checks."""
    with (
        _nothing_changed(),
        engine.connect().execution_options(read_only=True) as conn,
        conn.begin(),
    ):
        models_fp = models_fingerprint(run, engine)
        schema_fp = run.backend.fingerprint(conn, run.settings.ignore_tables)
        state = None if dry else verified(run, conn, models_fp, schema_fp)
        if state is not None:
            return Look(models_fp, done=up_to_date(started, None, report(state.retained)))
        ahead = None if run.settings.allow_downgrade else run.recorder.ahead_of(conn, models_fp)
        if ahead:
            logger.warning(ahead)
            result = MigrationResult(Outcome.AHEAD, execution_time_ms=elapsed_ms(started))
            return Look(models_fp, done=result)
        drifted = _drifted(run, conn, models_fp, schema_fp)
        plan = run.plan(conn)
        reporting = dry or not run.settings.auto_migration
        refused = _would_refuse(conn, plan) if reporting and not plan.empty else ()
    warnings = report(plan.retained_descriptions)
    if drifted:
        warnings.append(_drift_warning(plan))
    return Look(models_fp, schema_fp, plan, tuple(warnings), refused)


def remember(run: Run, engine: Engine, found: Look) -> None:
    """Record the verified match without the lock; losing a race to a process recording the
    same thing at the same moment is fine, since the state is only a cache."""
    try:
        with engine.connect() as conn, conn.begin():
            run.recorder.record_matching(conn, found.models_fp, found.schema_fp, found.plan)
    except DBAPIError as exc:
        logger.debug("Another process recorded the verified state first: {}", exc)


def verified(run: Run, conn: Connection, models_fp: str, schema_fp: str) -> State | None:
    """The verified state when nothing can be left to do (with ALLOW_DESTRUCTIVE, retired
    objects are work)."""
    state = run.recorder.matches(conn, models_fp, schema_fp)
    if state is not None and run.settings.allow_destructive and state.retained:
        return None
    return state


def up_to_date(
    started: float, plan: Plan | None = None, warnings: list[str] | None = None
) -> MigrationResult:
    """The result of a run that found nothing to do."""
    logger.info("Database schema is up to date")
    return MigrationResult(
        Outcome.UP_TO_DATE, plan or Plan(), elapsed_ms(started), warnings=tuple(warnings or ())
    )


def report(retained: list[str]) -> list[str]:
    """One warning per run for what the database keeps beyond the models."""
    if retained:
        logger.warning("Not in the models, kept with their data (retired): {}", "; ".join(retained))
    return [f"kept, not in the models: {text}" for text in retained]


def _would_refuse(conn: Connection, plan: Plan) -> tuple[Refusal, ...]:
    """What the pre-checks would refuse now, so that a plan shows what a run would meet."""
    from ..planning.checks import refusals

    found = tuple(refusals(conn, plan))
    for refusal in found:
        logger.warning("A run would be refused: {}", refusal.message)
    return found


def _drift_warning(plan: Plan) -> str:
    differences = [o.description for o in plan.operations] + plan.retained_descriptions
    text = (
        "Schema drift: the database schema changed outside orchestrator_migrate since these"
        f" models were last verified; differences: {'; '.join(differences) or 'none'}"
    )
    logger.warning(text)
    return text


def _drifted(run: Run, conn: Connection, models_fp: str, schema_fp: str) -> bool:
    """Whether the schema changed by hand since these very models were verified on it."""
    state = run.recorder.verified_state(conn)
    return bool(
        state and state.models_fingerprint == models_fp and state.schema_fingerprint != schema_fp
    )


@contextmanager
def _nothing_changed() -> Iterator[None]:
    """Whatever fails while only reading has changed nothing: exit 5, not 6."""
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
