"""export-alembic on SQLite, PostgreSQL and MariaDB: the pending plan as an Alembic revision.

Two databases are brought to v1 by our CLI, with the same rows. The revision exported for v2 is
applied to one by Alembic itself (`alembic upgrade head` through alembic.command, with a minimal
env.py), our own run migrates the other: both end with the same schema (reflected, and the
backend's own fingerprint) and the same rows, our tool finds nothing left to do on the one
Alembic migrated, and `alembic downgrade -1` brings it back to v1 with its rows. Also: nothing to
export, down_revision chaining, a bad DIR, a refused plan, a step without an inverse and a
renamed column.
"""

from __future__ import annotations

import ast
import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, Db, Workspace, _scratch_database

from orchestrator_migrate.backends import backend_for

PREFIX = "MCP_TASK_ORCHESTRATOR_"

V1 = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "clients",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("note", sa.Integer, nullable=False),
    sa.CheckConstraint("name LIKE 'c%'", name="ck_clients_name"),
)
sa.Table(
    "tokens",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.String(50)),
)
"""

# A wider name, a NOT NULL column with a default holding a colon, an index, `note` removed
# (retired: kept, its NOT NULL relaxed), a foreign-key column on an old table (named: the servers
# drop an unnamed one by no name, so it has no inverse), and a new table with a foreign key, a
# CHECK with '%' and a default with ':name' in it.
V2 = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "clients",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(120), nullable=False),
    sa.Column("region", sa.String(20), nullable=False, server_default="eu:west"),
    sa.CheckConstraint("name LIKE 'c%'", name="ck_clients_name"),
    sa.Index("ix_clients_name", "name"),
)
sa.Table(
    "tokens",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.String(50)),
    sa.Column("client_id", sa.Integer, sa.ForeignKey("clients.id", name="fk_tokens_client")),
)
sa.Table(
    "orders",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("client_id", sa.Integer, sa.ForeignKey("clients.id"), nullable=False),
    sa.Column("ref", sa.String(20), nullable=False),
    sa.Column("slot", sa.String(30), server_default="at :noon 50%"),
    sa.CheckConstraint("ref LIKE 'o-%'", name="ck_orders_ref"),
)
"""

CLIENTS = [{"id": 1, "name": "c-one", "note": 11}, {"id": 2, "name": "c-two", "note": 12}]
TOKENS = [{"id": 1, "value": "t1"}, {"id": 2, "value": "t2"}]

ENV_PY = """
import sqlalchemy as sa
from alembic import context

engine = sa.create_engine(
    context.config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool
)
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""

SCRIPT_MAKO = '''"""${message}"""
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
'''

HAND_WRITTEN = '''"""initial, by hand"""
revision = "base00000001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


@pytest.fixture
def copy_db(any_db: Db, ws: Workspace) -> Any:
    """A second database of the same kind, for our own run beside Alembic's."""
    if any_db.kind == "sqlite":
        yield Db("sqlite", f"sqlite:///{ws.root / 'copy' / 'copy.db'}")
        return
    admin = PG_ADMIN_URL if any_db.kind == "postgresql" else MYSQL_ADMIN_URL
    scratch = contextlib.contextmanager(_scratch_database)
    with scratch(admin, any_db.kind) as url:
        yield Db(any_db.kind, url.render_as_string(hide_password=False))


def ok(done: Any) -> Any:
    """A CLI result that exited 0 (else its output in the failure)."""
    assert done.returncode == 0, done.output
    return done


def cli(ws: Workspace, db: Db, *args: str, models: str | None = None, **env: str) -> Any:
    """Our CLI on db with the models module named (v1, v2, ...)."""
    extra = {PREFIX + "DB_URL": db.url, PREFIX + "BACKUP": "false", **env}
    if models:
        extra[PREFIX + "MODELS"] = f"{models}:md"
    return ws.cli(*args, env=extra)


def at_v1(ws: Workspace, *dbs: Db) -> None:
    """v1 by our CLI, with the same rows, on each database."""
    ws.write_models("v1", V1)
    md = sa.MetaData()
    clients = sa.Table("clients", md, sa.Column("id"), sa.Column("name"), sa.Column("note"))
    tokens = sa.Table("tokens", md, sa.Column("id"), sa.Column("value"))
    for db in dbs:
        done = cli(ws, db, "run", models="v1")
        assert done.returncode == 0, done.output
        engine = db.engine()
        try:
            with engine.begin() as conn:
                conn.execute(clients.insert(), CLIENTS)
                conn.execute(tokens.insert(), TOKENS)
        finally:
            engine.dispose()


def export(ws: Workspace, db: Db, versions: Path, models: str, *flags: str, **env: str) -> Path:
    """Export the plan to models into versions; the path of the one new revision file."""
    before = set(versions.glob("*.py")) if versions.is_dir() else set()
    done = cli(ws, db, "export-alembic", str(versions), *flags, models=models, **env)
    assert done.returncode == 0, done.output
    [path] = set(versions.glob("*.py")) - before
    assert f"Wrote {path}" in done.stdout
    return path


def alembic_config(ws: Workspace, versions: Path, db: Db) -> Config:
    """An Alembic environment in the workspace whose revisions are those in versions."""
    env_dir = ws.root / "alembic_env"
    env_dir.mkdir(exist_ok=True)
    (env_dir / "env.py").write_text(ENV_PY)
    (env_dir / "script.py.mako").write_text(SCRIPT_MAKO)
    config = Config()
    config.set_main_option("script_location", str(env_dir))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(versions))
    config.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return config


def _user_tables(insp: Any) -> list[str]:
    names = insp.get_table_names()
    return sorted(t for t in names if t != "alembic_version" and not t.startswith("orchestrator"))


def schema(db: Db) -> dict[str, Any]:
    """Every user table as reflected: columns with type, nullability and default; key,
    indexes, foreign keys, uniques, CHECKs; on SQLite also the stored SQL of each table and
    index, with its lines in order (see unordered())."""
    engine = db.engine()
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            found: dict[str, Any] = {}
            for t in _user_tables(insp):
                found[t] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                        for c in insp.get_columns(t)
                    ],
                    "pk": insp.get_pk_constraint(t)["constrained_columns"],
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                        for i in insp.get_indexes(t)
                    ),
                    "fks": sorted(
                        (fk["name"] or "", tuple(fk["constrained_columns"]), fk["referred_table"])
                        for fk in insp.get_foreign_keys(t)
                    ),
                    "uniques": sorted(
                        (u["name"] or "", tuple(u["column_names"]))
                        for u in insp.get_unique_constraints(t)
                    ),
                    "checks": sorted(
                        (c["name"] or "", c["sqltext"]) for c in insp.get_check_constraints(t)
                    ),
                }
            if db.kind == "sqlite":
                master = conn.exec_driver_sql(
                    "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
                    " AND name NOT LIKE 'orchestrator%' AND name NOT LIKE 'alembic%'"
                )
                found["sqlite_master"] = sorted((t, n, unordered(sql)) for t, n, sql in master)
            return found
    finally:
        engine.dispose()


def fingerprint(db: Db) -> str:
    """The backend's own fingerprint of the schema (what rollback and drift detection use)."""
    engine = db.engine()
    try:
        with engine.connect() as conn, conn.begin():
            return backend_for(db.url).fingerprint(conn, ["alembic_version"])
    finally:
        engine.dispose()


def unordered(statement: str) -> tuple[str, ...]:
    """A statement's lines, stripped and sorted, a table's name unquoted. The planner writes a
    new or rebuilt table's constraints in an order that changes from process to process (the
    models' constraints are a set), so two processes may plan the same CREATE TABLE with its
    lines in another order; and SQLite quotes the name of a table it renamed (a rebuilt one),
    which the backend's fingerprint ignores too."""
    lines = (line.strip().rstrip(",").strip() for line in statement.splitlines())
    return tuple(sorted(re.sub(r'^CREATE TABLE "(\w+)"', r"CREATE TABLE \1", x) for x in lines))


def rows(db: Db) -> dict[str, list[tuple[Any, ...]]]:
    """Every user table's rows, in key order."""
    engine = db.engine()
    try:
        with engine.connect() as conn:
            md = sa.MetaData()
            md.reflect(conn, only=_user_tables(sa.inspect(conn)))
            return {
                name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
                for name, t in md.tables.items()
            }
    finally:
        engine.dispose()


def executed(source: str, function: str, db: Db) -> list[str]:
    """The statements function() of a revision executes, compiled as Alembic compiles them."""
    tree = ast.parse(source)
    [body] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    texts = [
        ast.literal_eval(node.args[0])
        for node in ast.walk(body)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "text"
    ]
    dialect = db.engine().dialect
    return [str(sa.text(t).compile(dialect=dialect)) for t in texts]


def planned_sql(ws: Workspace, db: Db, models: str) -> list[str]:
    done = cli(ws, db, "plan", "--json", models=models)
    assert done.returncode == 0, done.output
    return [s for op in done.json()["operations"] for s in op["sql"]]


def test_the_revision_applied_by_alembic_gives_our_schema_and_downgrades(
    ws: Workspace, any_db: Db, copy_db: Db
) -> None:
    at_v1(ws, any_db, copy_db)
    ws.write_models("v2", V2)
    v1_schema, v1_rows, v1_fingerprint = schema(any_db), rows(any_db), fingerprint(any_db)
    assert schema(copy_db) == v1_schema and rows(copy_db) == v1_rows
    planned = planned_sql(ws, any_db, "v2")
    assert any("%" in s for s in planned) and any(":noon" in s for s in planned)
    versions = ws.root / "migrations" / "versions"  # created by the export

    path = export(ws, any_db, versions, "v2", "-m", "Orders, regions & client links!")
    assert re.fullmatch(r"[0-9a-f]{12}_orders_regions_client_links\.py", path.name)
    assert fingerprint(any_db) == v1_fingerprint  # the export wrote nothing to the database
    source = path.read_text()
    # Exactly the statements of our run (the plan here was made by another process).
    assert [unordered(s) for s in executed(source, "upgrade", any_db)] == [
        unordered(s) for s in planned
    ]
    assert "down_revision: Union[str, Sequence[str], None] = None" in source
    assert "Orders, regions & client links!" in source
    assert "orchestrator_migrate_" not in source  # our own tables are never part of it
    assert "NotImplementedError" not in source
    if any_db.kind == "mysql":
        assert "commits every DDL statement on its own" in source
    if any_db.kind == "sqlite":
        assert "foreign-key enforcement off" in source

    command.upgrade(alembic_config(ws, versions, any_db), "head")
    ours = cli(ws, copy_db, "run", models="v2")
    assert ours.returncode == 0, ours.output
    assert schema(any_db) == schema(copy_db)
    assert rows(any_db) == rows(copy_db)
    # The old rows got the new column's default; the retired column kept its values.
    assert any_db.sql("SELECT id, name, note, region FROM clients ORDER BY id") == [
        (1, "c-one", 11, "eu:west"),
        (2, "c-two", 12, "eu:west"),
    ]
    left = cli(ws, any_db, "check", models="v2")
    assert left.returncode == 0, left.output  # our tool finds nothing left to do

    if any_db.kind != "sqlite":  # there it hashes the CREATE TABLE text (see unordered())
        assert fingerprint(any_db) == fingerprint(copy_db)

    command.downgrade(alembic_config(ws, versions, any_db), "-1")
    assert schema(any_db) == v1_schema
    assert fingerprint(any_db) == v1_fingerprint
    assert rows(any_db) == v1_rows


def test_nothing_to_export_writes_nothing(ws: Workspace) -> None:
    db = Db("sqlite", ws.url)
    at_v1(ws, db)
    versions = ws.root / "versions"
    done = cli(ws, db, "export-alembic", str(versions), models="v1")
    assert done.returncode == 0, done.output
    assert "Nothing to export" in done.stdout
    assert not versions.exists()
    as_json = cli(ws, db, "export-alembic", str(versions), "--json", models="v1")
    assert as_json.json() == {"path": None}
    assert not versions.exists()


def test_a_revision_follows_the_head_of_those_in_dir(ws: Workspace) -> None:
    db = Db("sqlite", ws.url)
    at_v1(ws, db)
    ws.write_models("v2", V2)
    versions = ws.root / "versions"
    versions.mkdir()
    (versions / "base00000001_initial.py").write_text(HAND_WRITTEN)
    (versions / "__init__.py").write_text("")  # no revision: not one of them
    first = export(ws, db, versions, "v2")
    assert first.name.endswith("_orchestrator_migrate_plan.py")
    assert (
        "down_revision: Union[str, Sequence[str], None] = 'base00000001'" not in first.read_text()
    )
    assert 'down_revision: Union[str, Sequence[str], None] = "base00000001"' in first.read_text()
    second = export(ws, db, versions, "v2", "-m", "again")
    first_id = first.name.split("_")[0]
    assert f'down_revision: Union[str, Sequence[str], None] = "{first_id}"' in second.read_text()
    script = ScriptDirectory.from_config(alembic_config(ws, versions, db))
    assert script.get_heads() == [second.name.split("_")[0]]
    assert [r.revision for r in script.walk_revisions()][-1] == "base00000001"


def test_a_dir_that_is_no_versions_directory_is_refused(ws: Workspace) -> None:
    db = Db("sqlite", ws.url)
    at_v1(ws, db)
    ws.write_models("v2", V2)
    heads = ws.root / "heads"
    heads.mkdir()
    (heads / "a_one.py").write_text(HAND_WRITTEN)
    (heads / "b_two.py").write_text(HAND_WRITTEN.replace("base00000001", "base00000002"))
    a_file = ws.root / "a_file"
    a_file.write_text("")
    environment = ws.root / "alembic"
    (environment / "versions").mkdir(parents=True)
    (environment / "env.py").write_text(ENV_PY)
    for directory, said in [
        (heads, "several heads (base00000001, base00000002)"),
        (a_file, "is not a directory"),
        (a_file / "versions", "cannot create directory"),
        (environment, f"pass its versions directory, {environment / 'versions'}"),
    ]:
        done = cli(ws, db, "export-alembic", str(directory), models="v2")
        assert done.returncode == 2, done.output
        assert str(directory) in done.stderr and said in done.stderr
    assert sorted(p.name for p in heads.iterdir()) == ["a_one.py", "b_two.py"]
    assert list((environment / "versions").iterdir()) == []


def test_a_plan_a_run_would_refuse_is_not_exported(ws: Workspace, any_db: Db) -> None:
    at_v1(ws, any_db)
    # A NOT NULL column without a default, on a table with rows.
    not_null = (
        'sa.Column("value", sa.String(50)),\n    sa.Column("size", sa.Integer, nullable=False),'
    )
    ws.write_models("v2", V1.replace('sa.Column("value", sa.String(50)),', not_null))
    versions = ws.root / "versions"
    done = cli(ws, any_db, "export-alembic", str(versions), models="v2")
    assert done.returncode == 4, done.output
    assert "export-alembic refused" in done.stderr and "tokens" in done.stderr
    assert "size" in done.stderr
    assert not versions.exists()


def test_a_step_without_an_inverse_makes_the_downgrade_raise(ws: Workspace, any_db: Db) -> None:
    at_v1(ws, any_db)
    # note dropped for good: only a backup holds its values.
    ws.write_models("v2", V1.replace('sa.Column("note", sa.Integer, nullable=False),', ""))
    versions = ws.root / "versions"
    destructive = {PREFIX + "ALLOW_DESTRUCTIVE": "true"}
    done = cli(ws, any_db, "export-alembic", str(versions), models="v2", **destructive)
    assert done.returncode == 0, done.output
    assert "raises NotImplementedError" in done.stderr and "note" in done.stderr
    [path] = versions.glob("*.py")
    source = path.read_text()
    assert "NO INVERSE" in source and "raise NotImplementedError(" in source
    config = alembic_config(ws, versions, any_db)
    command.upgrade(config, "head")
    v2_schema = schema(any_db)
    assert "note" not in [c[0] for c in v2_schema["clients"]["columns"]]
    with pytest.raises(NotImplementedError, match=r"no inverse for: .*note"):
        command.downgrade(config, "-1")
    assert schema(any_db) == v2_schema  # it raised before any statement


def test_a_renamed_column(ws: Workspace, any_db: Db, copy_db: Db) -> None:
    """The servers record a rename's inverse; on SQLite the downgrade rebuilds the table from
    its definition as it was, copying the renamed column back under its old name."""
    at_v1(ws, any_db, copy_db)
    ws.write_models(
        "v2",
        V1.replace(
            'sa.Column("value", sa.String(50))',
            'sa.Column("label", sa.String(50), info={"renamed_from": "value"})',
        ),
    )
    v1_schema, v1_rows = schema(any_db), rows(any_db)
    versions = ws.root / "versions"
    path = export(ws, any_db, versions, "v2")
    config = alembic_config(ws, versions, any_db)
    command.upgrade(config, "head")
    ok(cli(ws, copy_db, "run", models="v2"))
    assert schema(any_db) == schema(copy_db)
    assert rows(any_db) == rows(copy_db) == {**v1_rows, "tokens": [(1, "t1"), (2, "t2")]}
    assert "NotImplementedError" not in path.read_text().split("def downgrade")[1]
    command.downgrade(config, "-1")
    assert schema(any_db) == v1_schema
    assert rows(any_db) == v1_rows


ENUM_MODELS = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "tickets",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("state", sa.Enum({values}, name="ex_state"){default}),
)
"""


def test_a_new_enum_value_commits_ahead_of_the_rest_as_a_run_does(ws: Workspace, pg_url) -> None:
    """PostgreSQL lets a new enum value be used (here by a default) only once it has committed:
    the revision adds it in an autocommit block, the rest in its transaction; the downgrade
    takes it out again."""
    db = Db("postgresql", pg_url.render_as_string(hide_password=False))
    ws.write_models("v1", ENUM_MODELS.format(values='"open", "done"', default=""))
    v2 = ENUM_MODELS.format(values='"open", "done", "held"', default=', server_default="held"')
    ws.write_models("v2", v2)
    scratch = contextlib.contextmanager(_scratch_database)
    with scratch(PG_ADMIN_URL, "postgresql") as url:
        copy = Db("postgresql", url.render_as_string(hide_password=False))
        for target in (db, copy):
            ok(cli(ws, target, "run", models="v1"))
            target.sql("INSERT INTO tickets (id, state) VALUES (1, 'open')")
        v1_schema, v1_fingerprint = schema(db), fingerprint(db)
        versions = ws.root / "versions"
        source = export(ws, db, versions, "v2").read_text()
        upgrade = source.split("def upgrade")[1]
        assert "    with op.get_context().autocommit_block():\n        op.execute(" in upgrade
        assert "The first steps commit ahead of the rest" in source
        config = alembic_config(ws, versions, db)
        command.upgrade(config, "head")
        ok(cli(ws, copy, "run", models="v2"))
        assert schema(db) == schema(copy)
        assert fingerprint(db) == fingerprint(copy)
        assert rows(db) == rows(copy)
        command.downgrade(config, "-1")
        assert schema(db) == v1_schema and fingerprint(db) == v1_fingerprint


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE t ADD COLUMN c VARCHAR(9) DEFAULT 'a:b :word' NOT NULL",
        "SELECT 'x'::character varying, '\\:x', '\\: y', ':a:', 'q\\\\:w', :b",
        "ALTER TABLE t ADD CONSTRAINT ck CHECK (c LIKE 'a%%' OR c LIKE '%%:z')",
    ],
)
def test_each_statement_is_written_as_a_text_that_compiles_to_it(statement: str) -> None:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    from orchestrator_migrate.operate.alembic_export import text_source

    for dialect in (sqlite.dialect(), postgresql.psycopg.dialect(), mysql.pymysql.dialect()):
        # As a run sends it: percent signs doubled where the driver takes them so.
        doubled = dialect.paramstyle in ("format", "pyformat")
        sent = statement if doubled else statement.replace("%%", "%")
        source = text_source(sent, dialect)
        assert str(sa.text(source).compile(dialect=dialect)) == sent
        assert "%%" not in source  # written as SQL has them


def test_odd_messages_and_titles_still_make_a_valid_file() -> None:
    from datetime import UTC, datetime

    from sqlalchemy.dialects import sqlite

    from orchestrator_migrate.operate.alembic_export import Inverse, Revision, Step, render, slug

    message = 'Say """hi""" to C:\\temp\nand a second line'
    statement = "CREATE TABLE t (\n\tx VARCHAR(9) DEFAULT 'a:b \\:c \"\"\"' CHECK (x <> '\\'))"
    revision = Revision(
        revision="0123456789ab",
        down_revision="ba9876543210",
        message=message,
        created=datetime(2026, 1, 2, tzinfo=UTC),
        database="sqlite:///C:\\db.sqlite",
        kind="sqlite",
        notes=("a note\nwith a break",),
        upgrade=(Step("add check (x <> 'a'\nOR x = 'b')", (statement,)),),
        inverse=Inverse((Step("undo\n1", None),), ("undo\n1 (why)",)),
    )
    source = render(revision, sqlite.dialect())
    tree = ast.parse(source)
    assert ast.get_docstring(tree, clean=False).startswith('Say """hi""" to C:\\temp and a second')
    namespace: dict[str, Any] = {}
    exec(compile(tree, "revision.py", "exec"), namespace)  # imports alembic's op proxy only
    assert namespace["revision"] == "0123456789ab"
    assert namespace["down_revision"] == "ba9876543210"
    assert executed(source, "upgrade", Db("sqlite", "sqlite://")) == [statement]
    assert slug(message) == "say_hi_to_c_temp_and_a_second_line"
