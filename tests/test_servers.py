"""The pipeline on the real PostgreSQL and MariaDB servers, each test in a database of its own.

PostgreSQL runs a plan in one transaction; MariaDB commits each DDL statement, so there a failure
part-way is undone by restoring the backup taken before the run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import CliResult

RACER = str(Path(__file__).with_name("racer.py"))

V1 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("projects", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(50), nullable=False))
sa.Table("tasks", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("project_id", sa.Integer),
         sa.Column("title", sa.String(100)),
         sa.Column("estimate", sa.String(10)),
         sa.Index("ix_tasks_title", "title"))
"""

# Adds a table, a column with a default, an index, a unique constraint, a foreign key, a type
# change (text to integer, cast by USING) and NOT NULL; drops an index the tool created.
V2 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("projects", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(50), nullable=False, unique=True))
sa.Table("tasks", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
         sa.Column("title", sa.String(100), nullable=False),
         sa.Column("estimate", sa.Integer),
         sa.Column("priority", sa.Integer, nullable=False, server_default="3"),
         sa.Index("ix_tasks_priority", "priority"))
sa.Table("tags", md, sa.Column("id", sa.Integer, primary_key=True))
"""


@dataclass
class Server:
    """A scratch database on one server, and the few queries that differ between servers."""

    kind: str
    url: sa.engine.URL
    schema_name: str  # the SQL expression for the current schema
    backup_glob: str
    index_query: str


@pytest.fixture(params=["postgresql", "mysql"])
def db(request) -> Server:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        return Server(
            "postgresql",
            url,
            "current_schema()",
            "backup_*.dump",
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()",
        )
    url = request.getfixturevalue("mysql_url")
    return Server(
        "mysql",
        url,
        "DATABASE()",
        "backup_*.sql",
        "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()",
    )


def url_text(url) -> str:
    return url.render_as_string(hide_password=False)


def run_sql(url, *statements: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result: list[tuple] = []
            for statement in statements:
                rows = conn.exec_driver_sql(statement)
                result = [tuple(r) for r in rows] if rows.returns_rows else []
            return result
    finally:
        engine.dispose()


def schema(db: Server) -> list[tuple]:
    return run_sql(
        db.url,
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        f" WHERE table_schema = {db.schema_name}"
        " AND table_name NOT LIKE 'orchestrator_migrate%%' ORDER BY 1, 2",
    )


def seed(ws, db: Server) -> dict[str, str]:
    url = db.url
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url_text(url)}
    assert ws.cli("--models", ws.write_models("srv_v1", V1), env=env).returncode == 0
    run_sql(
        url,
        "INSERT INTO projects (id, name) VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO tasks (id, project_id, title, estimate) VALUES"
        " (1, 1, 'write', '5'), (2, 2, 'test', '8'), (3, 1, 'ship', NULL)",
    )
    return env


def race(ws, env: dict[str, str], ref: str, count: int = 8) -> list[tuple[int, str]]:
    """Start count migrators that begin at the same moment; their (exit code, stderr)."""
    go = ws.root / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, RACER, str(go), "--models", ref],
            cwd=ws.root,
            env=ws.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    time.sleep(3)  # every racer imports and waits for the start file
    go.touch()
    errors = [p.communicate(timeout=180)[1] for p in procs]
    return [(p.returncode, err) for p, err in zip(procs, errors, strict=True)]


def test_first_run_creates_the_schema_and_the_second_is_up_to_date(ws, db):
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url_text(db.url)}
    ref = ws.write_models("srv_v1", V1)
    first = ws.cli("--models", ref, env=env)
    assert first.returncode == 0, first.output
    assert "Database migration completed" in first.stderr
    assert "Backup created" not in first.stderr  # an empty database has nothing to back up
    second = ws.cli("--models", ref, env=env)
    assert second.returncode == 0 and "Database schema is up to date" in second.stderr
    assert ws.cli("check", "--models", ref, env=env).returncode == 0


def test_every_kind_of_change_keeps_the_rows_and_converges(ws, db):
    env = seed(ws, db)
    v2 = ws.write_models("srv_v2", V2)
    result = ws.cli("--models", v2, env=env)
    assert result.returncode == 0, result.output
    rows = run_sql(
        db.url, "SELECT id, project_id, title, estimate, priority FROM tasks ORDER BY id"
    )
    assert rows == [(1, 1, "write", 5, 3), (2, 2, "test", 8, 3), (3, 1, "ship", None, 3)]
    indexes = {r[0] for r in run_sql(db.url, db.index_query)}
    assert "ix_tasks_priority" in indexes and "ix_tasks_title" not in indexes
    backups = list(ws.backup_dir.glob(db.backup_glob))
    assert len(backups) == 1
    again = ws.cli("--models", v2, env=env)
    assert again.returncode == 0 and "Database schema is up to date" in again.stderr
    assert ws.cli("check", "--models", v2, env=env).returncode == 0
    assert len(list(ws.backup_dir.glob("backup_*"))) == 1


def test_a_failing_statement_rolls_the_whole_plan_back(ws, db):
    env = seed(ws, db)
    run_sql(db.url, "UPDATE tasks SET estimate = 'soon' WHERE id = 3")  # cannot become INTEGER
    before = schema(db)
    result = ws.cli("--models", ws.write_models("srv_v2", V2), env=env)
    assert result.returncode == 5, result.output
    assert "rolled back" in result.stderr
    assert schema(db) == before
    assert run_sql(db.url, "SELECT count(*) FROM tasks") == [(3,)]


def test_not_null_over_nulls_is_refused_and_changes_nothing(ws, db):
    env = seed(ws, db)
    run_sql(db.url, "UPDATE tasks SET title = NULL WHERE id IN (1, 2)")
    before = schema(db)
    result = ws.cli("--models", ws.write_models("srv_v2", V2), env=env)
    assert result.returncode == 4, result.output
    assert "tasks.title" in result.stderr and "2 rows hold NULL" in result.stderr
    assert schema(db) == before
    assert not ws.backup_dir.exists()


def test_rollback_from_the_backup_restores_the_previous_schema_and_rows(ws, db):
    env = seed(ws, db)
    before = schema(db)
    assert ws.cli("--models", ws.write_models("srv_v2", V2), env=env).returncode == 0
    refused = ws.cli("rollback", env=env)
    assert refused.returncode == 4 and "--use-backup" in refused.stderr
    restored = ws.cli("rollback", "--use-backup", env=env)
    assert restored.returncode == 0, restored.output
    assert schema(db) == before
    assert run_sql(db.url, "SELECT id, title, estimate FROM tasks ORDER BY id") == [
        (1, "write", "5"),
        (2, "test", "8"),
        (3, "ship", None),
    ]
    outcomes = [e["outcome"] for e in ws.cli("history", "--json", env=env).json()]
    assert outcomes[:2] == ["restored", "rolled_back"]


def test_racers_on_an_empty_server_database_create_the_schema_once(ws, db):
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url_text(db.url)}
    ref = ws.write_models("srv_v1", V1)
    results = race(ws, env, ref)
    assert [code for code, _ in results] == [0] * 8, results
    assert sum("Database migration completed" in err for _, err in results) == 1
    history = run_sql(db.url, "SELECT outcome FROM orchestrator_migrate_history")
    assert history == [("applied",)]


def test_postgresql_ddl_on_a_table_held_by_a_long_reader_fails_fast(ws, pg_url):
    pg = Server("postgresql", pg_url, "current_schema()", "", "")
    env = seed(ws, pg)
    before = schema(pg)
    engine = sa.create_engine(pg_url)
    reader = engine.connect()
    try:
        tx = reader.begin()
        reader.exec_driver_sql("SELECT count(*) FROM tasks").all()  # holds ACCESS SHARE on tasks
        started = time.monotonic()
        result = ws.cli(
            "--models",
            ws.write_models("srv_v2", V2),
            env={**env, "MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": "2000"},
        )
        waited = time.monotonic() - started
        tx.rollback()
    finally:
        reader.close()
        engine.dispose()
    assert result.returncode == 5, result.output
    assert "stayed locked" in result.stderr
    assert waited < 30
    assert schema(pg) == before
    assert ws.cli("--models", ws.write_models("srv_v2", V2), env=env).returncode == 0


def test_mariadb_ddl_on_a_table_held_by_a_long_reader_fails_and_is_restored(ws, mysql_url):
    my = Server("mysql", mysql_url, "DATABASE()", "", "")
    env = seed(ws, my)
    before = schema(my)
    engine = sa.create_engine(mysql_url)
    reader = engine.connect()
    tx = reader.begin()
    reader.exec_driver_sql("SELECT count(*) FROM tasks").all()  # holds a metadata lock on tasks
    proc = ws.popen(
        "--models",
        ws.write_models("srv_v2", V2),
        env={**env, "MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": "2000"},
    )
    try:
        # The reader ends a few seconds after the migrator's DDL started waiting for it, as a
        # slow request would: by then the DDL has given up (after 1 s) and the restore waits.
        waiting = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE"
        waiting += " 'Waiting for table metadata lock'"
        deadline = time.monotonic() + 120
        while run_sql(mysql_url, waiting) == [(0,)] and proc.poll() is None:
            assert time.monotonic() < deadline, "the migrator never waited for the reader"
            time.sleep(0.05)
        time.sleep(3)
        tx.rollback()
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.close()
        engine.dispose()
    result = CliResult(proc.returncode, out, err)
    assert result.returncode == 5, result.output
    assert schema(my) == before
    assert run_sql(mysql_url, "SELECT count(*) FROM tasks") == [(3,)]
    assert ws.cli("--models", ws.write_models("srv_v2", V2), env=env).returncode == 0


def test_postgresql_holder_killed_mid_migration_leaves_the_old_schema_and_the_next_run_finishes(
    ws, pg_url
):
    pg = Server("postgresql", pg_url, "current_schema()", "", "")
    env = seed(ws, pg)
    run_sql(
        pg_url,
        "INSERT INTO tasks (id, project_id, title, estimate)"
        " SELECT i, 1, 'bulk ' || i, (i %% 100)::text FROM generate_series(10, 400000) AS i",
    )
    before = schema(pg)
    count = run_sql(pg_url, "SELECT count(*) FROM tasks")
    slow = {**env, "MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": "0"}
    victim = ws.popen("--models", ws.write_models("srv_v2", V2), env=slow)
    deadline = time.monotonic() + 60
    # Kill it while its ALTER TABLE runs on the server.
    while not run_sql(
        pg_url,
        "SELECT 1 FROM pg_stat_activity WHERE query ILIKE 'ALTER TABLE tasks%%'"
        " AND state = 'active'",
    ):
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the migration never reached its ALTER TABLE"
        time.sleep(0.01)
    victim.kill()
    victim.wait()
    time.sleep(0.5)  # the server notices the closed connection and rolls back
    assert schema(pg) == before
    assert run_sql(pg_url, "SELECT count(*) FROM tasks") == count
    finished = ws.cli("--models", ws.write_models("srv_v2", V2), env=slow)
    assert finished.returncode == 0, finished.output
    assert run_sql(pg_url, "SELECT count(*) FROM tasks") == count
    assert ws.cli("check", "--models", ws.write_models("srv_v2", V2), env=env).returncode == 0


def test_mariadb_holder_killed_between_ddl_statements_is_restored_then_finished_by_the_next(
    ws, mysql_url
):
    my = Server("mysql", mysql_url, "DATABASE()", "", "")
    env = seed(ws, my)
    run_sql(
        mysql_url,
        "INSERT INTO tasks (id, project_id, title, estimate)"
        " SELECT seq, 1, CONCAT('bulk ', seq), CAST(seq %% 100 AS CHAR)"
        " FROM seq_10_to_300000",
    )
    count = run_sql(mysql_url, "SELECT count(*) FROM tasks")
    slow = {**env, "MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": "0"}
    victim = ws.popen("--models", ws.write_models("srv_v2", V2), env=slow)
    deadline = time.monotonic() + 60
    # MariaDB has committed the earlier statements once it copies tasks for the type change.
    while not run_sql(
        mysql_url,
        "SELECT 1 FROM information_schema.PROCESSLIST WHERE INFO LIKE 'ALTER TABLE tasks MODIFY%%'",
    ):
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the migration never reached its ALTER TABLE"
        time.sleep(0.01)
    victim.kill()
    victim.wait()
    finished = ws.cli("--models", ws.write_models("srv_v2", V2), env=slow)
    assert finished.returncode == 0, finished.output
    assert "died part-way; restoring" in finished.stderr
    assert run_sql(mysql_url, "SELECT count(*) FROM tasks") == count
    outcomes = [e["outcome"] for e in ws.cli("history", "--json", env=env).json()]
    assert outcomes[:2] == ["applied", "interrupted_restored"], outcomes
    assert ws.cli("check", "--models", ws.write_models("srv_v2", V2), env=env).returncode == 0


def test_racers_on_a_matching_database_without_a_verified_state_all_start(ws, db):
    """A database that already matches (made by hand, or by an older tool): every racer
    records or finds the verified state; none fails on another's concurrent write."""
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url_text(db.url)}
    ref = ws.write_models("srv_v1", V1)
    assert ws.cli("--models", ref, env=env).returncode == 0
    run_sql(
        db.url, "DROP TABLE orchestrator_migrate_state", "DELETE FROM orchestrator_migrate_history"
    )
    results = race(ws, env, ref)
    assert [code for code, _ in results] == [0] * 8, results
    assert all("Database schema is up to date" in err for _, err in results)
    outcomes = {r[0] for r in run_sql(db.url, "SELECT outcome FROM orchestrator_migrate_history")}
    assert outcomes == {"adopted"}
