"""The example task server, run uninstalled from examples/task_server: v1, then v2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PREFIX = "MCP_TASK_ORCHESTRATOR_"
EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "examples" / "task_server"
V1 = "task_server.models:Base"
V2 = "task_server.models_v2:Base"


def example_env(ws, models: str, version: str) -> dict[str, str]:
    """Env for a subprocess; MODELS is named because uninstalled, the entry point is missing."""
    pythonpath = os.pathsep.join([str(EXAMPLE_DIR), str(ws.models_dir)])
    return {"PYTHONPATH": pythonpath, PREFIX + "MODELS": models, "TASK_SERVER_MODELS": version}


def server(ws, version: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m task_server.server ARGS` in the workspace."""
    models = V2 if version == "v2" else V1
    return subprocess.run(
        [sys.executable, "-m", "task_server.server", *args],
        cwd=ws.root,
        env=ws.env(example_env(ws, models, version)),
        capture_output=True,
        text=True,
        timeout=120,
    )


def column_types(ws, table: str) -> dict[str, str]:
    return {row[1]: row[2] for row in ws.sql(f"PRAGMA table_info({table})")}


def test_v1_rows_survive_the_migration_to_v2(ws):
    first = server(ws, "v1", "--add-task", "a")
    assert first.returncode == 0, first.stderr
    listed = server(ws, "v1", "--list")
    assert listed.returncode == 0, listed.stderr
    assert "\ta" in listed.stdout
    ws.sql("UPDATE tasks SET estimate = 5 WHERE title = 'a'")
    assert column_types(ws, "tasks")["estimate"] == "INTEGER"

    v1_env = example_env(ws, V1, "v1")
    check_v1 = ws.cli("check", env=v1_env)
    assert check_v1.returncode == 0, check_v1.output
    plan = ws.cli("plan", "--models", V2, env=v1_env)
    assert plan.returncode == 0, plan.output
    assert "create table tags" in plan.stdout
    assert "rebuild table tasks" in plan.stdout
    assert "change type of tasks.estimate from INTEGER to FLOAT" in plan.stdout
    assert ws.sql("SELECT name FROM sqlite_master WHERE name = 'tags'") == []  # plan wrote nothing

    second = server(ws, "v2", "--add-task", "b", "--list")
    assert second.returncode == 0, second.stderr
    assert "a priority=3" in second.stdout
    assert "b priority=3" in second.stdout

    v2_env = example_env(ws, V2, "v2")
    check_v2 = ws.cli("check", env=v2_env)
    assert check_v2.returncode == 0, check_v2.output
    assert "up to date" in check_v2.stdout

    assert ws.sql("SELECT title, estimate, typeof(estimate), priority FROM tasks ORDER BY id") == [
        ("a", 5.0, "real", 3),
        ("b", None, "null", 3),
    ]
    assert ws.sql("SELECT name FROM projects") == [("inbox",)]
    types = column_types(ws, "tasks")
    assert types["estimate"] == "FLOAT"
    assert types["priority"] == "INTEGER"
    indexes = {r[0] for r in ws.sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_tasks_status", "ix_tasks_priority"} <= indexes
    assert [r[1] for r in ws.history_rows()] == ["applied", "applied"]
    assert len(ws.backups()) == 1  # taken before v2 changed a database holding rows

    history = ws.cli("history", env=v2_env)
    assert history.returncode == 0, history.output
    assert history.stdout.count(" applied ") == 2
