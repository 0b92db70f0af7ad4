"""Rollback by inverse SQL on SQLite, PostgreSQL and MariaDB: every reversible change kind in
one run, undone; the schema back to what it was (the models before the run are up to date
again), rows written since kept; refused with a count where only the backup holds the data; a
rollback that fails part-way leaves the database as it was."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from orchestrator_migrate import MigrationFailed, Outcome, RefusedChange, check, migrate
from orchestrator_migrate.api import rollback

pytestmark = pytest.mark.usefixtures("api_env")


def run(db, ws, md: sa.MetaData):
    return migrate(db_url=db.url, metadata=md, base_dir=str(ws.root))


def planned(db, ws, md: sa.MetaData):
    return check(db_url=db.url, metadata=md, base_dir=str(ws.root)).plan


def undo(db, ws, **kw):
    return rollback(db_url=db.url, base_dir=str(ws.root), **kw)


def v1() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "teams",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
    )
    sa.Table(
        "tasks",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(40), nullable=False),
        sa.Column("team_id", sa.Integer),
        sa.Column("points", sa.Integer, server_default="1"),
        sa.Column("owner", sa.String(40), nullable=False, server_default="nobody"),
        sa.Column("legacy", sa.String(20), nullable=False, server_default="x"),
        sa.Column("note", sa.String(100)),
    )
    return md


def v2() -> sa.MetaData:
    """Every reversible kind at once: a table (with a native enum on PostgreSQL), a column, an
    index, a unique constraint, a foreign key, a named CHECK, a widened type, defaults set and
    dropped, NOT NULL set and dropped, a column retired, one renamed, a comment."""
    md = sa.MetaData()
    sa.Table(
        "teams",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
        sa.UniqueConstraint("name", name="uq_teams_name"),
        comment="Who does the work",
    )
    sa.Table(
        "tasks",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(120), nullable=False),  # widened
        sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id", name="fk_tasks_team")),
        sa.Column("points", sa.Integer, nullable=False, server_default="2"),  # both changed
        sa.Column("owner", sa.String(40), nullable=True),  # default dropped, nullable
        sa.Column("details", sa.String(100), info={"renamed_from": "note"}),
        sa.Column("rank", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("points >= 0", name="ck_tasks_points"),
        sa.Index("ix_tasks_rank", "rank"),
        # legacy is gone from the models: retired (kept, NOT NULL relaxed)
    )
    sa.Table(
        "labels",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Enum("bug", "chore", name="label_kind")),
    )
    return md


SEED = (
    "INSERT INTO teams (id, name) VALUES (1, 'core'), (2, 'web')",
    "INSERT INTO tasks (id, title, team_id, points, owner, legacy, note)"
    " VALUES (1, 'a', 1, 3, 'ann', 'l1', 'n1'), (2, 'b', 2, 5, 'bob', 'l2', NULL)",
)


def at_v2(ws, db) -> None:
    """v1 with its rows, then v2 over them."""
    run(db, ws, v1())
    db.sql(*SEED)
    run(db, ws, v2())


def test_one_run_of_every_reversible_kind_is_undone_and_rows_written_since_are_kept(ws, any_db):
    assert run(any_db, ws, v1()).outcome is Outcome.APPLIED
    any_db.sql(*SEED)
    result = run(any_db, ws, v2())
    assert result.outcome is Outcome.APPLIED, result.error_message
    kinds = {c.kind.value for c in result.plan.changes}
    assert {
        "add_table",
        "add_column",
        "add_index",
        "add_unique",
        "add_foreign_key",
        "add_check",
        "alter_default",
        "set_not_null",
        "drop_not_null",
        "rename_column",
    } <= kinds, kinds
    if any_db.kind != "sqlite":  # a longer VARCHAR is the same TEXT to SQLite
        assert "alter_type" in kinds
    columns = any_db.columns("tasks")
    assert "details" in columns and "note" not in columns  # renamed, not copied beside
    # Written by the new version after the run, in columns the rollback keeps.
    any_db.sql(
        "INSERT INTO teams (id, name) VALUES (3, 'ops')",
        "INSERT INTO tasks (id, title, team_id, points, owner, legacy, details)"
        " VALUES (3, 'c', 3, 4, 'cat', 'l3', 'n3')",
        "UPDATE tasks SET title = 'a2' WHERE id = 1",
    )

    back = undo(any_db, ws)

    assert back.success, back.error_message
    plan = planned(any_db, ws, v1())
    assert plan.empty, plan.to_dict()
    assert "labels" not in any_db.tables()
    rows = any_db.sql(
        "SELECT id, title, team_id, points, owner, legacy, note FROM tasks ORDER BY id"
    )
    assert rows == [
        (1, "a2", 1, 3, "ann", "l1", "n1"),
        (2, "b", 2, 5, "bob", "l2", None),
        (3, "c", 3, 4, "cat", "l3", "n3"),
    ]
    if any_db.kind == "postgresql":  # the enum type the run created went with its table
        assert not any_db.sql("SELECT 1 FROM pg_type WHERE typname = 'label_kind'")
    # Forward again, to the same schema as the first time.
    assert run(any_db, ws, v2()).outcome is Outcome.APPLIED
    assert planned(any_db, ws, v2()).empty


def test_a_rollback_that_would_lose_values_is_refused_with_a_count(ws, any_db):
    at_v2(ws, any_db)
    any_db.sql("UPDATE tasks SET rank = 7 WHERE id = 2")
    with pytest.raises(RefusedChange, match=r"tasks\.rank.* holds 1 values") as refused:
        undo(any_db, ws)
    assert "--use-backup" in str(refused.value)
    assert planned(any_db, ws, v2()).empty  # nothing changed

    any_db.sql("UPDATE tasks SET rank = 0", "INSERT INTO labels (id) VALUES (1)")
    with pytest.raises(RefusedChange, match=r"labels.*1 rows"):
        undo(any_db, ws)
    assert planned(any_db, ws, v2()).empty


def test_a_rollback_that_fails_part_way_leaves_the_database_as_it_was(ws, any_db):
    at_v2(ws, any_db)
    # The new version wrote a NULL owner: making owner NOT NULL again cannot work.
    any_db.sql("UPDATE tasks SET owner = NULL WHERE id = 1")
    with pytest.raises(MigrationFailed, match="owner"):
        undo(any_db, ws)
    assert planned(any_db, ws, v2()).empty
    assert any_db.sql("SELECT id, owner FROM tasks ORDER BY id") == [(1, None), (2, "bob")]
    any_db.sql("UPDATE tasks SET owner = 'back' WHERE id = 1")
    assert undo(any_db, ws).success
    assert planned(any_db, ws, v1()).empty


def test_what_only_the_backup_can_undo_is_refused_by_sql(ws, any_db):
    run(any_db, ws, v1())
    any_db.sql(*SEED)
    gone = v1()
    gone.tables["tasks"].c.note.type = sa.String(100)
    smaller = sa.MetaData()
    for table in gone.sorted_tables:
        columns = [c.copy() for c in table.columns if c.name != "note"]
        sa.Table(table.name, smaller, *columns)
    migrate(db_url=any_db.url, metadata=smaller, base_dir=str(ws.root), allow_destructive=True)
    with pytest.raises(RefusedChange, match="--use-backup"):
        undo(any_db, ws)
    back = undo(any_db, ws, use_backup=True)
    assert back.success, back.error_message
    assert any_db.sql("SELECT id, note FROM tasks ORDER BY id") == [(1, "n1"), (2, None)]


BIG_V1 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("big", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(40)))
"""

BIG_V2 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("big", md, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(200)), sa.Column("note", sa.Text))
"""


def test_a_mariadb_rollback_killed_part_way_is_restored_by_the_next_start(ws, mysql_url):
    """MariaDB commits each DDL statement: a rollback by SQL killed between its statements
    would leave the schema in between. The next start restores the backup the rollback took
    first, and the run it was undoing is still in force."""
    import time

    url = mysql_url.render_as_string(hide_password=False)
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url, "MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT": "0"}
    assert ws.cli("--models", ws.write_models("big_v1", BIG_V1), env=env).returncode == 0
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO big (id, name) SELECT seq, CONCAT('n', seq) FROM seq_1_to_300000"
        )
    v2 = ws.write_models("big_v2", BIG_V2)
    assert ws.cli("--models", v2, env=env).returncode == 0
    victim = ws.popen("rollback", env=env)
    deadline = time.monotonic() + 60
    with engine.connect() as conn:
        # The undo drops note, then narrows name: a copy of the table, long enough to land in.
        while not conn.exec_driver_sql(
            "SELECT 1 FROM information_schema.PROCESSLIST"
            " WHERE INFO LIKE 'ALTER TABLE big MODIFY name VARCHAR(40)%%'"
        ).all():
            assert victim.poll() is None, victim.communicate()
            assert time.monotonic() < deadline, "the rollback never reached its ALTER TABLE"
            time.sleep(0.01)
    victim.kill()
    victim.wait()
    engine.dispose()

    again = ws.cli("--models", v2, env=env)
    assert again.returncode == 0, again.output
    assert "died part-way; restoring" in again.stderr
    columns = {c["name"]: c for c in sa.inspect(sa.create_engine(url)).get_columns("big")}
    assert set(columns) == {"id", "name", "note"}
    assert columns["name"]["type"].length == 200
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM big").scalar_one() == 300000
    engine.dispose()
    outcomes = [e["outcome"] for e in ws.cli("history", "--json", env=env).json()]
    assert outcomes[:3] == ["interrupted_restored", "applied", "applied"], outcomes
    # The run is still there to undo.
    assert ws.cli("rollback", env=env).returncode == 0


def test_an_enum_value_added_on_postgresql_is_rolled_back_by_sql(ws, pg_url):
    """The type is recreated without the value, over every column using it; a row that holds
    the value makes the rollback fail, exit 5, with the database as it was."""
    url = pg_url.render_as_string(hide_password=False)
    kw = {"db_url": url, "base_dir": str(ws.root)}

    def paints(*values: str) -> sa.MetaData:
        md = sa.MetaData()
        sa.Table(
            "paints",
            md,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("colour", sa.Enum(*values, name="colour"), server_default="red"),
        )
        return md

    engine = sa.create_engine(url)
    migrate(metadata=paints("red", "green"), **kw)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO paints (id, colour) VALUES (1, 'green'), (2, 'red')")
    assert migrate(metadata=paints("red", "green", "blue"), **kw).outcome is Outcome.APPLIED
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO paints (id, colour) VALUES (3, 'blue')")
    with pytest.raises(MigrationFailed, match="blue"):
        rollback(**kw)
    assert check(metadata=paints("red", "green", "blue"), **kw).plan.empty
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM paints WHERE id = 3")
    assert rollback(**kw).success
    assert check(metadata=paints("red", "green"), **kw).plan.empty
    with engine.begin() as conn:
        labels = conn.exec_driver_sql(
            "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
            " WHERE t.typname = 'colour' ORDER BY e.enumsortorder"
        ).all()
        conn.exec_driver_sql("INSERT INTO paints (id) VALUES (4)")  # the default still works
        rows = conn.exec_driver_sql("SELECT id, colour FROM paints ORDER BY id").all()
    engine.dispose()
    assert labels == [("red",), ("green",)]
    assert rows == [(1, "green"), (2, "red"), (4, "red")]


def test_a_renamed_table_and_an_unnamed_check_are_rolled_back_by_sql(ws, any_db):
    """On the servers each is undone by its recorded inverse: the table renamed back, the CHECK
    (named by its text when added) dropped. SQLite refuses the rename: its rollback rebuilds
    from the snapshot, which a renamed table escapes."""

    def notes(name: str, *checks: sa.CheckConstraint, **info: str) -> sa.MetaData:
        md = sa.MetaData()
        sa.Table(
            name,
            md,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("size", sa.Integer),
            *checks,
            info=info,
        )
        return md

    run(any_db, ws, notes("notes"))
    any_db.sql("INSERT INTO notes (id, size) VALUES (1, 3)")
    run(any_db, ws, notes("notes", sa.CheckConstraint("size >= 0")))
    assert undo(any_db, ws).success
    assert planned(any_db, ws, notes("notes")).empty
    any_db.sql("INSERT INTO notes (id, size) VALUES (2, -1)")  # the CHECK is gone

    any_db.sql("DELETE FROM notes WHERE id = 2")
    renamed = notes("memos", renamed_from="notes")
    assert run(any_db, ws, renamed).outcome is Outcome.APPLIED
    if any_db.kind == "sqlite":
        with pytest.raises(RefusedChange, match="--use-backup"):
            undo(any_db, ws)
        return
    assert undo(any_db, ws).success
    assert planned(any_db, ws, notes("notes")).empty
    assert any_db.sql("SELECT id, size FROM notes") == [(1, 3)]
