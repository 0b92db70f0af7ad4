"""Rolling out model changes while the previous release still runs: columns are retired, not
dropped; another application's objects are never ours; older models never migrate a newer
database back; renames and backfills keep the data; refusals and time limits change nothing.

Real SQLite files, the real CLI in subprocesses, and a real process running the old models.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

HEADER = """
import sqlalchemy as sa
md = sa.MetaData()
"""

SAFETY_CLASSES = {"safe", "data-dependent", "retiring", "destructive"}
AHEAD = "Database schema is ahead of these models"
HISTORY = "orchestrator_migrate_history"


def models(*tables: str) -> str:
    return HEADER + "".join(tables)


def table(name: str, *lines: str, info: str = "") -> str:
    """sa.Table(name, md, id primary key, *lines[, info=...])."""
    body = "".join(f"    {line},\n" for line in lines)
    extra = f"    info={info},\n" if info else ""
    return (
        f'\nsa.Table(\n    "{name}", md,\n'
        f'    sa.Column("id", sa.Integer, primary_key=True),\n{body}{extra})\n'
    )


TITLE = 'sa.Column("title", sa.String(100))'
TITLE_NOT_NULL = 'sa.Column("title", sa.String(100), nullable=False)'


def ok(result: Any) -> Any:
    assert result.returncode == 0, result.output
    return result


def columns(ws: Any, name: str) -> dict[str, tuple[str, int]]:
    """column name -> (declared type, notnull)."""
    return {r[1]: (r[2], r[3]) for r in ws.sql(f"PRAGMA table_info({name})")}


def names(ws: Any, type_: str) -> set[str]:
    return {r[0] for r in ws.sql("SELECT name FROM sqlite_master WHERE type = ?", (type_,))}


def fill(ws: Any, rows: int) -> None:
    """rows rows in tasks (id, title), in one statement."""
    ws.script(
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})"
        " INSERT INTO tasks (id, title) SELECT i, 'task number ' || i FROM n;"
    )


# --- 1. a column removed from the models is retired, not dropped ------------------------------

RETIRE_V1 = models(
    table("tasks", TITLE, 'sa.Column("legacy_code", sa.String(20), nullable=False)'),
)
RETIRE_V2 = models(table("tasks", TITLE))
RETIRE_SEED = """
INSERT INTO tasks (id, title, legacy_code) VALUES (1, 'a', 'L-1'), (2, 'b', 'L-2'), (3, 'c', 'L-3');
"""
KEPT_LINE = "kept (not in the models): column tasks.legacy_code (3 non-NULL values)"


def test_removed_not_null_column_is_retired_keeping_every_value_and_dropped_only_when_allowed(ws):
    ok(ws.cli("--models", ws.write_models("v1", RETIRE_V1)))
    ws.script(RETIRE_SEED)
    values = ws.sql("SELECT id, title, legacy_code FROM tasks ORDER BY id")
    v2 = ws.write_models("v2", RETIRE_V2)

    plan = ok(ws.cli("plan", "--json", "--models", v2)).json()
    assert plan["operations"], plan
    for op in plan["operations"]:
        assert op["safety"] in SAFETY_CLASSES, op
        for change in op["changes"]:
            assert change["safety"] in SAFETY_CLASSES, change
    retire = [
        (op["safety"], c["safety"])
        for op in plan["operations"]
        for c in op["changes"]
        if c["kind"] == "retire_column" and c["column"] == "legacy_code"
    ]
    assert retire == [("retiring", "retiring")], plan
    assert not any(op["destructive"] for op in plan["operations"]), plan
    [kept] = plan["retained"]
    assert (kept["table"], kept["column"], kept["safety"]) == ("tasks", "legacy_code", "retiring")
    assert kept["rows"] == 3 and kept["destructive"] is False, kept

    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        ws.sql("INSERT INTO tasks (id, title) VALUES (4, 'new code')")

    run = ok(ws.cli("--models", v2))
    assert "legacy_code" in run.stderr, run.output
    assert ws.sql("SELECT id, title, legacy_code FROM tasks ORDER BY id") == values
    assert columns(ws, "tasks")["legacy_code"] == ("VARCHAR(20)", 0)
    # The new release's INSERT, which does not know the column, now works.
    ws.sql("INSERT INTO tasks (id, title) VALUES (4, 'new code')")
    assert ws.sql("SELECT legacy_code FROM tasks WHERE id = 4") == [(None,)]
    backups, history = len(ws.backups()), ws.history_rows()
    assert backups == 1

    text = ok(ws.cli("plan", "--models", v2))
    assert KEPT_LINE in text.stdout, text.output
    check = ws.cli("check", "--models", v2)
    assert check.returncode == 0, check.output
    assert KEPT_LINE in check.stdout, check.output

    again = ok(ws.cli("--models", v2))
    assert "Backup created" not in again.stderr, again.output
    assert len(ws.backups()) == backups
    assert ws.history_rows() == history
    assert "legacy_code" in columns(ws, "tasks")

    dropped = ok(ws.cli("--allow-destructive", "--models", v2))
    assert "Database migration completed" in dropped.stderr, dropped.output
    assert set(columns(ws, "tasks")) == {"id", "title"}
    assert ws.sql("SELECT id, title FROM tasks ORDER BY id") == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, "new code"),
    ]
    assert len(ws.backups()) == backups + 1


# --- 2. only what the tool created is ever dropped ---------------------------------------------

FOREIGN_V1 = models(
    table("tasks", TITLE, 'sa.Column("done", sa.Boolean)', 'sa.Index("ix_tasks_title", "title")')
)
FOREIGN_V2 = models(table("tasks", TITLE, 'sa.Column("done", sa.Boolean)'))
FOREIGN_SEED = """
CREATE TABLE billing_ledger (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL);
INSERT INTO billing_ledger (id, amount) VALUES (1, 100), (2, 250);
CREATE INDEX dba_tasks_done_title ON tasks (done, title);
INSERT INTO tasks (id, title, done) VALUES (1, 'a', 0), (2, 'b', 1);
"""


def test_allow_destructive_keeps_another_applications_table_and_a_hand_made_index(ws):
    ok(ws.cli("--models", ws.write_models("v1", FOREIGN_V1)))
    ws.script(FOREIGN_SEED)
    ledger = ws.sql("SELECT * FROM billing_ledger ORDER BY id")
    hand_index = ws.sql("SELECT sql FROM sqlite_master WHERE name = 'dba_tasks_done_title'")
    tasks = ws.sql("SELECT * FROM tasks ORDER BY id")
    assert "ix_tasks_title" in names(ws, "index")

    run = ok(ws.cli("--allow-destructive", "--models", ws.write_models("v2", FOREIGN_V2)))

    assert "Database migration completed" in run.stderr, run.output
    assert ws.sql("SELECT * FROM billing_ledger ORDER BY id") == ledger
    assert ws.sql("SELECT sql FROM sqlite_master WHERE name = 'dba_tasks_done_title'") == (
        hand_index
    )
    assert "ix_tasks_title" not in names(ws, "index")  # the tool's own, gone from the models
    assert ws.sql("SELECT * FROM tasks ORDER BY id") == tasks


# --- 3. never backwards ----------------------------------------------------------------------

AHEAD_V1 = models(table("tasks", TITLE, 'sa.Column("code", sa.String(10))'))
AHEAD_V2 = models(
    table(
        "tasks",
        TITLE,
        'sa.Column("code", sa.Integer)',
        'sa.Column("notes", sa.String(200))',
    ),
    table("projects", 'sa.Column("name", sa.String(50))'),
)
AHEAD_SEED = "INSERT INTO tasks (id, title, code) VALUES (1, 'a', '42'), (2, 'b', '7');"


def _v1_then_v2(ws: Any) -> str:
    """v1 run and seeded, then v2 run; returns the v1 reference."""
    v1 = ws.write_models("v1", AHEAD_V1)
    ok(ws.cli("--models", v1))
    ws.script(AHEAD_SEED)
    ok(ws.cli("--models", ws.write_models("v2", AHEAD_V2)))
    assert columns(ws, "tasks")["code"] == ("INTEGER", 0)
    assert "projects" in names(ws, "table")
    return v1


def test_older_models_started_on_a_newer_database_change_nothing_and_say_it_is_ahead(ws):
    v1 = _v1_then_v2(ws)
    dump, backups, history = ws.dump(), ws.backups(), ws.history_rows()

    for args in ((), ("--allow-destructive",)):
        old = ws.cli(*args, "--models", v1)
        assert old.returncode == 0, old.output
        assert AHEAD in old.stderr, old.output
        assert ws.dump() == dump, args
        assert ws.backups() == backups, args
        assert ws.history_rows() == history, args

    check = ws.cli("check", "--models", v1)
    assert check.returncode == 0, check.output  # a readiness probe must not fail
    assert ws.dump() == dump

    back = ws.cli("--models", v1, env={"MCP_TASK_ORCHESTRATOR_ALLOW_DOWNGRADE": "true"})
    assert back.returncode == 0, back.output
    assert columns(ws, "tasks")["code"] == ("VARCHAR(10)", 0)
    assert [r[1] for r in ws.history_rows()] == [r[1] for r in history] + ["applied"]


def test_allow_downgrade_flag_migrates_older_models_back(ws):
    v1 = _v1_then_v2(ws)
    history = ws.history_rows()

    back = ws.cli("--allow-downgrade", "--models", v1)

    assert back.returncode == 0, back.output
    assert AHEAD not in back.stderr, back.output
    assert columns(ws, "tasks")["code"] == ("VARCHAR(10)", 0)
    assert ws.sql("SELECT id, title FROM tasks ORDER BY id") == [(1, "a"), (2, "b")]
    assert len(ws.history_rows()) == len(history) + 1


# --- 4. a rolling deploy: the old release keeps writing while the new one migrates ------------

ROLLING_V1 = models(
    table(
        "events",
        'sa.Column("kind", sa.String(20), nullable=False)',
        'sa.Column("legacy_ref", sa.String(40), nullable=False)',
        'sa.Column("payload", sa.String(100))',
    )
)
ROLLING_V2 = models(
    table(
        "events",
        'sa.Column("kind", sa.String(20), nullable=False)',
        'sa.Column("payload", sa.String(100))',
        # Not a text column: a text column added as another is removed reads as a rename.
        'sa.Column("priority", sa.Integer)',
    ),
    table("audit_log", 'sa.Column("message", sa.Text)'),
)
ROLLING_ROWS = 100_000
OLD_IDS_FROM = 1_000_000

# The previous release: its own INSERT and SELECT of the old columns, one transaction each.
OLD_RELEASE = """
import json, os, sqlite3, sys, time

db, stop, out, min_seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
conn = sqlite3.connect(db, timeout=30, isolation_level=None)
conn.execute("PRAGMA busy_timeout = 30000")
errors, written, mismatches = [], [], 0
started = time.time()
i = 0
while (time.time() - started < min_seconds or not os.path.exists(stop)) and (
    time.time() - started < 90
):
    i += 1
    row = (OLD_IDS_FROM + i, "old", f"ref-{i}", f"payload {i}")
    try:
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO events (id, kind, legacy_ref, payload) VALUES (?, ?, ?, ?)", row
        )
        conn.execute("COMMIT")
        written.append(list(row))
        conn.execute("BEGIN")
        got = conn.execute(
            "SELECT id, kind, legacy_ref, payload FROM events WHERE id = ?", (row[0],)
        ).fetchall()
        conn.execute("COMMIT")
        if got != [row]:
            mismatches += 1
    except sqlite3.Error as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    if i == 20:
        print("ready", flush=True)
    time.sleep(0.002)
finished = time.time()
with open(out, "w") as f:
    json.dump({"started": started, "finished": finished, "written": written,
               "errors": errors, "mismatches": mismatches}, f)
"""


def test_old_release_keeps_writing_and_reading_without_error_while_the_new_one_migrates(ws):
    ok(ws.cli("--models", ws.write_models("v1", ROLLING_V1)))
    ws.script(
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROLLING_ROWS})"
        " INSERT INTO events (id, kind, legacy_ref, payload)"
        " SELECT i, 'seed', 'ref-' || i, 'seeded ' || i FROM n;"
    )
    seeded = ws.sql("SELECT count(*), sum(id), sum(length(legacy_ref)) FROM events")
    v2 = ws.write_models("v2", ROLLING_V2)
    script = ws.root / "old_release.py"
    script.write_text(textwrap.dedent(OLD_RELEASE).replace("OLD_IDS_FROM", str(OLD_IDS_FROM)))
    stop, out = ws.root / "stop", ws.root / "old_release.json"

    old = subprocess.Popen(
        [sys.executable, str(script), str(ws.db_path), str(stop), str(out), "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert old.stdout is not None
        assert old.stdout.readline().strip() == "ready"
        migration_started = time.time()
        migrated = ws.cli("--models", v2)
        migration_finished = time.time()
        time.sleep(0.5)  # the old release writes after the migration too
        stop.touch()
        _, err = old.communicate(timeout=120)
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
    assert old.returncode == 0, err
    assert migrated.returncode == 0, migrated.output
    assert "Database migration completed" in migrated.stderr, migrated.output

    report = json.loads(out.read_text())
    assert report["errors"] == [], report["errors"][:5]
    assert report["mismatches"] == 0
    assert report["started"] < migration_started
    assert migration_finished < report["finished"]
    written = [tuple(r) for r in report["written"]]
    assert len(written) > 20
    assert (
        ws.sql(
            "SELECT id, kind, legacy_ref, payload FROM events WHERE id > ? ORDER BY id",
            (OLD_IDS_FROM,),
        )
        == written
    )
    assert (
        ws.sql(
            "SELECT count(*), sum(id), sum(length(legacy_ref)) FROM events WHERE id <= ?",
            (ROLLING_ROWS,),
        )
        == seeded
    )
    cols = columns(ws, "events")
    assert cols["legacy_ref"] == ("VARCHAR(40)", 0)  # retired: kept, no longer NOT NULL
    assert cols["priority"] == ("INTEGER", 0)
    assert "audit_log" in names(ws, "table")


# --- 5. renames ------------------------------------------------------------------------------

RENAME_V1 = models(table("tasks", TITLE, 'sa.Column("details", sa.String(200))'))
RENAME_UNHINTED = models(table("tasks", TITLE, 'sa.Column("description", sa.String(200))'))
RENAME_HINTED = models(
    table(
        "tasks",
        TITLE,
        'sa.Column("description", sa.String(200), info={"renamed_from": "details"})',
    )
)
RENAME_SEED = """
INSERT INTO tasks (id, title, details) VALUES (1, 'a', 'first'), (2, 'b', NULL), (3, 'c', 'third');
"""


def test_unhinted_drop_and_add_of_one_type_is_refused_and_renamed_from_keeps_every_value(ws):
    ok(ws.cli("--models", ws.write_models("v1", RENAME_V1)))
    ws.script(RENAME_SEED)
    values = ws.sql("SELECT id, title, details FROM tasks ORDER BY id")
    dump = ws.dump()

    refused = ws.cli("--models", ws.write_models("v2", RENAME_UNHINTED))
    assert refused.returncode == 4, refused.output
    assert "renamed_from" in refused.stderr, refused.output
    assert "tasks.details" in refused.stderr and "description" in refused.stderr, refused.output
    assert ws.dump() == dump
    assert ws.backups() == []

    ok(ws.cli("--models", ws.write_models("v3", RENAME_HINTED)))
    assert set(columns(ws, "tasks")) == {"id", "title", "description"}
    assert ws.sql("SELECT id, title, description FROM tasks ORDER BY id") == values


TABLE_RENAME_V1 = models(table("todo_items", TITLE, 'sa.Column("done", sa.Boolean)'))
TABLE_RENAME_V2 = models(
    table("tasks", TITLE, 'sa.Column("done", sa.Boolean)', info='{"renamed_from": "todo_items"}')
)


def test_table_renamed_from_an_old_name_keeps_its_rows(ws):
    ok(ws.cli("--models", ws.write_models("v1", TABLE_RENAME_V1)))
    ws.script(
        "INSERT INTO todo_items (id, title, done) VALUES (1, 'a', 0), (2, 'b', 1), (3, NULL, 0);"
    )
    rows = ws.sql("SELECT * FROM todo_items ORDER BY id")

    run = ok(ws.cli("--json", "--models", ws.write_models("v2", TABLE_RENAME_V2)))

    kinds = [c["kind"] for op in run.json()["plan"]["operations"] for c in op["changes"]]
    assert "rename_table" in kinds, kinds
    assert "todo_items" not in names(ws, "table")
    assert ws.sql("SELECT * FROM tasks ORDER BY id") == rows


# --- 6. backfill -----------------------------------------------------------------------------

BACKFILL_V1 = models(table("tasks", TITLE))
BACKFILL_SEED = "INSERT INTO tasks (id, title) VALUES (1, 'a'), (2, NULL), (3, 'c'), (4, NULL);"
BACKFILL_V2 = models(
    table(
        "tasks",
        """sa.Column("title", sa.String(100), nullable=False, info={"backfill": "'unknown'"})""",
    )
)


def test_backfill_fills_the_nulls_then_applies_not_null_and_without_it_is_refused(ws):
    ok(ws.cli("--models", ws.write_models("v1", BACKFILL_V1)))
    ws.script(BACKFILL_SEED)
    dump = ws.dump()

    refused = ws.cli("--models", ws.write_models("v2", models(table("tasks", TITLE_NOT_NULL))))
    assert refused.returncode == 4, refused.output
    assert "tasks.title" in refused.stderr and "2 rows" in refused.stderr, refused.output
    assert ws.dump() == dump

    ok(ws.cli("--models", ws.write_models("v3", BACKFILL_V2)))
    assert ws.sql("SELECT id, title FROM tasks ORDER BY id") == [
        (1, "a"),
        (2, "unknown"),
        (3, "c"),
        (4, "unknown"),
    ]
    assert columns(ws, "tasks")["title"] == ("VARCHAR(100)", 1)
    [(operations,)] = ws.sql(f"SELECT operations FROM {HISTORY} ORDER BY id DESC LIMIT 1")
    descriptions = " ".join(op["description"] for op in json.loads(operations))
    assert "backfill 2 rows of tasks.title" in descriptions, descriptions


# --- 7. the duplicate count in a UNIQUE refusal (the other refusals: test_safety.py) -----------

DUPLICATES_SEED = """
INSERT INTO tasks (id, title) VALUES
    (1, 'same'), (2, 'same'), (3, 'same'), (4, 'twin'), (5, 'twin'), (6, 'solo');
"""


@pytest.mark.parametrize(
    "unique",
    [
        'sa.UniqueConstraint("title", name="uq_tasks_title")',
        'sa.Index("ux_tasks_title", "title", unique=True)',
    ],
    ids=["constraint", "index"],
)
def test_unique_over_duplicates_is_refused_naming_how_many_rows_share_values(ws, unique):
    ok(ws.cli("--models", ws.write_models("v1", models(table("tasks", TITLE)))))
    ws.script(DUPLICATES_SEED)
    dump = ws.dump()

    refused = ws.cli("--models", ws.write_models("v2", models(table("tasks", TITLE, unique))))

    assert refused.returncode == 4, refused.output
    assert "2 values are shared by 5 rows" in refused.stderr, refused.output
    assert ws.dump() == dump


# --- 8. time limits --------------------------------------------------------------------------

SCHEMA = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
SUMMARY = "SELECT count(*), sum(id), sum(length(title)) FROM tasks"


def test_estimate_over_the_time_limit_refuses_before_any_backup(ws):
    ok(ws.cli("--models", ws.write_models("v1", models(table("tasks", TITLE)))))
    fill(ws, 300_000)
    before = ws.db_path.read_bytes()

    # title becomes NOT NULL: SQLite rebuilds the table, copying 300k rows.
    run = ws.cli(
        "--models",
        ws.write_models("v2", models(table("tasks", TITLE_NOT_NULL))),
        env={"MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": "50"},
    )

    assert run.returncode == 4, run.output
    assert "Estimated execution time (" in run.stderr, run.output
    assert "exceeds maximum allowed (0.05s)" in run.stderr, run.output
    assert ws.backups() == []
    assert not ws.backup_dir.exists()
    assert ws.db_path.read_bytes() == before  # not a byte written, history included


# Row-dependent so that SQLite evaluates it per row (a constant CHECK is computed once): each
# row costs a 200 kB hex string, which the estimate's sample (a plain copy) never sees. The
# apply would take many times the limit; the estimate stays a small fraction of it.
EXPENSIVE_CHECK = (
    'sa.CheckConstraint("length(hex(zeroblob(100000 + length(title)))) > 0", name="ck_costly")'
)
TIME_LIMIT_ROWS = 30_000  # above the estimate's calibration threshold: it samples a real copy
TIME_LIMIT_MS = 1500


def test_time_limit_interrupts_an_apply_slower_than_its_estimate_and_rolls_back(ws):
    ok(ws.cli("--models", ws.write_models("v1", models(table("tasks", TITLE)))))
    fill(ws, TIME_LIMIT_ROWS)
    before = (ws.sql(SCHEMA), ws.sql(SUMMARY))

    # The CHECK alone is not detected; NOT NULL on title makes the rebuild that adds it.
    v2 = ws.write_models("v2", models(table("tasks", TITLE_NOT_NULL, EXPENSIVE_CHECK)))
    run = ws.cli(
        "--models", v2, env={"MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": str(TIME_LIMIT_MS)}
    )

    assert run.returncode == 5, run.output
    assert "Estimated execution time" not in run.stderr, run.output
    assert "MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT" in run.stderr, run.output
    assert "rolled back" in run.stderr, run.output
    assert (ws.sql(SCHEMA), ws.sql(SUMMARY)) == before
    assert ws.history_rows()[-1][1] == "failed_restored"
