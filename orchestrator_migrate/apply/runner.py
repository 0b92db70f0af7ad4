"""The runner: look without the lock; under it, one attempt (re-plan, refuse, back up, apply,
verify, record)."""

from __future__ import annotations

import time
from dataclasses import replace

from loguru import logger

from ..context import Run
from ..model.attempt import elapsed_ms
from ..model.outcome import Outcome
from ..model.result import MigrationResult
from .attempt import attempt
from .look import Look, look, remember, up_to_date
from .strategies import strategy_for


def execute(run: Run, dry_run: bool | None = None) -> MigrationResult:
    """One run of the pipeline; raises a MigrateError subclass when refused or failed."""
    started = time.monotonic()
    dry = run.settings.dry_run if dry_run is None else dry_run
    logger.info("Checking database schema: {}", run.url_for_humans)
    if not dry:
        run.backend.prepare()
    engine = run.backend.create_engine(read_only=dry)
    try:
        found = look(run, engine, dry, started)
        if found.done is not None:
            return found.done
        if found.plan.empty and (dry or not strategy_for(run.backend).record_matching_under_lock):
            if not dry:
                remember(run, engine, found)
            return up_to_date(started, found.plan, list(found.warnings))
        if not found.plan.empty and (dry or not run.settings.auto_migration):
            return _planned(run, found, dry, started)
        waiting = time.monotonic()
        with run.backend.lock(run.settings.lock_timeout / 1000, run.settings.lock_name):
            holding = time.monotonic()
            result = attempt(run, engine, found, started)
        waited = round((holding - waiting) * 1000)
        return replace(result, lock_wait_ms=waited, lock_hold_ms=elapsed_ms(holding))
    finally:
        engine.dispose()


def _planned(run: Run, found: Look, dry: bool, started: float) -> MigrationResult:
    """A run that only reports what it would do (dry run, or AUTO_MIGRATION=false)."""
    why = "dry run" if dry else "MCP_TASK_ORCHESTRATOR_AUTO_MIGRATION=false"
    # A start that leaves the schema behind warns; a question asked of it (check, status) informs.
    logger.log(
        "INFO" if dry else "WARNING",
        "Database migration needed: {} operations not applied ({})",
        len(found.plan.operations),
        why,
    )
    return MigrationResult(
        Outcome.PLANNED,
        found.plan,
        elapsed_ms(started),
        warnings=found.warnings,
        refusals=found.refusals,
    )
