"""Metrics in the Prometheus text format, with prometheus-client: `metrics` prints them from a
status; METRICS_FILE rewrites them after every run for node-exporter's textfile collector."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..model.outcome import Outcome

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..config.settings import Settings
    from ..model.result import MigrationResult
    from .status import Status

PREFIX = "orchestrator_migrate_"


@dataclass(frozen=True)
class Figures:
    """The values exported; each is None when not known (then the metric is left out)."""

    database: str
    backend: str
    last_outcome: str | None = None
    last_run_at: float | None = None  # seconds since the epoch, when it finished
    duration_s: float | None = None
    estimate_s: float | None = None
    pending: int | None = None
    retired: int | None = None
    foreign: int | None = None
    up_to_date: bool | None = None
    drift: bool | None = None
    health: int | None = None
    backups: int = 0
    backup_bytes: int = 0
    lock_held_s: float | None = None  # now (from a status)
    lock_wait_s: float | None = None  # by the run that wrote the file
    lock_hold_s: float | None = None


def from_status(found: Status) -> Figures:
    """The figures `metrics` prints: the same values `status --json` shows."""
    from .health import Health, reasons

    last = found.last_run
    verdict = Health(tuple(reasons(found)), (), found).exit_code
    return Figures(
        database=found.database,
        backend=found.backend,
        last_outcome=None if last is None else last.outcome,
        last_run_at=None if last is None else _epoch(last.finished_at),
        duration_s=None if last is None else last.duration_ms / 1000,
        estimate_s=None if last is None or last.estimate_ms is None else last.estimate_ms / 1000,
        pending=len(found.plan.operations),
        retired=len(found.retired),
        foreign=len(found.foreign),
        up_to_date=found.up_to_date,
        drift=found.drift is not None,
        health=verdict,
        backups=found.backups.count,
        backup_bytes=found.backups.bytes,
        lock_held_s=found.lock.held_for_s or 0.0,
    )


def from_run(
    settings: Settings, database: str, backend: str, result: MigrationResult, finished_at: float
) -> Figures:
    """The figures a run writes to METRICS_FILE, from its own result: no second comparison."""
    from ..backup.files import listing

    found = listing(settings.backup_path())
    settled = result.success and result.outcome is not Outcome.PLANNED
    return Figures(
        database=database,
        backend=backend,
        last_outcome=result.outcome.value,
        last_run_at=finished_at,
        duration_s=result.execution_time_ms / 1000,
        pending=0 if settled else len(result.plan.operations),
        up_to_date=settled,
        backups=len(found),
        backup_bytes=sum(b.size_bytes for b in found),
        lock_wait_s=None if result.lock_wait_ms is None else result.lock_wait_ms / 1000,
        lock_hold_s=None if result.lock_hold_ms is None else result.lock_hold_ms / 1000,
    )


def render(figures: Figures) -> str:
    """The Prometheus text exposition of the figures."""
    from prometheus_client import generate_latest

    return generate_latest(_registry(figures)).decode()


def write_file(path: Path, figures: Figures) -> None:
    """Rewrite path atomically (a collector never reads half a file)."""
    from prometheus_client import write_to_textfile

    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), _registry(figures))


def _registry(f: Figures) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, Gauge, Info

    registry = CollectorRegistry()
    Info(PREFIX + "database", "The database these figures describe", registry=registry).info(
        {"database": f.database, "backend": f.backend}
    )

    def gauge(name: str, text: str, value: float | bool | None) -> None:
        if value is not None:
            Gauge(PREFIX + name, text, registry=registry).set(float(value))

    gauge("last_run_timestamp_seconds", "When the last recorded run finished", f.last_run_at)
    gauge("last_run_duration_seconds", "How long the last recorded run took", f.duration_s)
    gauge("last_run_estimate_seconds", "The time estimated for the last run's plan", f.estimate_s)
    if f.last_outcome is not None:
        outcome = Gauge(
            PREFIX + "last_run_outcome",
            "1 for the outcome of the last recorded run",
            ["outcome"],
            registry=registry,
        )
        outcome.labels(outcome=f.last_outcome).set(1)
    gauge("pending_operations", "Operations a run would apply now", f.pending)
    gauge("retired_objects", "Objects kept with their data, no longer in the models", f.retired)
    gauge("foreign_objects", "Objects not created by these models, left alone", f.foreign)
    gauge("up_to_date", "1 when the database matches the models", f.up_to_date)
    gauge("schema_drift", "1 when the schema changed outside migrations", f.drift)
    gauge("health", "0 healthy, 1 warning, 2 critical", f.health)
    gauge("backups", "Backup files in the backup directory", f.backups)
    gauge("backup_bytes", "Bytes the backup files take", f.backup_bytes)
    gauge("lock_held_seconds", "How long the migration lock has been held (0: free)", f.lock_held_s)
    gauge("lock_wait_seconds", "How long the last run waited for the lock", f.lock_wait_s)
    gauge("lock_hold_seconds", "How long the last run held the lock", f.lock_hold_s)
    return registry


def _epoch(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None
