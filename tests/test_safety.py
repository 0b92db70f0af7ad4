"""Safety: failures roll back, refusals touch nothing, read-only commands write nothing,
timeouts interrupt, and backups are real, private and consistent. Real files, real CLI."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from model_snippets import PROJECTS, TASKS, models

TASKS_TITLE_NOT_NULL = """
sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100), nullable=False),
)
"""

TASKS_WITH_NOTES = """
sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100)),
    sa.Column("notes", sa.String(200)),
)
"""

SEED_TASKS = "INSERT INTO tasks (id, title) VALUES (1, 'write tests'), (2, 'fix'), (3, 'ship it');"

BACKUP_NAME = re.compile(r"^backup_(\d{8}_\d{6})_(\d{3})\.db$")


def tasks_with(*lines: str) -> str:
    """The tasks table (id, title) with more columns or table arguments."""
    more = "".join(f"    {line},\n" for line in lines)
    return TASKS.replace("sa.String(100)),\n", "sa.String(100)),\n" + more)


def ok(result: Any) -> Any:
    assert result.returncode == 0, result.output
    return result


def user_dump(ws: Any) -> list[str]:
    """The dump without the tool's own history/state tables."""
    return [line for line in ws.dump() if "orchestrator_migrate_" not in line]


def tables(ws: Any) -> set[str]:
    return {r[0] for r in ws.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}


def started(ws: Any, v1: str, seed: str) -> None:
    """A database created by the tool from v1, then given rows by hand."""
    ok(ws.cli("--models", ws.write_models("v1", v1)))
    ws.script(seed)


# --- a failure between two operations rolls everything back ---------------------------------

FAILING_V2 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
)
sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100), nullable=False),
    sa.Column("code", sa.String(10), nullable=False, server_default="x"),
    # It reads a column the plan adds, so no pre-check can count its rows up front (the
    # database checks it as it adds it): the rebuild's copy fails at run time.
    sa.CheckConstraint("length(code) > 3"),
)
"""


HAND_MADE_TASKS = "CREATE TABLE tasks (id INTEGER NOT NULL PRIMARY KEY, title VARCHAR(100));"


@pytest.mark.parametrize("origin", ["created_by_the_tool", "made_by_hand"])
def test_failure_after_the_first_operation_rolls_back_everything(ws, origin):
    if origin == "made_by_hand":  # no history yet: the failure record creates it
        ws.script(HAND_MADE_TASKS + SEED_TASKS)
    else:
        started(ws, models(TASKS), SEED_TASKS)
    # The new column's default 'x' is too short for the new CHECK, so the rebuild's copy fails.
    before = user_dump(ws)
    history_before = ws.history_rows() if "orchestrator_migrate_history" in tables(ws) else []

    run = ws.cli("--models", ws.write_models("v2", FAILING_V2))

    assert run.returncode == 5, run.output
    assert "rolled back" in run.stderr, run.output
    assert "CHECK constraint failed" in run.stderr, run.output
    assert user_dump(ws) == before
    assert "projects" not in tables(ws)
    assert not any(t.startswith("_om_new_") for t in tables(ws))
    history = ws.history_rows()
    assert history[: len(history_before)] == history_before
    assert [r[1] for r in history[len(history_before) :]] == ["failed_restored"]
    # The failure happened between operations: the new table came first, then the rebuild.
    [(operations,)] = ws.sql(
        "SELECT operations FROM orchestrator_migrate_history ORDER BY id DESC LIMIT 1"
    )
    assert [(op["kind"], op["table"]) for op in json.loads(operations)] == [
        ("add_table", "projects"),
        ("rebuild_table", "tasks"),
    ]


# --- refused changes touch nothing ----------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    v1: str
    v2: str
    seed: str
    message: tuple[str, ...]
    fix: str
    applied: tuple[str, list[tuple[Any, ...]]]


REFUSALS = {
    "not_null_column_without_default_on_rows": Refusal(
        v1=models(TASKS),
        v2=models(tasks_with('sa.Column("rank", sa.Integer, nullable=False)')),
        seed=SEED_TASKS,
        message=("tasks.rank", "3 rows"),
        fix="DELETE FROM tasks;",
        applied=("SELECT \"notnull\" FROM pragma_table_info('tasks') WHERE name = 'rank'", [(1,)]),
    ),
    "set_not_null_over_nulls": Refusal(
        v1=models(TASKS),
        v2=models(TASKS_TITLE_NOT_NULL),
        seed="INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, NULL), (3, 'c'), (4, NULL);",
        message=("tasks.title", "2 rows hold NULL"),
        fix="UPDATE tasks SET title = 'filled' WHERE title IS NULL;",
        applied=("SELECT \"notnull\" FROM pragma_table_info('tasks') WHERE name = 'title'", [(1,)]),
    ),
    "unique_constraint_over_duplicates": Refusal(
        v1=models(TASKS),
        v2=models(tasks_with('sa.UniqueConstraint("title", name="uq_t")')),
        seed="INSERT INTO tasks (id, title) VALUES (1, 'same'), (2, 'same'), (3, 'other');",
        message=("tasks", "title", "unique", "'same'"),
        fix="DELETE FROM tasks WHERE id = 2;",
        applied=(
            "SELECT count(*) FROM pragma_index_list('tasks') WHERE \"unique\" = 1 AND origin = 'u'",
            [(1,)],
        ),
    ),
    "unique_index_over_duplicates": Refusal(
        v1=models(TASKS),
        v2=models(tasks_with('sa.Index("ux_tasks_title", "title", unique=True)')),
        seed="INSERT INTO tasks (id, title) VALUES (1, 'same'), (2, 'same'), (3, 'other');",
        message=("tasks", "title", "unique"),
        fix="UPDATE tasks SET title = 'renamed' WHERE id = 2;",
        applied=(
            "SELECT name FROM sqlite_master WHERE name = 'ux_tasks_title'",
            [("ux_tasks_title",)],
        ),
    ),
    "foreign_key_with_orphans": Refusal(
        v1=models(
            PROJECTS,
            tasks_with('sa.Column("project_id", sa.Integer)'),
        ),
        v2=models(
            PROJECTS,
            tasks_with('sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"))'),
        ),
        seed="""
            INSERT INTO projects (id, name) VALUES (1, 'alpha');
            INSERT INTO tasks (id, title, project_id)
                VALUES (1, 'a', 1), (2, 'b', 99), (3, 'c', NULL);
        """,
        message=("tasks", "projects", "1 rows"),
        fix="INSERT INTO projects (id, name) VALUES (99, 'found');",
        applied=(
            'SELECT "table", "from", "to" FROM pragma_foreign_key_list(\'tasks\')',
            [("projects", "project_id", "id")],
        ),
    ),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=list(REFUSALS))
def test_refused_change_touches_nothing_and_succeeds_once_the_data_is_fixed(ws, case: Refusal):
    started(ws, case.v1, case.seed)
    before = ws.dump()
    v2 = ws.write_models("v2", case.v2)

    refused = ws.cli("--json", "--models", v2)

    assert refused.returncode == 4, refused.output
    error = refused.json()
    assert error["success"] is False and error["exit_code"] == 4, error
    for part in case.message:
        assert part in error["error_message"], error["error_message"]
    assert "nothing changed" in refused.stderr, refused.output
    assert ws.dump() == before  # history and state included: nothing at all was written
    assert ws.backups() == []
    assert not ws.backup_dir.exists()

    ws.script(case.fix)
    fixed = ok(ws.cli("--models", v2))
    assert "Database migration completed" in fixed.stderr, fixed.output
    query, expected = case.applied
    assert ws.sql(query) == expected


# --- plan, plan --sql, check and --dry-run write nothing ------------------------------------

READ_ONLY = {
    # args, exit code, what the output shows about the pending change (the new table)
    "plan": (("plan",), 0, "create table {table}"),
    "plan_sql": (("plan", "--sql"), 0, "CREATE TABLE {table}"),
    "check": (("check",), 1, "create table {table}"),
    "dry_run": (("--dry-run",), 0, "not applied (dry run)"),
}


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under directory with its bytes and mtime."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(("args", "code", "shows"), READ_ONLY.values(), ids=list(READ_ONLY))
def test_read_only_command_creates_no_database_when_none_exists(ws, args, code, shows):
    ref = ws.write_models("v1", models(TASKS))
    result = ws.cli(*args, "--models", ref)
    assert result.returncode == code, result.output
    assert shows.format(table="tasks") in result.output, result.output
    assert not ws.db_path.exists()
    assert not ws.db_path.parent.exists()
    assert not ws.backup_dir.exists()


def test_read_only_commands_leave_an_existing_database_byte_for_byte(ws):
    started(ws, models(TASKS), SEED_TASKS)
    v2 = ws.write_models("v2", models(TASKS_TITLE_NOT_NULL, PROJECTS))
    before = snapshot(ws.db_path.parent)
    assert str(ws.db_path.name) in before

    for args, code, shows in READ_ONLY.values():
        result = ws.cli(*args, "--models", v2)
        assert result.returncode == code, (args, result.output)
        assert shows.format(table="projects") in result.output, (args, result.output)
        assert snapshot(ws.db_path.parent) == before, args
        assert not ws.backup_dir.exists(), args


# --- JSON output ----------------------------------------------------------------------------

RESULT_KEYS = {
    "outcome",
    "success",
    "exit_code",
    "migration_needed",
    "operations_executed",
    "execution_time_ms",
    "backup_created",
    "backup_info",
    "error_message",
    "warnings",
    "history_id",
    "plan",
}
OPERATION_KEYS = {"kind", "table", "description", "sql", "reversible", "destructive", "changes"}
CHANGE_KEYS = {"kind", "table", "column", "name", "description", "destructive"}
HISTORY_KEYS = {
    "id",
    "started_at",
    "finished_at",
    "outcome",
    "operations",
    "sql",
    "models_fingerprint",
    "fingerprint_before",
    "fingerprint_after",
    "backup_id",
    "duration_ms",
    "host",
    "pid",
    "version",
    "error",
    "estimate_ms",
    "objects",
}


def test_json_output_of_run_check_plan_and_history(ws):
    v1 = ws.write_models("v1", models(TASKS))
    run = ok(ws.cli("run", "--json", "--models", v1)).json()
    assert set(run) >= RESULT_KEYS, run
    assert run["outcome"] == "applied" and run["success"] is True and run["exit_code"] == 0
    assert run["operations_executed"] == len(run["plan"]["operations"]) >= 1
    assert isinstance(run["history_id"], int)
    ws.script(SEED_TASKS)

    up = ws.cli("check", "--json", "--models", v1)
    assert up.returncode == 0, up.output
    assert up.json()["outcome"] == "up_to_date"
    assert up.json()["migration_needed"] is False

    v2 = ws.write_models("v2", models(TASKS_WITH_NOTES, PROJECTS))
    plan = ok(ws.cli("plan", "--json", "--models", v2)).json()
    assert {"operations", "retained"} <= set(plan), plan
    assert plan["operations"], plan
    for op in plan["operations"]:
        assert set(op) >= OPERATION_KEYS, op
        assert op["sql"] and all(isinstance(s, str) for s in op["sql"])
        for change in op["changes"]:
            assert set(change) >= CHANGE_KEYS, change
    kinds = {c["kind"] for op in plan["operations"] for c in op["changes"]}
    assert kinds == {"add_table", "add_column"}

    needed = ws.cli("--json", "check", "--models", v2)
    assert needed.returncode == 1, needed.output
    assert set(needed.json()) >= RESULT_KEYS
    assert needed.json()["outcome"] == "planned"
    assert needed.json()["migration_needed"] is True

    history = ok(ws.cli("history", "--json")).json()
    assert isinstance(history, list) and len(history) == 1
    assert set(history[0]) >= HISTORY_KEYS, history[0]
    assert history[0]["outcome"] == "applied"
    assert history[0]["id"] == run["history_id"]


# --- the migration timeout -------------------------------------------------------------------


TABLE_SUMMARY = "SELECT count(*), sum(id), sum(length(title)) FROM tasks"
SCHEMA = "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'orchestrator_migrate_%'"

# A CHECK that costs ~0.5 ms per row (it builds a 200 kB string from each row): the rebuild
# that copies the rows into the new table takes seconds while the size-based estimate of a
# 10k-row copy stays far below the limit, so the limit must interrupt the apply itself.
SLOW_CHECK_V2 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100), nullable=False),
    sa.CheckConstraint("length(hex(zeroblob(100000 + length(title)))) > 0", name="ck_slow"),
)
"""


def _many_rows(ws: Any, count: int) -> tuple[Any, Any]:
    ok(ws.cli("--models", ws.write_models("v1", models(TASKS))))
    ws.script(
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})"
        " INSERT INTO tasks (id, title) SELECT i, 'task number ' || i FROM n;"
    )
    before = (ws.sql(TABLE_SUMMARY), ws.sql(SCHEMA))
    assert before[0][0][0] == count
    return before


def test_migration_timeout_interrupts_a_long_rebuild_and_rolls_back(ws):
    before = _many_rows(ws, 10_000)

    run = ws.cli(
        "--models",
        ws.write_models("v2", SLOW_CHECK_V2),
        env={"MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": "1000"},
    )

    assert run.returncode == 5, run.output
    assert "MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT" in run.stderr, run.output
    assert "interrupted" in run.stderr, run.output
    assert "rolled back" in run.stderr, run.output
    assert (ws.sql(TABLE_SUMMARY), ws.sql(SCHEMA)) == before
    assert [r[1] for r in ws.history_rows()] == ["applied", "failed_restored"]


def test_large_rebuild_over_a_1ms_timeout_changes_nothing_and_names_the_setting(ws):
    before = _many_rows(ws, 300_000)
    history_count = ws.sql("SELECT count(*) FROM orchestrator_migrate_history")

    # title becomes NOT NULL: a rebuild that copies 300k rows, far more than 1 ms of work.
    run = ws.cli(
        "--models",
        ws.write_models("v2", models(TASKS_TITLE_NOT_NULL)),
        env={"MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": "1"},
    )

    # Refused up front on its estimate (4, nothing written) or interrupted and rolled back (5).
    assert run.returncode in (4, 5), run.output
    assert "MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT" in run.stderr, run.output
    assert (ws.sql(TABLE_SUMMARY), ws.sql(SCHEMA)) == before
    if run.returncode == 4:
        assert "nothing changed" in run.stderr, run.output
        assert ws.backups() == []
        assert ws.sql("SELECT count(*) FROM orchestrator_migrate_history") == history_count
    else:
        assert "rolled back" in run.stderr, run.output
        assert ws.history_rows()[-1][1] == "failed_restored"


# --- backups ---------------------------------------------------------------------------------


def test_backup_is_a_private_timestamped_copy_of_the_rows_before_the_change(ws):
    started(ws, models(TASKS), SEED_TASKS)
    rows = ws.sql("SELECT * FROM tasks ORDER BY id")
    assert ws.backups() == []

    run = ok(ws.cli("--json", "--models", ws.write_models("v2", models(TASKS_WITH_NOTES))))

    [backup] = ws.backups()
    match = BACKUP_NAME.match(backup.name)
    assert match, backup.name
    taken = datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - taken) < timedelta(minutes=10)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    info = run.json()["backup_info"]
    assert Path(info["path"]) == backup
    assert info["id"] == backup.name.removesuffix(".db")
    assert ws.history_rows()[-1][2] == info["id"]
    assert not [p for p in ws.backup_dir.iterdir() if p.name.endswith(".tmp")]

    copy = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("SELECT * FROM tasks ORDER BY id").fetchall() == rows
        columns = [r[1] for r in copy.execute("PRAGMA table_info(tasks)")]
        assert columns == ["id", "title"]  # the schema before the migration
    finally:
        copy.close()
    assert [r[1] for r in ws.sql("PRAGMA table_info(tasks)")] == ["id", "title", "notes"]


def test_backup_of_a_wal_database_holds_rows_still_in_the_wal_of_an_open_connection(ws):
    ok(ws.cli("--models", ws.write_models("v1", models(TASKS))))
    writer = sqlite3.connect(ws.db_path, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("BEGIN")
        writer.executemany(
            "INSERT INTO tasks (id, title) VALUES (?, ?)", [(i, f"row {i}") for i in range(1, 501)]
        )
        writer.execute("COMMIT")
        wal = ws.db_path.with_name(ws.db_path.name + "-wal")
        assert wal.stat().st_size > 0  # the rows are in the WAL, not yet in the main file
        rows = writer.execute("SELECT * FROM tasks ORDER BY id").fetchall()

        run = ws.cli("--models", ws.write_models("v2", models(TASKS_WITH_NOTES)))  # writer open
        assert run.returncode == 0, run.output

        [backup] = ws.backups()
        copy = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
        try:
            assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert copy.execute("SELECT * FROM tasks ORDER BY id").fetchall() == rows
        finally:
            copy.close()
        assert writer.execute("SELECT id, title FROM tasks ORDER BY id").fetchall() == rows
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        writer.close()


def test_unwritable_backup_dir_refuses_the_migration_and_changes_nothing(ws):
    started(ws, models(TASKS), SEED_TASKS)
    blocker = ws.root / "blocker.txt"
    blocker.write_text("a regular file: nothing can be created under it, even by root\n")
    backup_dir = blocker / "backups"
    before = ws.dump()

    run = ws.cli(
        "--models",
        ws.write_models("v2", models(TASKS_WITH_NOTES)),
        env={"MCP_TASK_ORCHESTRATOR_BACKUP_DIR": str(backup_dir)},
    )

    assert run.returncode == 4, run.output
    assert "backup" in run.stderr and str(backup_dir) in run.stderr, run.output
    assert "nothing changed" in run.stderr, run.output
    assert ws.dump() == before
    assert blocker.is_file()
    assert ws.backups() == []
