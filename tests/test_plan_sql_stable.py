"""The SQL a plan shows is the SQL every process runs: a new table and a SQLite rebuild with
several constraints render the same statements in separate processes (hash seeds differ)."""

from __future__ import annotations

V1 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("owners", md, sa.Column("id", sa.Integer, primary_key=True))
sa.Table(
    "items", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("owners.id")),
    sa.Column("code", sa.String(10)),
    sa.UniqueConstraint("code", name="uq_items_code"),
    sa.CheckConstraint("length(code) > 1", name="ck_items_code"),
)
"""

# items.code becomes NOT NULL (a rebuild on SQLite, copying every constraint), and a new
# table carries a foreign key, a UNIQUE and two CHECKs.
V2 = (
    V1.replace(
        'sa.Column("code", sa.String(10))', 'sa.Column("code", sa.String(10), nullable=False)'
    )
    + """
sa.Table(
    "tags", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id")),
    sa.Column("name", sa.String(20)),
    sa.Column("rank", sa.Integer),
    sa.UniqueConstraint("item_id", "name", name="uq_tags_item_name"),
    sa.CheckConstraint("rank >= 0", name="ck_tags_rank"),
    sa.CheckConstraint("length(name) > 0", name="ck_tags_name"),
)
"""
)


def test_plan_sql_is_the_same_in_every_process(ws, any_db):
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": any_db.url}
    assert ws.cli("--models", ws.write_models("v1", V1), env=env).returncode == 0
    any_db.sql("INSERT INTO owners (id) VALUES (1)", "INSERT INTO items VALUES (1, 1, 'ab')")
    v2 = ws.write_models("v2", V2)

    outputs = {ws.cli("--models", v2, "plan", "--sql", env=env).stdout for _ in range(5)}

    assert len(outputs) == 1, "\n---\n".join(sorted(outputs))
    (sql,) = outputs
    assert "CREATE TABLE" in sql and "ck_tags_rank" in sql
