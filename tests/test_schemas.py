"""PostgreSQL schemas: tables with schema="..." in the models are compared, migrated, backed up,
restored and rolled back like those in the default schema; another schema's tables are never
touched. (SQLite and MariaDB refuse them: tests/test_targets.py.)"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from orchestrator_migrate import Outcome, RefusedChange, check, migrate
from orchestrator_migrate.api import rollback

pytestmark = pytest.mark.usefixtures("api_env")


def models(v2: bool = False) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "projects",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
    )
    extra = []
    if v2:
        extra = [
            sa.Column("state", sa.String(10), nullable=False, server_default="open"),
            sa.Index("ix_app_jobs_state", "state"),
            sa.CheckConstraint("attempts >= 0", name="ck_jobs_attempts"),
        ]
    sa.Table(
        "jobs",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", name="fk_jobs_project")),
        sa.Column("title", sa.String(120 if v2 else 60), nullable=False),
        sa.Column("attempts", sa.Integer, server_default="0"),
        *extra,
        schema="app",
    )
    return md


@pytest.fixture
def pg(pg_url):
    url = pg_url.render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # another application's schema, with rows
        conn.exec_driver_sql("CREATE SCHEMA app")
        conn.exec_driver_sql("CREATE SCHEMA other")
        conn.exec_driver_sql("CREATE TABLE other.keep (id int PRIMARY KEY, note text)")
        conn.exec_driver_sql("INSERT INTO other.keep VALUES (1, 'theirs')")
    yield url, engine
    engine.dispose()


def sql(engine, *statements: str):
    with engine.begin() as conn:
        rows = []
        for statement in statements:
            result = conn.exec_driver_sql(statement)
            rows = result.all() if result.returns_rows else []
        return rows


def test_a_schema_of_the_models_is_migrated_and_another_is_never_touched(ws, pg):
    url, engine = pg
    kw = {"db_url": url, "base_dir": str(ws.root)}
    assert migrate(metadata=models(), **kw).outcome is Outcome.APPLIED
    assert check(metadata=models(), **kw).plan.empty
    sql(
        engine,
        "INSERT INTO projects (id, name) VALUES (1, 'p')",
        "INSERT INTO app.jobs (id, project_id, title) VALUES (1, 1, 'a'), (2, 1, 'b')",
    )
    plan = check(metadata=models(v2=True), **kw).plan
    assert {c.table for c in plan.changes} == {"app.jobs"}, plan.to_dict()
    assert not any("keep" in c.description for c in [*plan.changes, *plan.retained])
    result = migrate(metadata=models(v2=True), **kw)
    assert result.outcome is Outcome.APPLIED, result.error_message
    assert check(metadata=models(v2=True), **kw).plan.empty
    assert sql(engine, "SELECT id, title, state FROM app.jobs ORDER BY id") == [
        (1, "a", "open"),
        (2, "b", "open"),
    ]
    with pytest.raises(sa.exc.IntegrityError):
        sql(engine, "INSERT INTO app.jobs (id, title, attempts) VALUES (3, 'c', -1)")

    # Rollback by SQL puts app.jobs back as v1 made it.
    assert rollback(**kw).success
    assert check(metadata=models(), **kw).plan.empty
    assert sql(engine, "SELECT id, title FROM app.jobs ORDER BY id") == [(1, "a"), (2, "b")]

    # Forward again; then a restore from the backup brings back app and public as they were,
    # and leaves the other schema, written to since, as it is.
    assert migrate(metadata=models(v2=True), **kw).outcome is Outcome.APPLIED
    sql(engine, "INSERT INTO other.keep VALUES (2, 'written since')")
    back = rollback(use_backup=True, **kw)
    assert back.success, back.error_message
    assert check(metadata=models(), **kw).plan.empty
    assert sql(engine, "SELECT id, title FROM app.jobs ORDER BY id") == [(1, "a"), (2, "b")]
    assert sql(engine, "SELECT id, note FROM other.keep ORDER BY id") == [
        (1, "theirs"),
        (2, "written since"),
    ]


def test_a_check_over_violating_rows_in_a_schema_is_refused_with_the_count(ws, pg):
    url, engine = pg
    kw = {"db_url": url, "base_dir": str(ws.root)}
    migrate(metadata=models(), **kw)
    sql(
        engine,
        "INSERT INTO projects (id, name) VALUES (1, 'p')",
        "INSERT INTO app.jobs (id, project_id, title, attempts) VALUES (1, 1, 'a', -2)",
    )
    with pytest.raises(RefusedChange, match="1 rows violate"):
        migrate(metadata=models(v2=True), **kw)
    assert check(metadata=models(), **kw).plan.empty


def test_a_check_the_models_drop_in_a_schema_goes(ws, pg):
    url, engine = pg
    kw = {"db_url": url, "base_dir": str(ws.root)}
    migrate(metadata=models(v2=True), **kw)
    fewer = models(v2=True)
    jobs = fewer.tables["app.jobs"]
    jobs.constraints = {c for c in jobs.constraints if c.name != "ck_jobs_attempts"}
    plan = check(metadata=fewer, **kw).plan
    assert [(c.kind.value, c.table) for c in plan.changes] == [("drop_check", "app.jobs")]
    assert migrate(metadata=fewer, **kw).outcome is Outcome.APPLIED
    assert check(metadata=fewer, **kw).plan.empty
    sql(engine, "INSERT INTO app.jobs (id, title, attempts) VALUES (1, 'a', -1)")  # gone
