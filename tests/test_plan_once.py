"""The plan made before the lock is used under it only while the schema has not moved: a
schema changed by another hand while a run waited for the lock is planned again."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.test_status_health import HOLD, V1

# Additive only (no row counted in its plan): a new table and a column with a server default.
V2 = (
    V1
    + """
tasks.append_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
labels = sa.Table(
    "labels", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id")),
)
"""
)


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"{text!r} not seen in:\n{seen}")


def _start_holding(ws, url: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True, env=ws.env()
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_schema_changed_while_waiting_for_the_lock_is_planned_again(ws, any_db):
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": any_db.url, "MCP_TASK_ORCHESTRATOR_LOG_LEVEL": "DEBUG"}
    assert ws.cli("--models", ws.write_models("v1", V1), env=env).returncode == 0
    holder = _start_holding(ws, any_db.url)
    waiting = ws.popen("--models", ws.write_models("v2", V2), "run", env=env)
    try:
        _wait_for(waiting, "Waiting for migration lock")
        # Another hand creates one of the tables the waiting run planned to create.
        any_db.sql("CREATE TABLE labels (id INTEGER NOT NULL PRIMARY KEY, task_id INTEGER)")
    finally:
        holder.kill()
        holder.wait()
    _, err = waiting.communicate(timeout=120)

    assert waiting.returncode == 0, err
    assert "its plan stands" not in err  # planned again: labels was there by then
    assert "priority" in any_db.columns("tasks")
    check = ws.cli("--models", "v2:md", "check", env=env)
    assert check.returncode in (0, 1), check.output  # the hand-made labels lacks its FK


def test_an_unchanged_schema_keeps_the_plan_made_before_the_lock(ws, any_db):
    env = {
        "MCP_TASK_ORCHESTRATOR_DB_URL": any_db.url,
        "MCP_TASK_ORCHESTRATOR_LOG_LEVEL": "DEBUG",
    }
    assert ws.cli("--models", ws.write_models("v1", V1), env=env).returncode == 0

    done = ws.cli("--models", ws.write_models("v2", V2), "run", env=env)

    assert done.returncode == 0, done.output
    assert "its plan stands" in done.stderr
    assert ws.cli("--models", "v2:md", "check", env=env).returncode == 0
