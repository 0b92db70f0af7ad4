"""Hooks (entry points and HOOKS), the example backup-copy hook, and METRICS_FILE, on the three
databases, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_status_health import ROWS, V1, V2

EXAMPLE_HOOK = Path(__file__).resolve().parents[1] / "examples" / "backup_copy"

RECORDER = """
import json, os
from orchestrator_migrate import AfterApply, AfterBackup, BeforeApply, OnFailure

def record(event):
    entry = {"event": type(event).__name__, "database": event.database}
    if isinstance(event, BeforeApply):
        entry["operations"] = [op.description for op in event.plan.operations]
    if isinstance(event, AfterBackup):
        entry["backup"] = str(event.backup.path)
        entry["exists"] = event.backup.path.is_file()
    if isinstance(event, AfterApply):
        entry["outcome"] = event.result.outcome.value
    if isinstance(event, OnFailure):
        entry["outcome"] = event.result.outcome.value
        entry["error"] = str(event.error)
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\\n")
    if os.environ.get("HOOK_RAISE_AT") == entry["event"]:
        raise RuntimeError("the change window is closed")
"""


class Setup:
    def __init__(self, ws, db) -> None:
        self.ws, self.db = ws, db
        self.v1 = ws.write_models("v1", V1)
        self.v2 = ws.write_models("v2", V2)
        ws.write_models("recorder", RECORDER)
        self.log = ws.root / "hooks.jsonl"

    def cli(self, models: str, *args: str, env: dict[str, str] | None = None):
        extra = {"MCP_TASK_ORCHESTRATOR_DB_URL": self.db.url, "HOOK_LOG": str(self.log)}
        return self.ws.cli("--models", models, *args, env={**extra, **(env or {})})

    def events(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def schema(self) -> tuple:
        tables = sorted(self.db.tables())
        columns = {t: sorted(self.db.columns(t)) for t in tables}
        rows = self.db.sql("SELECT id, title, legacy FROM tasks ORDER BY id")
        return tables, columns, rows

    def at_v1_with_rows(self) -> None:
        assert self.cli(self.v1).returncode == 0
        self.db.sql(*ROWS)


@pytest.fixture
def s(ws, any_db):
    return Setup(ws, any_db)


def _entry_point(ws, name: str, value: str) -> None:
    """Register a hook the way an installed package does: a dist-info with entry_points.txt."""
    dist = ws.models_dir / "hookdist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hookdist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[orchestrator_migrate.hooks]\n{name} = {value}\n")


def test_hooks_fire_in_order_with_the_plan_the_backup_and_the_result(s, ws):
    _entry_point(ws, "recorder", "recorder:record")
    s.at_v1_with_rows()
    s.log.unlink()  # v1 created the tables: BeforeApply and AfterApply, no backup of nothing
    plan = s.cli(s.v2, "plan", "--json").json()

    done = s.cli(s.v2)

    assert done.returncode == 0, done.output
    events = s.events()
    assert [e["event"] for e in events] == ["BeforeApply", "AfterBackup", "AfterApply"]
    assert events[0]["operations"] == [o["description"] for o in plan["operations"]]
    assert events[1]["exists"] is True
    assert Path(events[1]["backup"]).parent == ws.backup_dir
    assert events[2]["outcome"] == "applied"
    # An up-to-date start changes nothing and fires nothing.
    assert s.cli(s.v2).returncode == 0
    assert len(s.events()) == 3


@pytest.mark.parametrize("at", ["BeforeApply", "AfterBackup"])
def test_a_hook_raising_before_the_change_stops_the_run_with_nothing_changed(s, at):
    s.at_v1_with_rows()
    before = s.schema()

    done = s.cli(s.v2, "--hook", "recorder:record", env={"HOOK_RAISE_AT": at})

    assert done.returncode == 4, done.output
    assert "stopped by hook recorder:record" in done.stderr, done.output
    assert "the change window is closed" in done.stderr
    assert "nothing changed" in done.stderr
    assert s.schema() == before
    assert [e["event"] for e in s.events()][-1] == "OnFailure"
    assert s.events()[-1]["outcome"] == "refused"
    # The next start, with the hook content, migrates.
    assert s.cli(s.v2, "--hook", "recorder:record").returncode == 0
    assert "labels" in s.db.tables()


def test_a_hook_raising_after_the_change_is_logged_and_the_migration_stands(s):
    s.at_v1_with_rows()

    done = s.cli(
        s.v2,
        env={"MCP_TASK_ORCHESTRATOR_HOOKS": "recorder:record", "HOOK_RAISE_AT": "AfterApply"},
    )

    assert done.returncode == 0, done.output
    assert "Hook recorder:record failed at AfterApply" in done.stderr
    assert "labels" in s.db.tables()
    assert s.cli(s.v2, "check").returncode == 0


def test_a_hook_that_does_not_import_is_a_clear_error(s):
    done = s.cli(s.v1, "--hook", "recorder:nothing_here")

    assert done.returncode == 2
    assert "hook 'recorder:nothing_here'" in done.stderr
    assert "has no attribute" in done.stderr
    assert s.db.tables() == set()


def test_the_example_hook_copies_each_verified_backup_and_the_copy_restores(s, ws, any_db):
    copies = ws.root / "offsite"
    env = {
        "PYTHONPATH": f"{EXAMPLE_HOOK}:{ws.models_dir}",
        "MCP_TASK_ORCHESTRATOR_HOOKS": "backup_copy:copy_backup",
        "BACKUP_COPY_DIR": str(copies),
        "BACKUP_COPY_KEEP": "2",
    }
    assert s.cli(s.v1, env=env).returncode == 0
    s.db.sql(*ROWS)
    v1_state = s.schema()
    assert s.cli(s.v2, env=env).returncode == 0

    (backup,) = ws.backups()
    (copy,) = sorted(copies.iterdir())
    assert copy.name == backup.name and copy.read_bytes() == backup.read_bytes()
    assert copy.stat().st_mode & 0o077 == 0

    # The second directory alone brings the database back to before v2.
    for b in ws.backups():
        b.unlink()
    restore = s.cli(
        s.v1,
        "backups",
        "restore",
        copy.name.split(".")[0],
        env={**env, "MCP_TASK_ORCHESTRATOR_BACKUP_DIR": str(copies)},
    )
    assert restore.returncode == 0, restore.output
    assert s.schema() == v1_state


def test_the_example_hook_keeps_only_the_newest_copies(s, ws):
    copies = ws.root / "offsite"
    env = {
        "PYTHONPATH": f"{EXAMPLE_HOOK}:{ws.models_dir}",
        "MCP_TASK_ORCHESTRATOR_HOOKS": "backup_copy:copy_backup",
        "BACKUP_COPY_DIR": str(copies),
        "BACKUP_COPY_KEEP": "2",
    }
    s.at_v1_with_rows()
    later = [s.v2]
    for n in (3, 4):  # each release adds a column to labels
        columns = (f"labels.append_column(sa.Column('c{i}', sa.Integer))" for i in range(3, n + 1))
        extra = "\n" + "\n".join(columns)
        later.append(ws.write_models(f"v{n}", V2 + extra))
    for models in later:  # three changes with data: three backups
        assert s.cli(models, env=env).returncode == 0
    assert len(ws.backups()) == 3
    kept = sorted(p.name for p in copies.iterdir())
    assert kept == [b.name for b in ws.backups()][-2:]


def test_the_example_hook_without_its_directory_stops_the_run(s, ws):
    s.at_v1_with_rows()
    before = s.schema()
    env = {
        "PYTHONPATH": f"{EXAMPLE_HOOK}:{ws.models_dir}",
        "MCP_TASK_ORCHESTRATOR_HOOKS": "backup_copy:copy_backup",
    }

    done = s.cli(s.v2, env=env)

    assert done.returncode == 4, done.output
    assert "BACKUP_COPY_DIR is not set" in done.stderr
    assert s.schema() == before


def _file_metrics(path: Path) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            label = sample.labels.get("outcome")
            found[sample.name + (f"[{label}]" if label else "")] = sample.value
    return found


def test_metrics_file_is_written_after_every_run(s, ws):
    target = ws.root / "textfile" / "orchestrator_migrate.prom"
    env = {"MCP_TASK_ORCHESTRATOR_METRICS_FILE": str(target)}
    s.at_v1_with_rows()
    assert not target.exists()  # not asked for then

    assert s.cli(s.v2, env=env).returncode == 0
    applied = _file_metrics(target)
    assert applied["orchestrator_migrate_last_run_outcome[applied]"] == 1
    assert applied["orchestrator_migrate_pending_operations"] == 0
    assert applied["orchestrator_migrate_backups"] == 1
    assert applied["orchestrator_migrate_lock_wait_seconds"] >= 0
    assert applied["orchestrator_migrate_lock_hold_seconds"] > 0
    assert applied["orchestrator_migrate_last_run_duration_seconds"] > 0

    done = s.cli(s.v2, "--hook", "recorder:record", env={**env, "HOOK_RAISE_AT": "AfterApply"})
    assert done.returncode == 0  # up to date: no AfterApply, and the file is rewritten
    assert "orchestrator_migrate_last_run_outcome[up_to_date]" in _file_metrics(target)
    assert not list(target.parent.glob("*.tmp*"))
