"""status, health and metrics on a fresh, up-to-date, pending, drifted, ahead and failed database,
on SQLite, PostgreSQL and MariaDB: every field read back from the real CLI, JSON parsed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

V1 = """
import sqlalchemy as sa
md = sa.MetaData()
projects = sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
)
tasks = sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100), nullable=False),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
    sa.Column("legacy", sa.String(20)),
)
"""

# v2: a new table, a new NOT NULL column with a default, and `legacy` gone from the models
# (retired: kept with its data).
V2 = """
import sqlalchemy as sa
md = sa.MetaData()
projects = sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
)
tasks = sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100), nullable=False),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
)
labels = sa.Table(
    "labels", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id")),
)
"""

# A new column whose default breaks a new CHECK that reads it: no pre-check can count rows
# for it, so the database itself fails the run part-way, and the run is undone.
FAILING = """
import sqlalchemy as sa
md = sa.MetaData()
projects = sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
)
tasks = sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100), nullable=False),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
    sa.Column("legacy", sa.String(20)),
    sa.Column("code", sa.String(10), nullable=False, server_default="x"),
    sa.CheckConstraint("length(code) > 3", name="ck_tasks_code"),
)
"""

ROWS = (
    "INSERT INTO projects (id, name) VALUES (1, 'alpha'), (2, 'beta')",
    "INSERT INTO tasks (id, title, project_id, legacy) VALUES"
    " (1, 'one', 1, 'a'), (2, 'two', 1, NULL), (3, 'three', 2, 'c')",
)


class Cli:
    """The CLI against one database with one set of models."""

    def __init__(self, ws, db) -> None:
        self.ws, self.db = ws, db
        self.refs = {name: ws.write_models(name, src) for name, src in _MODELS.items()}

    def __call__(self, models: str, *args: str, env: dict[str, str] | None = None):
        extra = {"MCP_TASK_ORCHESTRATOR_DB_URL": self.db.url, **(env or {})}
        return self.ws.cli("--models", self.refs[models], *args, env=extra)

    def json(self, models: str, *args: str, env: dict[str, str] | None = None):
        done = self(models, *args, "--json", env=env)
        return done.returncode, done.json()

    def migrate(self, models: str) -> None:
        done = self(models, "run")
        assert done.returncode == 0, done.output


_MODELS = {"v1": V1, "v2": V2, "failing": FAILING}


def _metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _value(metrics, name: str) -> float:
    (value,) = metrics["orchestrator_migrate_" + name].values()
    return value


@pytest.fixture
def cli(ws, any_db):
    return Cli(ws, any_db)


def test_fresh_database_is_healthy_with_the_tables_pending(cli, any_db):
    code, status = cli.json("v1", "status")

    assert code == 0
    assert status["state"] == "fresh"
    assert status["backend"] == any_db.kind
    assert status["up_to_date"] is False
    assert status["pending_count"] == len(status["pending"]) == 2
    assert {p["table"] for p in status["pending"]} == {"projects", "tasks"}
    assert all(p["safety"] == "safe" for p in status["pending"])
    assert status["history_recorded"] is False and status["last_run"] is None
    assert status["backups"]["count"] == 0 and status["backups"]["bytes"] == 0
    assert status["lock"]["held"] is False and status["lock"]["holder"] is None
    assert status["retired_count"] == status["foreign_count"] == 0
    assert status["drift"] is None and status["integrity"] == []

    code, health = cli.json("v1", "health")
    assert (code, health["status"], health["reasons"]) == (0, "HEALTHY", [])
    assert any("no run recorded yet" in note for note in health["notes"])
    assert any_db.tables() == set()  # status and health wrote nothing


def test_up_to_date_database_reports_its_last_run_and_backups(cli, any_db):
    cli.migrate("v1")
    any_db.sql(*ROWS)
    cli.migrate("v2")  # with rows: backed up first

    code, status = cli.json("v2", "status")
    assert code == 0
    assert status["state"] == "up_to_date" and status["up_to_date"] is True
    assert status["pending"] == [] and status["pending_count"] == 0
    assert status["database"] == make_url(any_db.url).render_as_string(hide_password=True)
    last = status["last_run"]
    assert last["outcome"] == "applied"
    assert last["operations"] >= 2 and last["duration_ms"] > 0
    assert isinstance(last["estimate_ms"], int)
    assert last["id"] == max(r["id"] for r in cli.json("v2", "history")[1])
    backups = status["backups"]
    assert backups["count"] == 1 and backups["bytes"] > 0
    assert backups["oldest"] == backups["newest"]
    # `legacy` left the models: kept with its data, and ours (retired, not foreign).
    assert status["retired_count"] == 1 and status["foreign_count"] == 0
    (retired,) = status["retired"]
    assert (retired["table"], retired["column"]) == ("tasks", "legacy")

    code, health = cli.json("v2", "health")
    assert (code, health["status"], health["reasons"]) == (0, "HEALTHY", [])
    assert health["details"]["last_run"] == last

    metrics = _metrics(cli("v2", "metrics").stdout)
    assert _value(metrics, "pending_operations") == 0
    assert _value(metrics, "up_to_date") == 1
    assert _value(metrics, "health") == 0
    assert _value(metrics, "retired_objects") == 1
    assert _value(metrics, "backups") == backups["count"]
    assert _value(metrics, "backup_bytes") == backups["bytes"]
    assert _value(metrics, "last_run_duration_seconds") == pytest.approx(last["duration_ms"] / 1000)
    assert _value(metrics, "last_run_estimate_seconds") == pytest.approx(last["estimate_ms"] / 1000)
    outcome = metrics["orchestrator_migrate_last_run_outcome"]
    assert outcome == {(("outcome", "applied"),): 1.0}
    (info,) = metrics["orchestrator_migrate_database_info"]
    assert dict(info)["backend"] == any_db.kind


def test_pending_migration_is_a_warning_with_its_operations(cli, any_db):
    cli.migrate("v1")
    any_db.sql(*ROWS)

    code, status = cli.json("v2", "status")
    plan = cli("v2", "plan", "--json").json()

    assert code == 0
    assert status["state"] == "pending"
    assert [p["description"] for p in status["pending"]] == [
        o["description"] for o in plan["operations"]
    ]
    assert [p["safety"] for p in status["pending"]] == [o["safety"] for o in plan["operations"]]
    assert status["pending_count"] == len(plan["operations"]) == 2  # legacy: kept as it is
    assert status["last_run"]["outcome"] == "applied"

    code, health = cli.json("v2", "health")
    assert (code, health["status"]) == (1, "WARNING")
    assert [r["code"] for r in health["reasons"]] == ["pending"]
    text = cli("v2", "health")
    assert text.returncode == 1 and text.stdout.startswith("WARNING")

    metrics = _metrics(cli("v2", "metrics").stdout)
    assert _value(metrics, "pending_operations") == status["pending_count"]
    assert _value(metrics, "up_to_date") == 0
    assert _value(metrics, "health") == 1


def test_drift_is_reported_and_the_hand_made_column_is_foreign(cli, any_db):
    cli.migrate("v1")
    any_db.sql("ALTER TABLE tasks ADD COLUMN extra INTEGER")

    code, status = cli.json("v1", "status")

    assert code == 0
    assert status["drift"] is not None and "extra" in status["drift"]
    assert status["foreign_count"] == 1 and status["retired_count"] == 0
    assert status["foreign"][0]["column"] == "extra"
    code, health = cli.json("v1", "health")
    assert (code, health["status"]) == (1, "WARNING")
    assert [r["code"] for r in health["reasons"]] == ["drift"]
    assert _value(_metrics(cli("v1", "metrics").stdout), "schema_drift") == 1


def test_a_database_ahead_of_these_models_is_healthy_with_a_note(cli, any_db):
    cli.migrate("v1")
    cli.migrate("v2")

    code, status = cli.json("v1", "status")  # an old replica during a rollout

    assert code == 0
    assert status["state"] == "ahead"
    assert status["pending"] == []
    assert any("newer release" in note for note in status["notes"])
    code, health = cli.json("v1", "health")
    assert (code, health["status"], health["reasons"]) == (0, "HEALTHY", [])
    assert any("newer release" in note for note in health["notes"])


def test_a_failed_run_is_a_warning_naming_its_error(cli, any_db):
    cli.migrate("v1")
    any_db.sql(*ROWS)
    failed = cli("failing", "run")
    assert failed.returncode == 5, failed.output

    code, status = cli.json("failing", "status")
    assert code == 0
    last = status["last_run"]
    assert last["outcome"] == "failed_restored"
    assert last["error"]
    assert status["state"] == "pending"

    code, health = cli.json("failing", "health")
    assert (code, health["status"]) == (1, "WARNING")
    assert {r["code"] for r in health["reasons"]} == {"failed_restored", "pending"}
    metrics = _metrics(cli("failing", "metrics").stdout)
    assert metrics["orchestrator_migrate_last_run_outcome"] == {
        (("outcome", "failed_restored"),): 1.0
    }


def test_an_unreadable_database_is_critical(ws):
    ws.db_path.parent.mkdir(parents=True)
    ws.db_path.write_text("this is not a database\n" * 100)
    models = ws.write_models("v1", V1)

    done = ws.cli("--models", models, "health", "--json")

    assert done.returncode == 2, done.output
    report = done.json()
    assert report["status"] == "CRITICAL"
    assert [r["code"] for r in report["reasons"]] == ["unreachable"]
    assert ws.db_path.read_text() == "this is not a database\n" * 100


def test_a_broken_foreign_key_is_an_integrity_problem(ws):
    models = ws.write_models("v1", V1)
    assert ws.cli("--models", models).returncode == 0
    ws.script("INSERT INTO tasks (id, title, project_id) VALUES (9, 'orphan', 42);")

    done = ws.cli("--models", models, "health", "--json")

    assert done.returncode == 2, done.output
    report = done.json()
    assert report["status"] == "CRITICAL"
    assert [r["code"] for r in report["reasons"]] == ["integrity"]
    assert "foreign key" in report["reasons"][0]["message"]


HOLD = textwrap.dedent(
    """
    import sys, time
    from orchestrator_migrate.backends import backend_for
    lock = backend_for(sys.argv[1]).lock(10, "orchestrator_migrate")
    lock.acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_a_lock_held_longer_than_the_lock_timeout_is_a_warning(cli, any_db, ws):
    cli.migrate("v1")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, any_db.url],
        stdout=subprocess.PIPE,
        text=True,
        env=ws.env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(0.3)
        env = {"MCP_TASK_ORCHESTRATOR_LOCK_TIMEOUT": "100"}
        code, status = cli.json("v1", "status", env=env)
        code, health = cli.json("v1", "health", env=env)
    finally:
        holder.kill()
        holder.wait()

    lock = status["lock"]
    assert lock["held"] is True and lock["holder"]["pid"] == holder.pid
    assert lock["held_for_s"] >= 0.3 and lock["held_too_long"] is True
    assert (code, health["status"]) == (1, "WARNING")
    assert [r["code"] for r in health["reasons"]] == ["lock_held"]
    assert str(holder.pid) in health["reasons"][0]["message"]


def test_backups_over_their_limit_are_a_warning(ws):
    """The limit counts the backup files' bytes, the same on every backend: SQLite shows it."""
    models = ws.write_models("v1", V1)
    assert ws.cli("--models", models).returncode == 0
    ws.script(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 15000)"
        " INSERT INTO tasks (id, title) SELECT i, hex(randomblob(45)) FROM n;"
    )
    assert ws.cli("--models", ws.write_models("v2", V2)).returncode == 0  # backed up first
    env = {"MCP_TASK_ORCHESTRATOR_BACKUP_WARN_SIZE_MB": "1"}

    status = ws.cli("--models", "v2:md", "status", "--json", env=env).json()
    health = ws.cli("--models", "v2:md", "health", "--json", env=env)

    backups = status["backups"]
    assert backups["count"] == 1 and backups["bytes"] > 1024 * 1024
    assert backups["limit_mb"] == 1 and backups["over_limit"] is True
    assert health.returncode == 1
    report = health.json()
    assert [r["code"] for r in report["reasons"]] == ["backup_storage"]
    assert "MCP_TASK_ORCHESTRATOR_BACKUP_WARN_SIZE_MB" in report["reasons"][0]["message"]
    # Under a larger limit the same backups are fine.
    fine = ws.cli(
        "--models", "v2:md", "health", env={"MCP_TASK_ORCHESTRATOR_BACKUP_WARN_SIZE_MB": "50"}
    )
    assert fine.returncode == 0, fine.output


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_server_database_that_does_not_exist_is_critical(ws, kind):
    from conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL

    admin = PG_ADMIN_URL if kind == "postgresql" else MYSQL_ADMIN_URL
    url = make_url(admin).set(database="om_never_created_here").render_as_string(False)
    models = ws.write_models("v1", V1)

    done = ws.cli("--models", models, "health", "--json", env={"MCP_TASK_ORCHESTRATOR_DB_URL": url})

    assert done.returncode == 2, done.output
    report = done.json()
    assert report["status"] == "CRITICAL" and report["details"] is None
    (reason,) = report["reasons"]
    assert reason["code"] == "unreachable"
    assert "om_never_created_here" in reason["message"]
