"""Rehearsal: the pending plan applied to a throwaway copy of the database (a file copy, or a
scratch database on the server), measured and verified; the copy is dropped whatever happens.
The database itself is only read: no history row, no lock, no backup.

The copy is migrated by the real pipeline, with these settings changed: DB_URL is the copy,
BACKUP is off and BACKUP_DIR a temporary directory (where a backend that always backs up writes
its backup), MIGRATION_TIMEOUT is 0 (so that the whole apply is measured; the limit is compared
afterwards), DRY_RUN off, AUTO_MIGRATION on, no METRICS_FILE and no hooks.

Exit codes (`Rehearsal.exit_code`, the CLI's):
  0  nothing to rehearse, or applied and verified on the copy within MIGRATION_TIMEOUT
  1  applied and verified on the copy, but MIGRATION_TIMEOUT would not hold: the measured time
     is over it (a start would be stopped part-way and roll back), or the estimate is (a start
     would refuse the plan)
  2  a setting is wrong, or the user may not create the scratch database (the privilege named)
  4  a start would refuse the plan: data that does not fit, a change no run can apply
  5  the plan failed or did not verify on the copy (a start would fail and roll back), or the
     copy could not be made; the copy's run's own code where it ended otherwise (6)
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import MetaData
from sqlalchemy.engine import URL

from ..apply.runner import execute
from ..backends.base import REHEARSAL_PREFIX
from ..config.settings import Settings
from ..context import Run, prepare_run
from ..model.attempt import elapsed_ms
from ..model.errors import ExitCode, MigrateError, Refusal
from ..model.events import AfterBackup, BeforeApply, Event
from ..model.outcome import Outcome
from ..model.plan import Operation, Plan


@dataclass(frozen=True)
class Rehearsal:
    """What a rehearsal found; `to_dict` is the `--json` document, `lines` the human report."""

    database: str  # the real database, password hidden
    backend: str
    outcome: Outcome  # how the rehearsed start ended: up_to_date, ahead, applied, refused, ...
    operations: tuple[Operation, ...] = ()
    limit_ms: int = 0  # MIGRATION_TIMEOUT; 0 = no limit
    estimate_ms: int | None = None  # the run's own estimate, made on the copy
    measured_ms: int | None = None  # applying and verifying on the copy (what the limit bounds)
    run_ms: int | None = None  # the copy's whole run: look, plan, pre-checks, apply, record
    copy_ms: int | None = None  # making the copy
    verified: bool = False
    refusals: tuple[Refusal, ...] = ()
    error: str | None = None
    error_code: int | None = None  # the exit code of a refusal or failure

    @property
    def fits(self) -> bool | None:
        """Whether the measured time is within MIGRATION_TIMEOUT (None: nothing measured)."""
        if self.measured_ms is None:
            return None
        return not self.limit_ms or self.measured_ms <= self.limit_ms

    @property
    def estimate_fits(self) -> bool | None:
        """Whether the estimate is within MIGRATION_TIMEOUT, so that a start does not refuse."""
        if self.estimate_ms is None:
            return None
        return not self.limit_ms or self.estimate_ms <= self.limit_ms

    @property
    def exit_code(self) -> int:
        if self.error_code is not None:
            return self.error_code
        return 1 if False in (self.fits, self.estimate_fits) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "backend": self.backend,
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "operations": [op.summary() for op in self.operations],
            "estimate_ms": self.estimate_ms,
            "measured_ms": self.measured_ms,
            "run_ms": self.run_ms,
            "copy_ms": self.copy_ms,
            "limit_ms": self.limit_ms,
            "fits": self.fits,
            "estimate_fits": self.estimate_fits,
            "verified": self.verified,
            "refusals": [r.to_dict() for r in self.refusals],
            "error": self.error,
        }

    def lines(self) -> list[str]:
        """The human report."""
        if not self.operations and self.error is None:
            why = _NOTHING.get(self.outcome, f"the database is {self.outcome.value}")
            return [f"Nothing to rehearse on {self.database}: {why}"]
        out = [f"Rehearsal of the pending plan for {self.database} ({self.backend}):"]
        out += [f"  {n}. {op.description}" for n, op in enumerate(self.operations, 1)]
        if self.copy_ms is not None:
            out.append(f"Copied in {self.copy_ms}ms")
        if self.measured_ms is not None:
            checked = "verified" if self.verified else "NOT verified"
            out.append(
                f"Applied and {checked} in {self.measured_ms}ms (estimate"
                f" {_ms(self.estimate_ms)}; the copy's whole run {_ms(self.run_ms)})"
            )
            out.append(self._limit_line())
        out += [f"A start would refuse it: {r.message}" for r in self.refusals]
        if self.error is not None and not self.refusals:
            out.append(f"{_ERRORS.get(self.outcome, 'Failed')}: {self.error}")
        done = "the copy was dropped; " if self.copy_ms is not None else ""
        out.append(f"Exit {self.exit_code}: {done}the database itself was only read")
        return out

    def _limit_line(self) -> str:
        if not self.limit_ms:
            return "MIGRATION_TIMEOUT: none (0), no limit to hold"
        limit = f"MIGRATION_TIMEOUT ({self.limit_ms}ms)"
        why = []
        if self.estimate_fits is False:
            why.append("the estimate is over it (a start would refuse the plan)")
        if self.fits is False:
            why.append("applying took longer (a start would be stopped part-way and roll back)")
        return f"{limit} would not hold: {'; '.join(why)}" if why else f"{limit} holds"


_NOTHING = {
    Outcome.UP_TO_DATE: "the database matches the models",
    Outcome.AHEAD: "the database is ahead of these models (a newer release migrated it)",
}
_ERRORS = {Outcome.INVALID: "Cannot rehearse", Outcome.REFUSED: "A start would refuse it"}


def rehearse(settings: Settings, metadata: MetaData | None = None) -> Rehearsal:
    """Rehearse the pending plan on a throwaway copy; see the module's docstring. Raises only
    for a wrong setting or models reference, as every command does, and lets Ctrl-C through
    once the copy is dropped."""
    run = prepare_run(settings, metadata)
    start = Rehearsal(
        run.url_for_humans, run.backend.name, Outcome.PLANNED, limit_ms=settings.migration_timeout
    )
    try:
        found = execute(run, dry_run=True)  # reads only, like `check`
    except MigrateError as exc:
        return _ended(start, exc)
    if found.plan.empty:
        return replace(start, outcome=found.outcome)
    start = replace(start, operations=found.plan.operations)
    if found.refusals:  # the pre-checks a start runs first: no copy needed to know
        message = "; ".join(r.message for r in found.refusals)
        return replace(
            start,
            outcome=Outcome.REFUSED,
            refusals=found.refusals,
            error=message,
            error_code=int(ExitCode.REFUSED),
        )
    return _on_copy(run, start)


def _on_copy(run: Run, start: Rehearsal) -> Rehearsal:
    """Copy, migrate the copy, and drop it (the backend drops it, whatever happens)."""
    with ExitStack() as stack:
        made = tempfile.TemporaryDirectory(prefix=REHEARSAL_PREFIX, ignore_cleanup_errors=True)
        workdir = Path(stack.enter_context(made))
        logger.info("Rehearsal: copying {}", run.url_for_humans)
        copying = time.monotonic()
        try:
            url = stack.enter_context(run.backend.throwaway_copy(workdir))
        except MigrateError as exc:
            return _ended(start, exc)
        except Exception as exc:  # a client tool missing or failing, no space left
            logger.opt(exception=exc).debug("The rehearsal's copy failed")
            return replace(
                start,
                outcome=Outcome.FAILED_RESTORED,
                error=f"could not copy the database: {type(exc).__name__}: {exc}",
                error_code=int(ExitCode.FAILED_RESTORED),
            )
        copied = replace(start, copy_ms=elapsed_ms(copying))
        return _migrate_copy(run, copied, _copy_settings(run.settings, url, workdir))


def _copy_settings(settings: Settings, url: URL, workdir: Path) -> Settings:
    """The settings of the copy's run: the real ones, pointed at the copy; see the docstring."""
    return settings.model_copy(
        update={
            "db_url": url.render_as_string(hide_password=False),
            "backup": False,
            "backup_dir": workdir / "backups",
            "migration_timeout": 0,
            "dry_run": False,
            "auto_migration": True,
            "metrics_file": None,
            "hooks": [],
        }
    )


def _migrate_copy(run: Run, start: Rehearsal, settings: Settings) -> Rehearsal:
    """The real pipeline on the copy, timed from the moment it starts to change it."""
    clock = _ApplyClock()
    copy = replace(prepare_run(settings, run.metadata, run.clock), hooks=(clock,))
    began = time.monotonic()
    try:
        result = execute(copy)
    except MigrateError as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # the attempt turns it into a failure
            raise exc.__cause__ from None
        return _ended(start, exc)
    measured = elapsed_ms(clock.since if clock.since is not None else began)
    if result.outcome is not Outcome.APPLIED:  # the database changed since it was read
        return replace(start, outcome=result.outcome, operations=result.plan.operations)
    after = execute(copy, dry_run=True)
    left = [op.description for op in after.plan.operations]
    return replace(
        start,
        outcome=result.outcome,
        operations=result.plan.operations,
        estimate_ms=_estimate(copy, result.history_id),
        measured_ms=measured,
        run_ms=result.execution_time_ms,
        verified=not left,
        error=f"after the run, the copy still differs: {'; '.join(left)}" if left else None,
        error_code=int(ExitCode.FAILED_RESTORED) if left else None,
    )


def _estimate(copy: Run, history_id: int | None) -> int | None:
    """The estimate the copy's run made and recorded in the copy's history."""
    engine = copy.backend.create_engine(read_only=True)
    try:
        with engine.connect().execution_options(read_only=True) as conn, conn.begin():
            entries = copy.recorder.entries(conn, 5)
    finally:
        engine.dispose()
    return next((e.estimate_ms for e in entries if e.id == history_id), None)


def _ended(start: Rehearsal, error: MigrateError) -> Rehearsal:
    """The rehearsal of a start that was refused or failed (on the copy, or before it)."""
    plan = error.plan if isinstance(error.plan, Plan) else None
    return replace(
        start,
        outcome=error.outcome,
        operations=plan.operations if plan is not None and plan.operations else start.operations,
        refusals=tuple(error.refusals),
        error=str(error) or type(error).__name__,
        error_code=int(error.exit_code),
    )


class _ApplyClock:
    """A hook on the copy's run: notes when it has passed its pre-checks, estimate and backup,
    and starts to change the copy."""

    def __init__(self) -> None:
        self.since: float | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, BeforeApply | AfterBackup):
            self.since = time.monotonic()


def _ms(value: int | None) -> str:
    return "none" if value is None else f"{value}ms"
