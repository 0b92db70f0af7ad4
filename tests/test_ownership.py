"""Only what the models defined is ever dropped; hand-made constraints survive rebuilds; drift."""

from model_snippets import HEADER

V1 = (
    HEADER
    + """
sa.Table("teams", md, sa.Column("id", sa.Integer, primary_key=True))
sa.Table("members", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(80)),
    sa.Column("team_id", sa.Integer),
    sa.Column("code", sa.String(10)),
    sa.UniqueConstraint("code", name="uq_members_code"))
"""
)

# v2 drops the models' unique constraint and forces a rebuild (email becomes NOT NULL).
V2 = V1.replace(
    'sa.Column("email", sa.String(80))', 'sa.Column("email", sa.String(80), nullable=False)'
)
V2 = V2.replace(',\n    sa.UniqueConstraint("code", name="uq_members_code"))', ")")


def test_a_rebuild_keeps_a_dba_unique_and_foreign_key_and_drops_only_the_models_constraint(ws):
    assert ws.cli("--models", ws.write_models("own1", V1)).returncode == 0
    # A DBA adds a unique constraint and a foreign key by hand (SQLite needs a rebuild for that).
    ws.script(
        "PRAGMA foreign_keys=OFF; BEGIN;"
        "CREATE TABLE m2 (id INTEGER NOT NULL, email VARCHAR(80), team_id INTEGER,"
        " code VARCHAR(10), PRIMARY KEY (id), CONSTRAINT uq_members_code UNIQUE (code),"
        " UNIQUE (email), FOREIGN KEY(team_id) REFERENCES teams (id));"
        "INSERT INTO m2 SELECT * FROM members; DROP TABLE members;"
        "ALTER TABLE m2 RENAME TO members; COMMIT;"
        "INSERT INTO teams (id) VALUES (1);"
        "INSERT INTO members VALUES (1, 'a@x', 1, 'A'), (2, 'b@x', 1, 'B');"
    )
    plan = ws.cli("plan", "--json", "--models", ws.write_models("own2", V2))
    kinds = [c["kind"] for op in plan.json()["operations"] for c in op["changes"]]
    assert "drop_unique" in kinds, plan.stdout
    result = ws.cli("--models", ws.write_models("own2", V2))
    assert result.returncode == 0, result.output
    sql = ws.sql("SELECT sql FROM sqlite_master WHERE name = 'members'")[0][0]
    assert "UNIQUE (email)" in sql, sql
    assert "REFERENCES teams" in sql, sql
    assert "(code)" not in sql, sql  # the models' own constraint, removed from them, is gone
    assert ws.sql("SELECT id, email, team_id, code FROM members ORDER BY id") == [
        (1, "a@x", 1, "A"),
        (2, "b@x", 1, "B"),
    ]
    again = ws.cli("check", "--models", ws.write_models("own2", V2))
    assert again.returncode == 0, again.output


def test_check_reports_a_schema_changed_by_hand_as_drift(ws):
    ref = ws.write_models("drift1", V1)
    assert ws.cli("--models", ref).returncode == 0
    clean = ws.cli("check", "--models", ref)
    assert clean.returncode == 0 and "drift" not in clean.output.lower()
    ws.script("CREATE INDEX ix_by_hand ON members (email); ALTER TABLE teams ADD COLUMN note TEXT;")
    drifted = ws.cli("check", "--models", ref)
    assert drifted.returncode == 0, drifted.output
    assert "Schema drift" in drifted.stdout
    assert "ix_by_hand" in drifted.stdout and "teams.note" in drifted.stdout
    as_json = ws.cli("check", "--json", "--models", ref).json()
    assert any(w.startswith("Schema drift") for w in as_json["warnings"])
