"""Many processes, one migrator: real processes racing for the real file lock."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator_migrate.backends.lock import FileMigrationLock

RACERS = 16
RACER = str(Path(__file__).with_name("racer.py"))

MODELS_V1 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("items", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("qty", sa.Integer))
sa.Table("owners", md, sa.Column("id", sa.Integer, primary_key=True))
"""

# v2 needs a table rebuild (a type change and a new unique constraint) plus a new table.
MODELS_V2 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("items", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("qty", sa.Float),
    sa.Column("note", sa.String(20), server_default="n/a", nullable=False),
    sa.UniqueConstraint("id", "name", name="uq_items_id_name"))
sa.Table("owners", md, sa.Column("id", sa.Integer, primary_key=True))
sa.Table("labels", md, sa.Column("id", sa.Integer, primary_key=True))
"""


def fill(ws, rows: int) -> None:
    ws.script(
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < "
        f"{rows}) INSERT INTO items (id, name, qty) SELECT i, 'item' || i, i FROM r;"
    )


def race(ws, args: list[str], env: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """Start RACERS processes that all begin at the same moment; returns (code, stderr)."""
    go = ws.root / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, RACER, str(go), *args],
            cwd=ws.root,
            env=ws.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    time.sleep(3)  # let every racer finish importing and wait on the start file
    go.touch()
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        results.append((proc.returncode, err))
    return results


def test_racers_on_an_empty_database_create_the_schema_once(ws):
    ref = ws.write_models("v1", MODELS_V1)
    results = race(ws, ["--models", ref])
    assert [code for code, _ in results] == [0] * RACERS, results
    assert len(ws.history_rows()) == 1
    assert len(ws.backups()) <= 1
    tables = {r[0] for r in ws.sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"items", "owners"} <= tables
    completed = [err for _, err in results if "Database migration completed" in err]
    assert len(completed) == 1


def test_racers_on_a_database_that_needs_a_migration_migrate_once_and_keep_the_data(ws):
    assert ws.cli("--models", ws.write_models("v1", MODELS_V1)).returncode == 0
    fill(ws, 2000)
    results = race(ws, ["--models", ws.write_models("v2", MODELS_V2)])
    assert [code for code, _ in results] == [0] * RACERS, results
    assert [r[1] for r in ws.history_rows()] == ["applied", "applied"]
    assert len(ws.backups()) == 1
    assert ws.sql("SELECT count(*), sum(qty), min(note) FROM items") == [(2000, 2001000.0, "n/a")]
    assert ws.sql("PRAGMA integrity_check") == [("ok",)]


def test_racers_on_an_up_to_date_database_never_take_the_lock(ws):
    ref = ws.write_models("v1", MODELS_V1)
    assert ws.cli("--models", ref).returncode == 0
    # Hold the real lock for the whole race: a racer that tried to take it would exit 3.
    lock = FileMigrationLock(ws.db_path.with_name(ws.db_path.name + ".lock"), timeout_s=5)
    lock.acquire()
    try:
        env = {
            "MCP_TASK_ORCHESTRATOR_LOCK_TIMEOUT": "0",
            "MCP_TASK_ORCHESTRATOR_LOG_LEVEL": "DEBUG",
        }
        results = race(ws, ["--models", ref], env)
    finally:
        lock.release()
    assert [code for code, _ in results] == [0] * RACERS, results
    assert all("Database schema is up to date" in err for _, err in results)
    assert not any("Acquired migration lock" in err for _, err in results)
    assert len(ws.history_rows()) == 1


def hold_lock_in_subprocess(ws) -> subprocess.Popen[str]:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from orchestrator_migrate.backends.lock import FileMigrationLock\n"
        "lock = FileMigrationLock(Path(sys.argv[1]), timeout_s=5)\n"
        "lock.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    lock_path = ws.db_path.with_name(ws.db_path.name + ".lock")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(lock_path)],
        env=ws.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_held_past_the_timeout_exits_3_naming_the_holder(ws):
    assert ws.cli("--models", ws.write_models("v1", MODELS_V1)).returncode == 0
    v2 = ws.write_models("v2", MODELS_V2)
    holder = hold_lock_in_subprocess(ws)
    try:
        before = ws.dump()
        result = ws.cli("--models", v2, env={"MCP_TASK_ORCHESTRATOR_LOCK_TIMEOUT": "700"})
        locks = ws.cli("locks", "--json")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 3, result.output
    assert f"pid {holder.pid}" in result.stderr
    assert socket.gethostname() in result.stderr
    assert "Waiting for migration lock" in result.stderr
    assert ws.dump() == before
    assert locks.json()["held"] is True
    assert locks.json()["holder"]["pid"] == holder.pid
    # The holder died: the OS released its lock, and the stale lease does not block anyone.
    assert ws.cli("locks", "--json").json()["held"] is False
    assert ws.cli("--models", v2).returncode == 0


def test_holder_killed_mid_migration_leaves_the_lock_free_and_the_next_process_finishes(ws):
    assert ws.cli("--models", ws.write_models("v1", MODELS_V1)).returncode == 0
    fill(ws, 300_000)
    v2 = ws.write_models("v2", MODELS_V2)
    env = {"MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": "0", "MCP_TASK_ORCHESTRATOR_BACKUP": "false"}
    victim = ws.popen("--models", v2, env=env)
    journal = ws.db_path.with_name(ws.db_path.name + "-journal")
    deadline = time.monotonic() + 60
    # The rebuild is under way once the rollback journal holds the copied pages.
    while not (journal.exists() and journal.stat().st_size > 64 * 1024):
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the migration never started writing"
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    # The killed run never committed: the old schema is intact, every row is there.
    conn = sqlite3.connect(ws.db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (300_000,)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "labels" not in tables
    assert not any(t.startswith("_om_new_") for t in tables)
    finished = ws.cli("--models", v2, env={"MCP_TASK_ORCHESTRATOR_LOCK_TIMEOUT": "2000", **env})
    assert finished.returncode == 0, finished.output
    assert ws.sql("SELECT count(*), min(note) FROM items") == [(300_000, "n/a")]
    assert ws.sql("PRAGMA integrity_check") == [("ok",)]
    assert ws.cli("check", "--models", v2).returncode == 0


@pytest.mark.parametrize("held", [False, True])
def test_locks_command_reports_the_holder(ws, held):
    ws.write_models("v1", MODELS_V1)
    ws.db_path.parent.mkdir(parents=True, exist_ok=True)
    holder = hold_lock_in_subprocess(ws) if held else None
    try:
        text = ws.cli("locks")
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    assert text.returncode == 0, text.output
    if holder is not None:
        assert f"held by host {socket.gethostname()} pid {holder.pid}" in text.stdout
    else:
        assert "is free" in text.stdout
