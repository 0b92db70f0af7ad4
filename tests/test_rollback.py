"""Rollback and restore on real SQLite files: by inverse SQL, from a backup, and the backups
commands, through the real CLI in a subprocess and through the seed's Python API.

Runs that only set a test up (v1, v2, ...) migrate in-process, as tests/test_cli.py does, to
keep the file fast; every rollback, restore and backups command under test is a real CLI run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator_migrate import AutoMigrationSystem, migrate
from orchestrator_migrate.api import rollback as api_rollback

PREFIX = "MCP_TASK_ORCHESTRATOR_"
REFUSED = 4
USAGE = 2

MODELS_V1 = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "projects",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)
sa.Table(
    "tasks",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100)),
    sa.Column("estimate", sa.Integer),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
)
"""

# v2: a new table, a column with a server default, an index, and a type change (INTEGER ->
# FLOAT) that forces a rebuild of tasks.
MODELS_V2 = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "projects",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)
tasks = sa.Table(
    "tasks",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100)),
    sa.Column("estimate", sa.Float),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
    sa.Column("status", sa.String(20), nullable=False, server_default="open"),
)
sa.Index("ix_tasks_title", tasks.c.title)
sa.Table(
    "labels",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id")),
    sa.Column("text", sa.String(50)),
)
"""

# v3 on top of v2: another table and a plain nullable column (no rebuild).
MODELS_V3 = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "projects",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)
tasks = sa.Table(
    "tasks",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100)),
    sa.Column("estimate", sa.Float),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
    sa.Column("status", sa.String(20), nullable=False, server_default="open"),
    sa.Column("due", sa.String(10), nullable=True),
)
sa.Index("ix_tasks_title", tasks.c.title)
sa.Table(
    "labels",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id")),
    sa.Column("text", sa.String(50)),
)
sa.Table(
    "comments",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.Text),
)
"""

# v1 without tasks.estimate: applied with --allow-destructive, the column's data then lives
# only in the backup.
MODELS_V2_DROP = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "projects",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)
sa.Table(
    "tasks",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100)),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
)
"""

SEED = """
INSERT INTO projects (id, name) VALUES (1, 'alpha'), (2, 'beta');
INSERT INTO tasks (id, title, estimate, project_id) VALUES (1, 'write spec', 3, 1);
INSERT INTO tasks (id, title, estimate, project_id) VALUES (2, 'review', 5, 2);
CREATE VIEW task_titles AS
    SELECT t.id, t.title, p.name AS project FROM tasks t JOIN projects p ON p.id = t.project_id;
CREATE TRIGGER tasks_untitled AFTER INSERT ON tasks WHEN NEW.title IS NULL
BEGIN
    UPDATE tasks SET title = 'untitled' WHERE id = NEW.id;
END;
INSERT INTO tasks (id, title, estimate, project_id) VALUES (3, NULL, 8, 1);
"""

_CREATE_TABLE = re.compile(r'^CREATE TABLE (?:IF NOT EXISTS )?(?:"((?:[^"]|"")+)"|([^\s(]+))')


# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs read the environment: keep the caller's settings out of them."""
    for key in list(os.environ):
        if key.startswith(PREFIX):
            monkeypatch.delenv(key)


def normalised(lines: list[str]) -> list[str]:
    """iterdump lines without ours, CREATE TABLE names unquoted, sorted: a rebuild changes the
    order of sqlite_master and the quoting of a table name, nothing else."""
    kept = []
    for line in lines:
        if "orchestrator_migrate_" in line:
            continue
        kept.append(
            _CREATE_TABLE.sub(lambda m: "CREATE TABLE " + (m.group(1) or m.group(2)), line, 1)
        )
    return sorted(kept)


def dump_of(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def copy_database(source: Path, destination: Path) -> None:
    """A consistent copy through sqlite's backup API (the WAL included)."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(destination)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def models(ws, module: str, source: str) -> tuple[str, Any]:
    """Write a models module for the CLI; return its reference and its MetaData."""
    ref = ws.write_models(module, source)
    namespace: dict[str, Any] = {}
    exec(compile(textwrap.dedent(source), f"<{module}>", "exec"), namespace)
    return ref, namespace["md"]


def migrate_to(ws, source: str, **overrides: Any) -> Any:
    """Set the database up at these models (not what a test is about)."""
    namespace: dict[str, Any] = {}
    exec(compile(textwrap.dedent(source), "<models>", "exec"), namespace)
    result = migrate(db_url=ws.url, base_dir=ws.root, metadata=namespace["md"], **overrides)
    assert result.success, result.error_message
    return result


def history(ws) -> list[tuple[Any, ...]]:
    """Every history row, every column, oldest first; outcome is column 3."""
    return ws.sql("SELECT * FROM orchestrator_migrate_history ORDER BY id")


def outcomes(ws) -> list[tuple[int, str]]:
    return [(row[0], row[3]) for row in history(ws)]


def with_outcome(row: tuple[Any, ...], outcome: str) -> tuple[Any, ...]:
    return (*row[:3], outcome, *row[4:])


def file_state(path: Path) -> tuple[str, int, int, int]:
    stat = path.stat()
    return (
        hashlib.sha256(path.read_bytes()).hexdigest(),
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ino,
    )


def backup_id(path: Path) -> str:
    return path.name.split(".", 1)[0]


def v1_with_data(ws) -> None:
    """v1 applied (on an empty database, so without a backup), then rows, a view, a trigger."""
    migrate_to(ws, MODELS_V1)
    ws.script(SEED)


def v1_then_v2(ws) -> tuple[list[str], Path]:
    """v1 with data, then v2; returns the dump before v2 and v2's backup."""
    v1_with_data(ws)
    before_v2 = ws.dump()
    result = migrate_to(ws, MODELS_V2)
    assert result.backup_info is not None
    assert ws.backups() == [result.backup_info.path]
    return before_v2, result.backup_info.path


# ---------------------------------------------------------------------------------------------
# 1. rollback by SQL


def test_rollback_by_sql_returns_schema_and_data_to_before_the_last_run(ws) -> None:
    before_v2, _ = v1_then_v2(ws)
    after_v2 = ws.dump()
    assert normalised(after_v2) != normalised(before_v2)
    rows_before = history(ws)
    assert [row[3] for row in rows_before] == ["applied", "applied"]

    r = ws.cli("rollback")

    assert r.returncode == 0, r.output
    assert normalised(ws.dump()) == normalised(before_v2)
    # the trigger still fires and the view still reads, on the table as it was
    ws.sql("INSERT INTO tasks (id, title, estimate, project_id) VALUES (4, NULL, 1, 2)")
    assert ws.sql("SELECT id, title, project FROM task_titles WHERE id = 4") == [
        (4, "untitled", "beta")
    ]
    rows = history(ws)
    assert rows[:2] == [rows_before[0], with_outcome(rows_before[1], "rolled_back")]
    assert [row[3] for row in rows[2:]] == ["rollback"]


def test_rollback_by_sql_keeps_rows_inserted_after_the_run_into_columns_it_did_not_add(
    ws, tmp_path: Path
) -> None:
    v1_with_data(ws)
    twin = tmp_path / "twin.db"  # the database as it would be had v2 never run
    copy_database(ws.db_path, twin)
    migrate_to(ws, MODELS_V2)
    new_rows = """
        INSERT INTO projects (id, name) VALUES (3, 'gamma');
        INSERT INTO tasks (id, title, estimate, project_id) VALUES (10, NULL, 2, 3);
        INSERT INTO tasks (id, title, estimate, project_id) VALUES (11, 'ship', NULL, 1);
        UPDATE tasks SET title = 'write the spec' WHERE id = 1;
        DELETE FROM tasks WHERE id = 2;
    """
    ws.script(new_rows)  # status takes its default: nothing the rollback would lose
    conn = sqlite3.connect(twin)
    try:
        conn.executescript(new_rows)
    finally:
        conn.close()

    r = ws.cli("rollback")

    assert r.returncode == 0, r.output
    assert normalised(ws.dump()) == normalised(dump_of(twin))
    assert ws.sql("SELECT id, title, estimate FROM tasks WHERE id IN (10, 11) ORDER BY id") == [
        (10, "untitled", 2),
        (11, "ship", None),
    ]


def test_after_rollback_by_sql_old_models_are_up_to_date_and_new_models_migrate_forward(
    ws,
) -> None:
    v1_ref, _ = models(ws, "models_v1", MODELS_V1)
    v2_ref, _ = models(ws, "models_v2", MODELS_V2)
    v1_then_v2(ws)
    after_v2 = normalised(ws.dump())
    # the rollback itself is shown above; here it only sets the scene, in-process
    assert api_rollback(db_url=ws.url, base_dir=ws.root).success

    up_to_date = ws.cli("check", "--models", v1_ref)
    assert up_to_date.returncode == 0, up_to_date.output
    assert "up to date" in up_to_date.stdout

    forward = ws.cli("run", "--models", v2_ref)
    assert forward.returncode == 0, forward.output
    assert normalised(ws.dump()) == after_v2
    assert [outcome for _, outcome in outcomes(ws)] == [
        "applied",
        "rolled_back",
        "rollback",
        "applied",
    ]


# ---------------------------------------------------------------------------------------------
# 2. rollback by SQL refused


def _dropped_a_column(ws) -> None:
    v1_with_data(ws)
    migrate_to(ws, MODELS_V2_DROP, allow_destructive=True)
    (backup,) = ws.backups()
    assert "estimate" not in {row[1] for row in ws.sql("PRAGMA table_info(tasks)")}
    assert rows_in_file(backup, "SELECT id, estimate FROM tasks ORDER BY id") == [
        (1, 3),
        (2, 5),
        (3, 8),
    ]


def _created_table_holds_rows(ws) -> None:
    v1_then_v2(ws)
    ws.sql("INSERT INTO labels (id, task_id, text) VALUES (1, 1, 'urgent')")


def _added_column_holds_other_values(ws) -> None:
    v1_then_v2(ws)
    ws.sql("UPDATE tasks SET status = 'done' WHERE id = 2")


def rows_in_file(path: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "situation",
    [_dropped_a_column, _created_table_holds_rows, _added_column_holds_other_values],
    ids=["run-dropped-a-column", "created-table-holds-rows", "added-column-holds-values"],
)
def test_rollback_by_sql_is_refused_when_it_would_lose_data(ws, situation) -> None:
    situation(ws)
    before = ws.dump()
    backups_before = {p: file_state(p) for p in ws.backups()}

    r = ws.cli("rollback")

    assert r.returncode == REFUSED, r.output
    assert "--use-backup" in r.stderr
    assert ws.dump() == before
    assert {p: file_state(p) for p in ws.backups()} == backups_before


# ---------------------------------------------------------------------------------------------
# 3. rollback from a backup


def test_rollback_use_backup_restores_the_backup_taken_before_the_last_run(ws) -> None:
    before_v2, v2_backup = v1_then_v2(ws)
    at_v2 = ws.dump()
    rows_before = history(ws)
    old_backup = file_state(v2_backup)

    r = ws.cli("rollback", "--use-backup")

    assert r.returncode == 0, r.output
    assert normalised(ws.dump()) == normalised(before_v2)
    assert file_state(v2_backup) == old_backup  # the old backup is untouched
    (safety,) = [p for p in ws.backups() if p != v2_backup]  # the current database, backed up
    assert normalised(dump_of(safety)) == normalised(at_v2)
    rows = history(ws)
    assert rows[:2] == [rows_before[0], with_outcome(rows_before[1], "rolled_back")]
    assert [(row[3], row[9]) for row in rows[2:]] == [("restored", backup_id(safety))]


@pytest.mark.parametrize("use_backup", [True, False], ids=["use-backup", "by-sql"])
def test_rollback_to_an_id_undoes_every_applied_run_after_it(
    ws, tmp_path: Path, use_backup: bool
) -> None:
    v1_with_data(ws)
    (v1_id,) = [row[0] for row in history(ws)]
    twin = tmp_path / "twin.db"  # the database at v1
    copy_database(ws.db_path, twin)
    migrate_to(ws, MODELS_V2)
    later_row = "INSERT INTO tasks (id, title, estimate, project_id) VALUES (7, 'later', 1, 2)"
    ws.sql(later_row)
    migrate_to(ws, MODELS_V3)
    assert [outcome for _, outcome in outcomes(ws)] == ["applied", "applied", "applied"]
    if not use_backup:  # inverse SQL keeps the row; the backup taken before v2 does not hold it
        conn = sqlite3.connect(twin)
        try:
            conn.execute(later_row)
            conn.commit()
        finally:
            conn.close()

    args = ["rollback", "--to", str(v1_id)] + (["--use-backup"] if use_backup else [])
    r = ws.cli(*args)

    assert r.returncode == 0, r.output
    assert normalised(ws.dump()) == normalised(dump_of(twin))
    last = "restored" if use_backup else "rollback"
    assert [outcome for _, outcome in outcomes(ws)] == [
        "applied",
        "rolled_back",
        "rolled_back",
        last,
    ]


# ---------------------------------------------------------------------------------------------
# 4. the backups command


def _two_backups(ws) -> list[Path]:
    v1_then_v2(ws)
    migrate_to(ws, MODELS_V3)
    found = ws.backups()
    assert len(found) == 2
    return found


def test_backups_list_shows_each_backup_with_its_id_path_and_size(ws) -> None:
    found = _two_backups(ws)

    text = ws.cli("backups", "list")
    as_json = ws.cli("backups", "list", "--json")

    assert text.returncode == 0, text.output
    for path in found:
        (line,) = [line for line in text.stdout.splitlines() if backup_id(path) in line]
        assert str(path) in line
        assert f"{path.stat().st_size} bytes" in line
    assert as_json.returncode == 0, as_json.output
    listed = sorted((b["id"], b["path"], b["size_bytes"]) for b in as_json.json())
    assert listed == sorted((backup_id(p), str(p), p.stat().st_size) for p in found)


def test_backups_prune_removes_only_backups_older_than_the_retention(ws) -> None:
    old, recent = _two_backups(ws)
    now = time.time()
    os.utime(old, (now - 10 * 86400, now - 10 * 86400))
    os.utime(recent, (now - 5 * 86400, now - 5 * 86400))
    recent_state = file_state(recent)

    r = ws.cli("backups", "prune", env={PREFIX + "BACKUP_RETENTION_DAYS": "7"})

    assert r.returncode == 0, r.output
    assert "Removed 1 backups older than 7 days" in r.stdout
    assert ws.backups() == [recent]
    assert file_state(recent) == recent_state


def test_backups_restore_puts_the_named_backup_back_and_keeps_the_history(ws) -> None:
    before_v2, v2_backup = v1_then_v2(ws)
    ws.sql("INSERT INTO labels (id, task_id, text) VALUES (1, 1, 'urgent')")
    rows_before = history(ws)

    r = ws.cli("backups", "restore", backup_id(v2_backup))

    assert r.returncode == 0, r.output
    assert normalised(ws.dump()) == normalised(before_v2)
    assert len(ws.backups()) == 2  # the database before the restore was backed up
    rows = history(ws)
    assert rows[:2] == [rows_before[0], with_outcome(rows_before[1], "rolled_back")]
    assert [row[3] for row in rows[2:]] == ["restored"]


def test_backups_restore_of_an_unknown_id_exits_2_naming_it(ws) -> None:
    v1_then_v2(ws)
    before = ws.dump()
    backups_before = ws.backups()

    r = ws.cli("backups", "restore", "backup_19990101_000000_000")

    assert r.returncode == USAGE, r.output
    assert "backup_19990101_000000_000" in r.stderr
    assert ws.dump() == before
    assert ws.backups() == backups_before


def corrupt_middle(path: Path) -> None:
    """Overwrite one page in the middle of an SQLite file with junk."""
    data = path.read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = len(data) // page_size
    assert pages >= 3, pages
    offset = (pages // 2) * page_size
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return
    assert check != [("ok",)], "the junk did not corrupt the copy"


def test_backups_restore_refuses_a_corrupted_backup_and_leaves_the_database_alone(ws) -> None:
    _, v2_backup = v1_then_v2(ws)
    copy = ws.backup_dir / "backup_20000101_000000_000.db"
    shutil.copyfile(v2_backup, copy)
    corrupt_middle(copy)
    before = ws.dump()
    backups_before = {p: file_state(p) for p in ws.backups()}

    r = ws.cli("backups", "restore", "backup_20000101_000000_000")

    assert r.returncode == REFUSED, r.output
    assert "backup_20000101_000000_000" in r.stderr
    assert ws.dump() == before
    assert {p: file_state(p) for p in ws.backups()} == backups_before


# ---------------------------------------------------------------------------------------------
# 5. the seed's Python API


@pytest.fixture
def in_workspace(ws, monkeypatch: pytest.MonkeyPatch):
    """In-process calls see the workspace as their base directory, as a server would."""
    monkeypatch.chdir(ws.root)
    monkeypatch.setenv(PREFIX + "BASE_DIR", str(ws.root))
    return ws


@pytest.mark.parametrize("use_backup", [True, False], ids=["use-backup", "by-sql"])
def test_rollback_last_migration_undoes_the_last_run(in_workspace, use_backup: bool) -> None:
    ws = in_workspace
    before_v2, _ = v1_then_v2(ws)
    _, md = models(ws, "models_v2", MODELS_V2)

    result = AutoMigrationSystem(ws.url, metadata=md).rollback_last_migration(use_backup=use_backup)

    assert result.success is True, result.error_message
    assert result.error_message is None
    assert normalised(ws.dump()) == normalised(before_v2)
    last = "restored" if use_backup else "rollback"
    assert [outcome for _, outcome in outcomes(ws)] == ["applied", "rolled_back", last]


def test_rollback_last_migration_by_sql_reports_a_refusal_without_raising(in_workspace) -> None:
    ws = in_workspace
    v1_then_v2(ws)
    ws.sql("INSERT INTO labels (id, task_id, text) VALUES (1, 1, 'urgent')")
    before = ws.dump()
    _, md = models(ws, "models_v2", MODELS_V2)

    result = AutoMigrationSystem(ws.url, metadata=md).rollback_last_migration(use_backup=False)

    assert result.success is False
    assert result.error_message and "--use-backup" in result.error_message
    assert int(result.exit_code) == REFUSED
    assert ws.dump() == before


def test_rollback_last_migration_from_a_corrupted_backup_reports_a_refusal(in_workspace) -> None:
    ws = in_workspace
    _, v2_backup = v1_then_v2(ws)
    corrupt_middle(v2_backup)
    before = ws.dump()
    _, md = models(ws, "models_v2", MODELS_V2)

    result = AutoMigrationSystem(ws.url, metadata=md).rollback_last_migration(use_backup=True)

    assert result.success is False
    assert result.error_message and backup_id(v2_backup) in result.error_message
    assert int(result.exit_code) == REFUSED
    assert ws.dump() == before
    assert ws.backups() == [v2_backup]


def test_rollback_last_migration_of_a_run_without_backup_reports_a_refusal(in_workspace) -> None:
    ws = in_workspace
    v1_with_data(ws)  # v1 ran on an empty database: no backup to go back to
    before = ws.dump()
    _, md = models(ws, "models_v1", MODELS_V1)

    result = AutoMigrationSystem(ws.url, metadata=md).rollback_last_migration(use_backup=True)

    assert result.success is False
    assert result.error_message and "no backup" in result.error_message
    assert ws.dump() == before
    assert ws.backups() == []


def test_rollback_without_a_database_refuses_and_creates_nothing(ws):
    for args in (("rollback",), ("rollback", "--use-backup"), ("rollback", "--to", "1")):
        result = ws.cli(*args)
        assert result.returncode == 4, result.output
        assert "nothing to roll back" in result.stderr
    assert not ws.db_path.parent.exists()
