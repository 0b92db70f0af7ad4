"""rehearse: the pending plan applied to a throwaway copy (a file, or a scratch database on the
server), measured and verified, on SQLite, PostgreSQL and MariaDB; the real database is compared
before and after (every table's definition and rows, the history included), and the copy is
looked for afterwards."""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

V1 = """
import sqlalchemy as sa
md = sa.MetaData()
items = sa.Table(
    "items", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(20), nullable=False),
    sa.Column("qty", sa.Integer),
)
"""

# Every row is touched: a wider name, a BIGINT qty made NOT NULL (a table rebuild on SQLite, a
# copy on MariaDB, a rewrite on PostgreSQL), a NOT NULL column with a default, an index.
V2 = """
import sqlalchemy as sa
md = sa.MetaData()
items = sa.Table(
    "items", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("qty", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(10), nullable=False, server_default="new"),
    sa.Index("ix_items_name", "name"),
)
"""

# A new column whose default breaks a new CHECK that reads it: no pre-check counts rows for
# it, so the database itself fails the plan, on the copy.
FAILING = """
import sqlalchemy as sa
md = sa.MetaData()
items = sa.Table(
    "items", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(20), nullable=False),
    sa.Column("qty", sa.Integer),
    sa.Column("code", sa.String(10), nullable=False, server_default="x"),
    sa.CheckConstraint("length(code) > 3", name="ck_items_code"),
)
"""

ROWS = 3000
SCRATCH = re.compile(r"om_rehearsal_[0-9a-f]{12}")
PREFIX = "MCP_TASK_ORCHESTRATOR_"


class Cli:
    """The CLI against one database, with a temporary directory of its own (TMPDIR)."""

    def __init__(self, ws, db) -> None:
        self.ws, self.db = ws, db
        self.tmp = ws.root / "tmp"
        self.tmp.mkdir()
        models = {"v1": V1, "v2": V2, "failing": FAILING}
        self.refs = {name: ws.write_models(f"rehearse_{name}", src) for name, src in models.items()}

    def __call__(self, models: str, *args: str, env: dict[str, str] | None = None):
        extra = {PREFIX + "DB_URL": self.db.url, "TMPDIR": str(self.tmp), **(env or {})}
        return self.ws.cli("--models", self.refs[models], *args, env=extra)

    def migrate(self, models: str) -> None:
        done = self(models, "run")
        assert done.returncode == 0, done.output

    def fill(self, null_qty: int = 0) -> None:
        """ROWS rows; the first null_qty of them without a qty."""
        engine = self.db.engine()
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text("INSERT INTO items (name, qty) VALUES (:name, :qty)"),
                    [
                        {"name": f"item {i}", "qty": None if i < null_qty else i}
                        for i in range(ROWS)
                    ],
                )
        finally:
            engine.dispose()


@pytest.fixture
def cli(ws, any_db):
    return Cli(ws, any_db)


def _snapshot(ws, db) -> Any:
    """The whole real database: its dump on SQLite; on a server every table's columns,
    indexes, foreign keys and rows (the history's and the lock's tables included)."""
    if db.kind == "sqlite":
        return ws.dump()
    engine = db.engine()
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            found = {}
            for table in sorted(insp.get_table_names()):
                quoted = conn.dialect.identifier_preparer.quote(table)
                rows = conn.exec_driver_sql(f"SELECT * FROM {quoted}").all()
                found[table] = (
                    [
                        (c["name"], str(c["type"]), c["nullable"], c["default"])
                        for c in insp.get_columns(table)
                    ],
                    sorted(repr(i) for i in insp.get_indexes(table)),
                    sorted(repr(fk) for fk in insp.get_foreign_keys(table)),
                    sorted(repr(tuple(r)) for r in rows),
                )
            return found
    finally:
        engine.dispose()


def _left_behind(cli: Cli, stderr: str) -> list[str]:
    """The rehearsal's copies still there: scratch databases named in its log, or any file in
    its temporary directory."""
    if cli.db.kind == "sqlite":
        return [str(p) for p in cli.tmp.rglob("*")]
    return [name for name in set(SCRATCH.findall(stderr)) if _database_exists(cli.db, name)]


def _database_exists(db, name: str) -> bool:
    query = {
        "postgresql": f"SELECT datname FROM pg_database WHERE datname = '{name}'",
        "mysql": "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA"
        f" WHERE SCHEMA_NAME = '{name}'",
    }[db.kind]
    return bool(db.sql(query))


def _copied(cli: Cli, stderr: str) -> bool:
    """Whether the rehearsal made a copy (its log names it)."""
    return bool(SCRATCH.search(stderr))


def test_rehearsal_measures_a_copy_with_rows_and_leaves_the_database_unchanged(cli, ws, any_db):
    cli.migrate("v1")
    cli.fill()
    before, backups = _snapshot(ws, any_db), ws.backups()

    done = cli("v2", "rehearse", "--json")
    report = done.json()

    assert done.returncode == 0, done.output
    assert report["outcome"] == "applied" and report["exit_code"] == 0
    assert report["backend"] == any_db.kind
    assert report["database"] == make_url(any_db.url).render_as_string(hide_password=True)
    assert report["measured_ms"] > 0
    assert isinstance(report["estimate_ms"], int) and report["estimate_ms"] >= 0
    assert report["copy_ms"] is not None and report["run_ms"] >= report["measured_ms"]
    assert report["limit_ms"] == 15000 and report["fits"] is True
    assert report["estimate_fits"] is True
    assert report["verified"] is True
    assert report["refusals"] == [] and report["error"] is None
    plan = cli("v2", "plan", "--json").json()
    assert [o["description"] for o in report["operations"]] == [
        o["description"] for o in plan["operations"]
    ]
    assert report["operations"]  # one table rebuild on SQLite, one per change on a server

    assert _snapshot(ws, any_db) == before
    assert ws.backups() == backups  # the copy's run wrote no backup here
    assert _copied(cli, done.stderr) and _left_behind(cli, done.stderr) == []

    text = cli("v2", "rehearse")
    assert text.returncode == 0, text.output
    assert "Applied and verified in " in text.stdout
    assert "MIGRATION_TIMEOUT (15000ms) holds" in text.stdout
    assert _snapshot(ws, any_db) == before

    cli.migrate("v2")  # the real run is unaffected by the rehearsals
    assert set(any_db.columns("items")) == {"id", "name", "qty", "status"}
    assert any_db.sql("SELECT count(*) FROM items WHERE status = 'new'") == [(ROWS,)]


def test_nothing_pending_is_nothing_to_rehearse(cli, any_db):
    cli.migrate("v1")

    done = cli("v1", "rehearse", "--json")
    report = done.json()

    assert done.returncode == 0, done.output
    assert report["outcome"] == "up_to_date" and report["operations"] == []
    assert report["measured_ms"] is None and report["fits"] is None
    assert not _copied(cli, done.stderr) and _left_behind(cli, done.stderr) == []
    text = cli("v1", "rehearse")
    assert text.returncode == 0
    assert text.stdout.startswith("Nothing to rehearse on ")


def test_a_plan_a_start_would_refuse_exits_4_and_changes_nothing(cli, ws, any_db):
    cli.migrate("v1")
    cli.fill(null_qty=7)  # qty becomes NOT NULL, without a default: seven rows do not fit
    before = _snapshot(ws, any_db)

    done = cli("v2", "rehearse", "--json")
    report = done.json()

    assert done.returncode == 4, done.output
    assert report["outcome"] == "refused" and report["exit_code"] == 4
    (refusal,) = report["refusals"]
    assert (refusal["table"], refusal["column"], refusal["count"]) == ("items", "qty", 7)
    assert report["measured_ms"] is None and report["verified"] is False
    assert len(report["operations"]) == len(cli("v2", "plan", "--json").json()["operations"])
    assert _snapshot(ws, any_db) == before
    # The pre-checks a start runs first refuse it: no copy is needed to know.
    assert not _copied(cli, done.stderr) and _left_behind(cli, done.stderr) == []
    text = cli("v2", "rehearse")
    assert text.returncode == 4 and "A start would refuse it: " in text.stdout


def test_a_plan_that_fails_on_the_copy_exits_5_and_the_copy_is_dropped(cli, ws, any_db):
    cli.migrate("v1")
    cli.fill()
    before = _snapshot(ws, any_db)

    done = cli("failing", "rehearse", "--json")
    report = done.json()

    assert done.returncode == 5, done.output
    assert report["outcome"] == "failed_restored" and report["exit_code"] == 5
    assert "ck_items_code" in report["error"] or "CHECK" in report["error"].upper()
    assert report["verified"] is False and report["measured_ms"] is None
    assert report["copy_ms"] is not None
    assert _snapshot(ws, any_db) == before
    assert _copied(cli, done.stderr) and _left_behind(cli, done.stderr) == []


def test_over_the_migration_timeout_fits_is_false_and_exits_1(cli, ws, any_db):
    cli.migrate("v1")
    cli.fill()
    before = _snapshot(ws, any_db)

    done = cli("v2", "rehearse", "--json", env={PREFIX + "MIGRATION_TIMEOUT": "1"})
    report = done.json()

    assert done.returncode == 1, done.output
    assert report["exit_code"] == 1 and report["outcome"] == "applied"
    assert report["limit_ms"] == 1
    assert report["measured_ms"] > 1 and report["fits"] is False
    assert report["verified"] is True  # measured in full: the copy ran without the limit
    assert _snapshot(ws, any_db) == before
    assert _left_behind(cli, done.stderr) == []
    text = cli("v2", "rehearse", env={PREFIX + "MIGRATION_TIMEOUT": "1"})
    assert text.returncode == 1 and "MIGRATION_TIMEOUT (1ms) would not hold" in text.stdout


def test_ctrl_c_while_the_copy_migrates_still_drops_the_copy(cli, ws, any_db, api_env, monkeypatch):
    from orchestrator_migrate.config.settings import load_settings
    from orchestrator_migrate.operate import rehearse as rehearsal

    cli.migrate("v1")
    cli.fill()
    before = _snapshot(ws, any_db)
    monkeypatch.syspath_prepend(str(ws.models_dir))
    monkeypatch.setattr(tempfile, "tempdir", str(cli.tmp))
    seen: list[str] = []

    def interrupted(run, start, settings):
        seen.append(str(settings.db_url))
        assert _copy_exists(any_db, settings.db_url)
        raise KeyboardInterrupt

    monkeypatch.setattr(rehearsal, "_migrate_copy", interrupted)
    settings = load_settings({"db_url": any_db.url, "models": [cli.refs["v2"]]})
    with pytest.raises(KeyboardInterrupt):
        rehearsal.rehearse(settings)

    assert len(seen) == 1 and not _copy_exists(any_db, seen[0])
    assert list(cli.tmp.iterdir()) == []
    assert _snapshot(ws, any_db) == before


def _copy_exists(db, url: str) -> bool:
    copy = make_url(url)
    if db.kind == "sqlite":
        return Path(str(copy.database)).exists()
    return _database_exists(db, str(copy.database))


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_user_who_may_not_create_databases_is_told_the_privilege(ws, kind, request):
    url = make_url(request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url"))
    user = f"om_nocreate_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    grants = {
        "postgresql": [f"CREATE ROLE {user} LOGIN", f"GRANT pg_read_all_data TO {user}"],
        "mysql": [
            statement
            for host in ("%", "localhost")
            for statement in (
                f"CREATE USER '{user}'@'{host}'",
                f"GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES ON `{url.database}`.*"
                f" TO '{user}'@'{host}'",
            )
        ],
    }[kind]
    revoke = {
        "postgresql": [f"DROP OWNED BY {user}", f"DROP ROLE {user}"],
        "mysql": [f"DROP USER '{user}'@'{host}'" for host in ("%", "localhost")],
    }[kind]
    cli = Cli(ws, SimpleNamespace(url=url.render_as_string(hide_password=False)))
    try:
        cli.migrate("v1")
        with admin.connect() as conn:
            for statement in grants:
                conn.execute(sa.text(statement))
        limited = url.set(username=user, password=None).render_as_string(hide_password=False)

        done = cli("v2", "rehearse", "--json", env={PREFIX + "DB_URL": limited})
        report = done.json()

        assert done.returncode == 2, done.output
        assert report["outcome"] == "invalid" and report["exit_code"] == 2
        privilege = "CREATEDB" if kind == "postgresql" else "GRANT ALL ON `om\\_rehearsal\\_%`"
        assert privilege in report["error"] and user in report["error"]
        assert f"{url.host}:{url.port}" in report["error"]
        assert report["measured_ms"] is None
    finally:
        with admin.connect() as conn:
            for statement in revoke:
                conn.execute(sa.text(statement))
        admin.dispose()
