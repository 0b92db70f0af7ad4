"""A first run of many tables records all of its SQL (more than MariaDB's 64 KiB TEXT), and a
history table written by an older version with TEXT columns is widened before it is used."""

from __future__ import annotations

import json

import sqlalchemy as sa

TABLES = 80


def _models() -> str:
    lines = ["import sqlalchemy as sa", "md = sa.MetaData()"]
    for i in range(TABLES):
        parent = f', sa.ForeignKey("t{i - 1}.id")' if i else ""
        lines.append(
            f'sa.Table("t{i}", md, sa.Column("id", sa.Integer, primary_key=True),'
            f' sa.Column("name", sa.String(100), nullable=False, index=True),'
            f' sa.Column("code", sa.String(20)), sa.Column("qty", sa.Integer),'
            f' sa.Column("parent_id", sa.Integer{parent}))'
        )
    return "\n".join(lines) + "\n"


def test_a_first_run_of_many_tables_records_all_its_sql(ws, any_db):
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": any_db.url}
    models = ws.write_models("many", _models())

    done = ws.cli("--models", models, env=env)

    assert done.returncode == 0, done.output
    assert len(any_db.tables()) == TABLES
    history = sa.table("orchestrator_migrate_history", sa.column("sql"), sa.column("operations"))
    engine = any_db.engine()
    with engine.connect() as conn:  # `sql` is a reserved word on MariaDB: let SQLAlchemy quote
        recorded = conn.execute(sa.select(history.c.sql, history.c.operations)).one()
    engine.dispose()
    statements = json.loads(recorded[0])
    assert len(recorded[1].encode()) > 64 * 1024  # more than a MariaDB TEXT holds
    assert sum(s.startswith("CREATE TABLE") for s in statements) == TABLES
    assert len(json.loads(recorded[1])) == 2 * TABLES  # a table and its index each
    assert ws.cli("--models", models, "check", env=env).returncode == 0


def test_an_older_history_table_with_text_columns_is_widened(ws, mysql_url):
    from orchestrator_migrate.history.tables import tables

    url = mysql_url.render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in tables(sa.Text):  # as versions before LONGTEXT created them
            table.create(conn)
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url}

    done = ws.cli("--models", ws.write_models("many", _models()), env=env)

    assert done.returncode == 0, done.output
    with engine.connect() as conn:
        types = dict(
            conn.exec_driver_sql(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = DATABASE()"
                " AND table_name = 'orchestrator_migrate_history'"
            ).all()
        )
    engine.dispose()
    assert types["sql"] == types["operations"] == types["schema_before"] == "longtext"
    assert types["error"] == "longtext"
