"""Each kind of schema change, migrated end to end through the CLI on a real SQLite file.

Every test seeds rows with sqlite3 after a first run, migrates to new models, and checks that
every row is still there, that a second run has nothing to do, and that `check` agrees.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from model_snippets import PROJECTS, TASKS, models

SEED_TASKS = """
INSERT INTO tasks (id, title) VALUES (1, 'write tests'), (2, 'fix bugs'), (3, 'ship it');
"""


def tasks_with(*columns: str, extra: str = "") -> str:
    """The tasks table with more columns (and table arguments)."""
    cols = "".join(f"    {c},\n" for c in columns)
    return f"""
sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
{cols}{extra})
"""


@dataclass(frozen=True)
class ChangeCase:
    """v1 -> v2 with data: the rows `kept` must read the same before and after."""

    v1: str
    v2: str
    seed: str
    kept: Sequence[str]
    kind: str
    after: Sequence[tuple[str, list[tuple[Any, ...]]]] = field(default_factory=tuple)


TITLE_NOT_NULL = 'sa.Column("title", sa.String(100), nullable=False)'
TITLE = 'sa.Column("title", sa.String(100))'

CASES = {
    "add_table": ChangeCase(
        v1=models(TASKS),
        v2=models(TASKS, PROJECTS),
        seed=SEED_TASKS,
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="add_table",
        after=[
            (
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'projects'",
                [("projects",)],
            ),
            ("SELECT count(*) FROM projects", [(0,)]),
        ],
    ),
    "add_nullable_column": ChangeCase(
        v1=models(TASKS),
        v2=models(tasks_with(TITLE, 'sa.Column("notes", sa.String(200))')),
        seed=SEED_TASKS,
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="add_column",
        after=[
            ("SELECT id, notes FROM tasks ORDER BY id", [(1, None), (2, None), (3, None)]),
            ("SELECT \"notnull\" FROM pragma_table_info('tasks') WHERE name = 'notes'", [(0,)]),
        ],
    ),
    "add_not_null_column_with_string_server_default": ChangeCase(
        v1=models(TASKS),
        v2=models(
            tasks_with(
                TITLE,
                'sa.Column("status", sa.String(20), nullable=False, server_default="todo")',
            )
        ),
        seed=SEED_TASKS,
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="add_column",
        after=[
            (
                "SELECT id, status FROM tasks ORDER BY id",
                [(1, "todo"), (2, "todo"), (3, "todo")],
            ),
            ("SELECT \"notnull\" FROM pragma_table_info('tasks') WHERE name = 'status'", [(1,)]),
        ],
    ),
    "add_not_null_column_with_sql_server_default": ChangeCase(
        v1=models(TASKS),
        v2=models(
            tasks_with(
                TITLE,
                'sa.Column("priority", sa.Integer, nullable=False, server_default=sa.text("3"))',
            )
        ),
        seed=SEED_TASKS,
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="add_column",
        after=[
            ("SELECT id, priority FROM tasks ORDER BY id", [(1, 3), (2, 3), (3, 3)]),
            (
                "SELECT \"notnull\" FROM pragma_table_info('tasks') WHERE name = 'priority'",
                [(1,)],
            ),
        ],
    ),
    "add_index": ChangeCase(
        v1=models(TASKS),
        v2=models(tasks_with(TITLE, extra='    sa.Index("ix_tasks_title", "title"),\n')),
        seed=SEED_TASKS,
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="add_index",
        after=[
            (
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"
                " AND name = 'ix_tasks_title'",
                [("ix_tasks_title", "tasks")],
            ),
        ],
    ),
    "drop_index_created_by_the_tool": ChangeCase(
        v1=models(tasks_with(TITLE, extra='    sa.Index("ix_tasks_title", "title"),\n')),
        v2=models(TASKS),
        seed=SEED_TASKS,
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="drop_index",
        after=[("SELECT name FROM sqlite_master WHERE name = 'ix_tasks_title'", [])],
    ),
    "add_unique_constraint": ChangeCase(
        v1=models(TASKS),
        v2=models(
            tasks_with(TITLE, extra='    sa.UniqueConstraint("title", name="uq_tasks_title"),\n')
        ),
        seed=SEED_TASKS,
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="add_unique",
        after=[
            (
                "SELECT count(*) FROM pragma_index_list('tasks')"
                " WHERE \"unique\" = 1 AND origin = 'u'",
                [(1,)],
            ),
        ],
    ),
    "add_foreign_key": ChangeCase(
        v1=models(PROJECTS, tasks_with(TITLE, 'sa.Column("project_id", sa.Integer)')),
        v2=models(
            PROJECTS,
            tasks_with(TITLE, 'sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"))'),
        ),
        seed="""
            INSERT INTO projects (id, name) VALUES (10, 'alpha'), (20, 'beta');
            INSERT INTO tasks (id, title, project_id)
                VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', NULL), (4, 'd', 10);
        """,
        kept=[
            "SELECT id, title, project_id FROM tasks ORDER BY id",
            "SELECT id, name FROM projects ORDER BY id",
        ],
        kind="add_foreign_key",
        after=[
            (
                'SELECT "table", "from", "to" FROM pragma_foreign_key_list(\'tasks\')',
                [("projects", "project_id", "id")],
            ),
        ],
    ),
    "type_integer_to_float": ChangeCase(
        v1=models(tasks_with(TITLE, 'sa.Column("estimate", sa.Integer)')),
        v2=models(tasks_with(TITLE, 'sa.Column("estimate", sa.Float)')),
        seed="INSERT INTO tasks (id, title, estimate)"
        " VALUES (1, 'a', 1), (2, 'b', 20), (3, 'c', -3)",
        kept=["SELECT id, title, estimate FROM tasks ORDER BY id"],
        kind="alter_type",
        after=[
            (
                "SELECT estimate, typeof(estimate) FROM tasks ORDER BY id",
                [(1.0, "real"), (20.0, "real"), (-3.0, "real")],
            ),
        ],
    ),
    "type_string_to_integer": ChangeCase(
        v1=models(tasks_with(TITLE, 'sa.Column("code", sa.String(10))')),
        v2=models(tasks_with(TITLE, 'sa.Column("code", sa.Integer)')),
        seed="INSERT INTO tasks (id, title, code)"
        " VALUES (1, 'a', '42'), (2, 'b', '7'), (3, 'c', '-3')",
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="alter_type",
        after=[
            (
                "SELECT id, code, typeof(code) FROM tasks ORDER BY id",
                [(1, 42, "integer"), (2, 7, "integer"), (3, -3, "integer")],
            ),
        ],
    ),
    "set_not_null_without_nulls": ChangeCase(
        v1=models(TASKS),
        v2=models(tasks_with(TITLE_NOT_NULL)),
        seed=SEED_TASKS,
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="set_not_null",
        after=[("SELECT \"notnull\" FROM pragma_table_info('tasks') WHERE name = 'title'", [(1,)])],
    ),
    "drop_not_null": ChangeCase(
        v1=models(tasks_with(TITLE_NOT_NULL)),
        v2=models(TASKS),
        seed=SEED_TASKS,
        kept=["SELECT id, title FROM tasks ORDER BY id"],
        kind="drop_not_null",
        after=[("SELECT \"notnull\" FROM pragma_table_info('tasks') WHERE name = 'title'", [(0,)])],
    ),
}


def ok(result: Any) -> Any:
    assert result.returncode == 0, result.output
    return result


def applied_kinds(run_json: dict[str, Any]) -> list[str]:
    return [c["kind"] for op in run_json["plan"]["operations"] for c in op["changes"]]


def assert_converged(ws: Any, ref: str, backups_before: int) -> None:
    """A second run has nothing to do and writes no backup; `check` exits 0."""
    again = ok(ws.cli("--models", ref))
    assert "Database schema is up to date" in again.stderr, again.output
    assert "Backup created" not in again.stderr, again.output
    assert len(ws.backups()) == backups_before
    check = ws.cli("check", "--models", ref)
    assert check.returncode == 0, check.output
    assert "Database schema is up to date" in check.stdout, check.output


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_each_change_migrates_keeping_every_row_then_is_up_to_date(ws, case: ChangeCase):
    ok(ws.cli("--models", ws.write_models("v1", case.v1)))
    ws.script(case.seed)
    before = [ws.sql(q) for q in case.kept]
    assert all(before), "the seed must put rows in every compared query"

    v2 = ws.write_models("v2", case.v2)
    run = ok(ws.cli("--json", "--models", v2))
    result = run.json()
    assert result["outcome"] == "applied", run.output
    assert case.kind in applied_kinds(result), result["plan"]
    assert result["backup_created"] is True
    assert len(ws.backups()) == 1

    assert [ws.sql(q) for q in case.kept] == before
    for query, expected in case.after:
        assert ws.sql(query) == expected, query
    assert ws.sql("PRAGMA integrity_check") == [("ok",)]
    assert ws.sql("PRAGMA foreign_key_check") == []

    assert_converged(ws, v2, backups_before=1)


MIXED_MODELS = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "items", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("slug", sa.String(50), index=True),
    sa.Column("done", sa.Boolean),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
    sa.Column("score", sa.Float),
    sa.Column("priority", sa.Integer),
    sa.Column("due", sa.DateTime),
    sa.Column("archived", sa.Boolean),
    sa.Column("payload", sa.JSON),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("kind", sa.Enum("bug", "feature", name="kind")),
    sa.Column("data", sa.LargeBinary),
)
sa.Table(
    "notes", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id")),
    sa.Column("body", sa.Text),
)
"""

MIXED_SQL = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    slug varchar,
    done INTEGER,
    created_at DATETIME,
    updated_at TEXT,
    score REAL,
    priority BIGINT,
    due TIMESTAMP,
    archived BOOLEAN,
    payload TEXT,
    price NUMERIC(10, 2),
    kind VARCHAR(10),
    data BLOB
);
CREATE INDEX ix_items_slug ON items (slug);
CREATE TABLE notes (
    id INTEGER PRIMARY KEY,
    item_id INTEGER REFERENCES items (id),
    body TEXT
);
INSERT INTO items VALUES
    (1, 'one', 'one', 1, '2024-01-02 03:04:05', '2024-01-02T03:04:05', 1.5,
     5, '2024-02-03 00:00:00', 0, '{"a": 1}', 9.99, 'bug', x'00ff'),
    (2, 'two', NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO notes VALUES (1, 1, 'hello'), (2, 2, 'world');
"""


def test_hand_made_database_with_other_type_spellings_converges(ws):
    ws.script(MIXED_SQL)
    rows = {t: ws.sql(f"SELECT * FROM {t} ORDER BY id") for t in ("items", "notes")}
    ref = ws.write_models("mixed", MIXED_MODELS)

    ok(ws.cli("--models", ref))  # either nothing to do, or one run that converges
    backups = len(ws.backups())
    assert {t: ws.sql(f"SELECT * FROM {t} ORDER BY id") for t in ("items", "notes")} == rows

    assert_converged(ws, ref, backups_before=backups)
    plan = ok(ws.cli("plan", "--json", "--models", ref)).json()
    assert plan["operations"] == []


EMPTY_DB_MODELS = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
)
sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), index=True),
    sa.Column("title", sa.String(100), nullable=False, server_default="untitled"),
)
sa.Table(
    "tags", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("label", sa.String(30)),
)
"""


def test_first_run_on_empty_database_creates_every_table_in_one_run_without_backup(ws):
    ref = ws.write_models("fresh", EMPTY_DB_MODELS)
    run = ok(ws.cli("--models", ref))
    assert "Database migration completed" in run.stderr, run.output
    assert "Backup created" not in run.stderr, run.output

    tables = {r[0] for r in ws.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"projects", "tasks", "tags"} <= tables
    assert ws.sql("SELECT name FROM sqlite_master WHERE name = 'ix_tasks_project_id'") == [
        ("ix_tasks_project_id",)
    ]
    history = ws.history_rows()
    assert len(history) == 1
    assert history[0][1] == "applied"
    assert history[0][2] is None  # no backup id
    assert ws.backups() == []
    assert not ws.backup_dir.exists()

    check = ws.cli("check", "--models", ref)
    assert check.returncode == 0, check.output


REBUILD_V1 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "parents", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50){name_args}),
    sa.Column("motto", sa.String(50), server_default="it's"),
)
sa.Table(
    "children", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("parents.id", ondelete="CASCADE")),
    sa.Column("note", sa.String(50)),
)
sa.Table(
    "audit", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer),
    sa.Column("old_name", sa.String(50)),
)
"""

REBUILD_HAND_MADE = """
ALTER TABLE parents ADD COLUMN legacy TEXT DEFAULT 'it''s';
ALTER TABLE parents ADD COLUMN starts TEXT DEFAULT '09:30';
CREATE TRIGGER parents_renamed AFTER UPDATE OF name ON parents
BEGIN
    INSERT INTO audit (parent_id, old_name) VALUES (old.id, old.name);
END;
CREATE VIEW parent_names AS SELECT p.id, p.name, count(c.id) AS children
    FROM parents p LEFT JOIN children c ON c.parent_id = p.id GROUP BY p.id;
INSERT INTO parents (id, name, legacy) VALUES (1, 'ann', 'x'), (2, 'bob', NULL), (3, 'cy', 'z');
INSERT INTO parents (id, name) VALUES (4, 'dee');
INSERT INTO children (id, parent_id, note)
    VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c'), (4, 3, 'd'), (5, 4, 'e');
"""


def _master(ws: Any, type_: str, name: str) -> list[tuple[Any, ...]]:
    return ws.sql("SELECT sql FROM sqlite_master WHERE type = ? AND name = ?", (type_, name))


def test_rebuild_keeps_triggers_views_cascade_children_and_exact_defaults(ws):
    ok(ws.cli("--models", ws.write_models("v1", REBUILD_V1.format(name_args=""))))
    ws.script(REBUILD_HAND_MADE)
    trigger = _master(ws, "trigger", "parents_renamed")
    view = _master(ws, "view", "parent_names")
    parents = ws.sql("SELECT * FROM parents ORDER BY id")
    children = ws.sql("SELECT * FROM children ORDER BY id")
    view_rows = ws.sql("SELECT * FROM parent_names ORDER BY id")
    assert trigger and view and len(children) == 5

    # parents.name becomes NOT NULL: SQLite cannot ALTER that, so parents is rebuilt.
    v2 = ws.write_models("v2", REBUILD_V1.format(name_args=", nullable=False"))
    run = ok(ws.cli("--json", "--models", v2))
    kinds = [op["kind"] for op in run.json()["plan"]["operations"]]
    assert kinds == ["rebuild_table"], run.output

    assert ws.sql("SELECT \"notnull\" FROM pragma_table_info('parents') WHERE name = 'name'") == [
        (1,)
    ]
    assert ws.sql("SELECT * FROM parents ORDER BY id") == parents
    assert ws.sql("SELECT * FROM children ORDER BY id") == children  # no ON DELETE fired
    assert _master(ws, "trigger", "parents_renamed") == trigger
    assert _master(ws, "view", "parent_names") == view
    assert ws.sql("SELECT * FROM parent_names ORDER BY id") == view_rows
    assert ws.sql("PRAGMA foreign_key_check") == []

    # Defaults are kept exactly as declared, not re-quoted.
    create = _master(ws, "table", "parents")[0][0]
    assert "DEFAULT 'it''s'" in create.split("legacy", 1)[1], create
    assert "DEFAULT '09:30'" in create.split("starts", 1)[1], create
    assert "DEFAULT 'it''s'" in create.split("motto", 1)[1], create
    ws.sql("INSERT INTO parents (id, name) VALUES (5, 'eve')")
    assert ws.sql("SELECT motto, legacy, starts FROM parents WHERE id = 5") == [
        ("it's", "it's", "09:30")
    ]

    # The trigger still fires and the foreign key still cascades.
    conn = sqlite3.connect(ws.db_path)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("UPDATE parents SET name = 'anne' WHERE id = 1")
        conn.execute("DELETE FROM parents WHERE id = 2")
        conn.commit()
        assert conn.execute("SELECT parent_id, old_name FROM audit").fetchall() == [(1, "ann")]
        assert conn.execute("SELECT id FROM children ORDER BY id").fetchall() == [
            (1,),
            (2,),
            (4,),
            (5,),
        ]
    finally:
        conn.close()

    check = ws.cli("check", "--models", v2)
    assert check.returncode == 0, check.output


KEPT_V1 = models(tasks_with(TITLE, 'sa.Column("obsolete", sa.String(20))'))
KEPT_SEED = """
ALTER TABLE tasks ADD COLUMN dba_note TEXT;
INSERT INTO tasks (id, title, obsolete, dba_note)
    VALUES (1, 'a', 'old-1', 'n1'), (2, 'b', 'old-2', NULL);
"""
KEPT_ROWS = "SELECT id, title, obsolete, dba_note FROM tasks ORDER BY id"


def _kept_setup(ws: Any) -> tuple[str, list[tuple[Any, ...]]]:
    """v1 (with tasks.obsolete) run by the tool, rows seeded, dba_note added by hand; v2 run."""
    ok(ws.cli("--models", ws.write_models("v1", KEPT_V1)))
    ws.script(KEPT_SEED)
    rows = ws.sql(KEPT_ROWS)
    v2 = ws.write_models("v2", models(TASKS))
    run = ok(ws.cli("--models", v2))
    assert "kept" in run.stderr.lower() and "tasks.obsolete" in run.stderr, run.output
    assert ws.sql(KEPT_ROWS) == rows
    return v2, rows


def test_column_missing_from_models_is_kept_with_its_data_and_reported_by_check_and_plan(ws):
    v2, rows = _kept_setup(ws)

    check = ws.cli("check", "--models", v2)
    assert check.returncode == 0, check.output
    assert "kept (not in the models): column tasks.obsolete" in check.stdout, check.output
    plan = ok(ws.cli("plan", "--models", v2))
    assert "kept (not in the models): column tasks.obsolete" in plan.stdout, plan.output
    assert "kept (not in the models): column tasks.dba_note" in plan.stdout, plan.output
    assert ws.sql(KEPT_ROWS) == rows


def test_allow_destructive_drops_only_a_column_the_tool_created_after_a_backup(ws):
    v2, rows = _kept_setup(ws)
    backups = len(ws.backups())

    dropped = ok(ws.cli("--allow-destructive", "--models", v2))
    assert "Database migration completed" in dropped.stderr, dropped.output
    columns = [r[0] for r in ws.sql("SELECT name FROM pragma_table_info('tasks')")]
    assert "obsolete" not in columns
    # dba_note was never in any models: not ours to drop, even with --allow-destructive.
    assert "dba_note" in columns
    assert ws.sql("SELECT id, title, dba_note FROM tasks ORDER BY id") == [
        (r[0], r[1], r[3]) for r in rows
    ]

    assert len(ws.backups()) == backups + 1
    backup = sqlite3.connect(ws.backups()[-1])
    try:
        assert backup.execute(KEPT_ROWS).fetchall() == rows
    finally:
        backup.close()
