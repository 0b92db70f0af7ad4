"""The tool's own tables, written by an older version, are brought up to date, never lost."""

from model_snippets import PROJECTS, TASKS, models


def test_history_and_state_from_an_older_version_are_upgraded_and_kept(ws):
    v1 = ws.write_models("own_v1", models(TASKS))
    assert ws.cli("--models", v1).returncode == 0
    # Make the tables look like an older version's: fewer columns, an older state layout.
    ws.script(
        "ALTER TABLE orchestrator_migrate_history DROP COLUMN schema_before;"
        "ALTER TABLE orchestrator_migrate_history DROP COLUMN objects;"
        "DROP TABLE orchestrator_migrate_state;"
        "CREATE TABLE orchestrator_migrate_state (id INTEGER PRIMARY KEY,"
        " models_fingerprint TEXT, schema_fingerprint TEXT);"
        "INSERT INTO orchestrator_migrate_state VALUES (1, 'old', 'old');"
    )
    old_rows = ws.sql("SELECT id, outcome, started_at FROM orchestrator_migrate_history")
    v2 = ws.write_models("own_v2", models(TASKS, PROJECTS))
    result = ws.cli("--models", v2)
    assert result.returncode == 0, result.output
    assert "Database migration completed" in result.stderr
    rows = ws.sql("SELECT id, outcome, started_at FROM orchestrator_migrate_history")
    assert rows[: len(old_rows)] == old_rows
    assert [r[1] for r in rows] == ["applied", "applied"]
    history = ws.cli("history", "--json")
    assert history.returncode == 0, history.output
    assert [e["outcome"] for e in history.json()] == ["applied", "applied"]
    again = ws.cli("--models", v2)
    assert again.returncode == 0 and "Database schema is up to date" in again.stderr
