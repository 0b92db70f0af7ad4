"""A first end-to-end run through the real CLI."""

MODELS_V1 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "tasks", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.String(100))
)
"""


def test_first_run_creates_tables_and_second_run_is_up_to_date_without_backup(ws):
    ref = ws.write_models("m1", MODELS_V1)
    first = ws.cli("--models", ref)
    assert first.returncode == 0, first.output
    assert "Database migration completed: 1 operations" in first.stderr
    assert ws.sql("SELECT name FROM sqlite_master WHERE name='tasks'") == [("tasks",)]
    ws.sql("INSERT INTO tasks (title) VALUES ('a')")
    second = ws.cli("--models", ref)
    assert second.returncode == 0, second.output
    assert "Database schema is up to date" in second.stderr
    assert "Backup created" not in second.stderr
    assert ws.backups() == []
    assert [r[1] for r in ws.history_rows()] == ["applied"]
