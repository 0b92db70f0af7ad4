"""Comments and generated columns on SQLite, PostgreSQL and MariaDB: comments set, changed and
dropped where the database keeps them; Computed columns created, added to tables with rows and
converging; a redefined Computed or Identity refused with what to do, never skipped."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from orchestrator_migrate import MigrationFailed, Outcome, RefusedChange, check, migrate

pytestmark = [
    pytest.mark.usefixtures("api_env"),
    pytest.mark.filterwarnings("ignore:Computed column"),
]


def run(db, ws, md: sa.MetaData):
    return migrate(db_url=db.url, metadata=md, base_dir=str(ws.root))


def planned(db, ws, md: sa.MetaData):
    return check(db_url=db.url, metadata=md, base_dir=str(ws.root)).plan


def notes(table_comment: str | None, column_comment: str | None) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "notes",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("body", sa.String(50), nullable=False, comment=column_comment),
        comment=table_comment,
    )
    return md


def test_comments_are_set_changed_and_dropped(ws, any_db):
    run(any_db, ws, notes(None, None))
    any_db.sql("INSERT INTO notes (id, body) VALUES (1, 'kept')")
    for table_comment, column_comment in [
        ("What people wrote", "The text; it's quoted"),
        ("What people wrote, v2", None),
        (None, "Back again"),
    ]:
        md = notes(table_comment, column_comment)
        plan = planned(any_db, ws, md)
        if any_db.kind == "sqlite":  # SQLite has no comments: nothing to store, nothing to do
            assert plan.empty, plan.to_dict()
            continue
        kinds = {c.kind.value for c in plan.changes}
        assert kinds <= {"alter_comment", "alter_table_comment"}, plan.to_dict()
        assert {c.safety.value for c in plan.changes} == {"safe"}
        assert run(any_db, ws, md).outcome is Outcome.APPLIED
        assert planned(any_db, ws, md).empty, planned(any_db, ws, md).to_dict()
        assert run(any_db, ws, md).outcome is Outcome.UP_TO_DATE
        columns = any_db.columns("notes")
        assert columns["body"]["comment"] == column_comment
        assert columns["body"]["nullable"] is False  # the MODIFY kept the rest of the column
        table = any_db.inspector_call("get_table_comment", "notes")["text"]
        assert table == table_comment
    assert any_db.sql("SELECT id, body FROM notes") == [(1, "kept")]


def prices(*extra: sa.Column) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "prices",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("net", sa.Integer, nullable=False),
        sa.Column("name", sa.String(30)),
        *extra,
    )
    return md


def gross(expr: str = "net * 2", persisted: bool = True) -> sa.Column:
    return sa.Column("gross", sa.Integer, sa.Computed(expr, persisted=persisted))


def test_a_table_with_computed_columns_converges(ws, any_db):
    md = prices(
        gross("net + net * 2"),
        sa.Column("label", sa.String(30), sa.Computed("lower(name)", persisted=True)),
        sa.Column("safe_net", sa.Integer, sa.Computed("coalesce(net, 0) - 1", persisted=True)),
    )
    assert run(any_db, ws, md).outcome is Outcome.APPLIED
    assert planned(any_db, ws, md).empty, planned(any_db, ws, md).to_dict()
    assert run(any_db, ws, md).outcome is Outcome.UP_TO_DATE
    any_db.sql("INSERT INTO prices (id, net, name) VALUES (1, 10, 'TEA')")
    assert any_db.sql("SELECT gross, label, safe_net FROM prices") == [(30, "tea", 9)]


@pytest.mark.parametrize("persisted", [True, False], ids=["stored", "virtual"])
def test_a_computed_column_added_to_a_table_with_rows(ws, any_db, persisted):
    run(any_db, ws, prices())
    any_db.sql("INSERT INTO prices (id, net) VALUES (1, 10), (2, 21)")
    md = prices(gross(persisted=persisted))
    if any_db.kind == "postgresql" and not persisted:
        version = int(any_db.sql("SHOW server_version_num")[0][0])
        if version < 180000:  # before 18 PostgreSQL has no virtual columns: it says so
            with pytest.raises(MigrationFailed, match=r"add column prices\.gross.*virtual"):
                run(any_db, ws, md)
            assert "gross" not in any_db.columns("prices")
            return
    assert run(any_db, ws, md).outcome is Outcome.APPLIED
    assert planned(any_db, ws, md).empty, planned(any_db, ws, md).to_dict()
    assert any_db.sql("SELECT id, gross FROM prices ORDER BY id") == [(1, 20), (2, 42)]


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (gross, lambda: gross("net * 3"), "computed as net * 3 in the models"),
        (
            lambda: sa.Column("gross", sa.Integer),
            gross,
            "is a Computed column in the models and a plain column",
        ),
        (
            gross,
            lambda: sa.Column("gross", sa.Integer),
            "is a plain column in the models and a generated column",
        ),
    ],
    ids=["expression", "plain-to-computed", "computed-to-plain"],
)
def test_a_redefined_generated_column_is_refused_with_what_to_do(ws, any_db, old, new, says):
    run(any_db, ws, prices(old()))
    any_db.sql("INSERT INTO prices (id, net) VALUES (1, 10)")
    before = any_db.columns("prices")
    with pytest.raises(RefusedChange, match=re.escape(says)) as refused:
        run(any_db, ws, prices(new()))
    assert "prices.gross" in str(refused.value)
    assert "add a new column under another name" in str(refused.value)
    assert refused.value.exit_code == 4
    assert [c["name"] for c in any_db.columns("prices").values()] == list(before)
    assert any_db.sql("SELECT id, net FROM prices") == [(1, 10)]
    with pytest.raises(RefusedChange, match=re.escape(says)):  # check says it too
        planned(any_db, ws, prices(new()))


def test_an_identity_added_on_postgresql_is_refused(ws, pg_url):
    url = pg_url.render_as_string(hide_password=False)

    def model(identity: bool) -> sa.MetaData:
        md = sa.MetaData()
        args = [sa.Identity()] if identity else []
        sa.Table(
            "jobs",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("seq", sa.BigInteger, *args, nullable=False),
        )
        return md

    migrate(db_url=url, metadata=model(False), base_dir=str(ws.root))
    with pytest.raises(RefusedChange, match=r"jobs\.seq has an Identity in the models"):
        migrate(db_url=url, metadata=model(True), base_dir=str(ws.root))
    fresh = ws.root / "fresh"
    fresh.mkdir()
    # Created with the Identity, it converges.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE jobs")
    engine.dispose()
    assert migrate(db_url=url, metadata=model(True), base_dir=str(ws.root)).outcome is (
        Outcome.APPLIED
    )
    assert check(db_url=url, metadata=model(True), base_dir=str(ws.root)).plan.empty


def test_an_identity_column_added_on_postgresql_numbers_the_rows(ws, pg_url):
    url = pg_url.render_as_string(hide_password=False)
    base = sa.MetaData()
    sa.Table("jobs", base, sa.Column("name", sa.String(20), primary_key=True))
    migrate(db_url=url, metadata=base, base_dir=str(ws.root))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO jobs (name) VALUES ('a'), ('b')")
    numbered = sa.MetaData()
    sa.Table(
        "jobs",
        numbered,
        sa.Column("name", sa.String(20), primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
    )
    assert migrate(db_url=url, metadata=numbered, base_dir=str(ws.root)).outcome is (
        Outcome.APPLIED
    )
    assert check(db_url=url, metadata=numbered, base_dir=str(ws.root)).plan.empty
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO jobs (name) VALUES ('c')")
        seqs = conn.exec_driver_sql("SELECT name, seq FROM jobs ORDER BY seq").all()
    engine.dispose()
    assert [s for _, s in seqs] == [1, 2, 3]
