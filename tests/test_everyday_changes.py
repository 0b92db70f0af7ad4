"""Changes every real project makes, on SQLite, PostgreSQL and MariaDB (each test in a database of
its own): a foreign-key column on an old table, a column retired and others added later, tables
dropped together, naming conventions, server types that must converge, NOT NULL with a Python
default, a retired column's constraints, and what a refused or failed run reports."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from orchestrator_migrate import (
    ExitCode,
    Outcome,
    RefusedChange,
    check,
    history,
    migrate,
)

PREFIX = "MCP_TASK_ORCHESTRATOR_"
pytestmark = pytest.mark.usefixtures("api_env")


def run(db, ws, md: sa.MetaData, **overrides):
    return migrate(db_url=db.url, metadata=md, base_dir=str(ws.root), **overrides)


def up_to_date(db, ws, md: sa.MetaData, **overrides) -> bool:
    result = check(db_url=db.url, metadata=md, base_dir=str(ws.root), **overrides)
    return not result.migration_needed


def insert(db, md: sa.MetaData, table: str, *rows: dict) -> None:
    engine = db.engine()
    try:
        with engine.begin() as conn:
            conn.execute(md.tables[table].insert(), list(rows))
    finally:
        engine.dispose()


def select(db, md: sa.MetaData, table: str, *columns: str) -> list[tuple]:
    t = md.tables[table]
    engine = db.engine()
    try:
        with engine.connect() as conn:
            cols = [t.c[c] for c in columns] if columns else list(t.c)
            return [tuple(r) for r in conn.execute(sa.select(*cols).order_by(cols[0]))]
    finally:
        engine.dispose()


def clients_and_tokens(with_client_id: bool) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "clients",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
    )
    cols = [sa.Column("id", sa.Integer, primary_key=True), sa.Column("value", sa.String(50))]
    if with_client_id:
        cols.append(sa.Column("client_id", sa.Integer, sa.ForeignKey("clients.id")))
    sa.Table("tokens", md, *cols)
    return md


@pytest.mark.parametrize("with_rows", [True, False])
def test_a_foreign_key_column_added_to_an_old_table_is_applied(ws, any_db, with_rows):
    v1, v2 = clients_and_tokens(False), clients_and_tokens(True)
    run(any_db, ws, v1)
    if with_rows:
        insert(any_db, v1, "clients", {"id": 1, "name": "a"})
        insert(any_db, v1, "tokens", {"id": 1, "value": "t1"}, {"id": 2, "value": "t2"})
    planned = check(db_url=any_db.url, metadata=v2, base_dir=str(ws.root)).plan
    assert any("client_id" in s for s in planned.sql)
    result = run(any_db, ws, v2)
    assert result.outcome is Outcome.APPLIED
    assert up_to_date(any_db, ws, v2)
    fks = any_db.inspector_call("get_foreign_keys", "tokens")
    assert [(fk["constrained_columns"], fk["referred_table"]) for fk in fks] == [
        (["client_id"], "clients")
    ]
    if with_rows:
        assert select(any_db, v2, "tokens") == [(1, "t1", None), (2, "t2", None)]
    insert(
        any_db, v2, "tokens", {"id": 3, "value": "t3", "client_id": 1} if with_rows else {"id": 3}
    )


def test_a_new_foreign_key_column_starts_empty_and_is_enforced(ws, any_db):
    # A new column starts NULL everywhere: no row can be an orphan, so nothing is refused, and
    # the foreign key holds for the rows written afterwards.
    v1, v2 = clients_and_tokens(False), clients_and_tokens(True)
    run(any_db, ws, v1)
    insert(any_db, v1, "tokens", {"id": 1, "value": "t1"})
    run(any_db, ws, v2)
    if any_db.kind == "sqlite":  # enforced where a connection turns foreign keys on
        insert(any_db, v2, "tokens", {"id": 2, "value": "t2", "client_id": 999})
        assert any_db.sql("PRAGMA foreign_key_check(tokens)") == [("tokens", 2, "clients", 0)]
        return
    with pytest.raises(sa.exc.IntegrityError):
        insert(any_db, v2, "tokens", {"id": 2, "value": "t2", "client_id": 999})


def test_a_foreign_key_column_added_with_a_default_that_matches_nothing_is_refused(ws, any_db):
    v1 = clients_and_tokens(False)
    v2 = clients_and_tokens(False)
    v2.tables["tokens"].append_column(
        sa.Column(
            "client_id", sa.Integer, sa.ForeignKey("clients.id"), nullable=False, server_default="7"
        )
    )
    run(any_db, ws, v1)
    insert(any_db, v1, "clients", {"id": 1, "name": "a"})
    insert(any_db, v1, "tokens", {"id": 1, "value": "t1"}, {"id": 2, "value": "t2"})
    with pytest.raises(RefusedChange, match=r"tokens \(client_id\) -> clients: 2 rows") as refused:
        run(any_db, ws, v2)
    assert refused.value.refusals[0].count == 2
    assert "client_id" not in any_db.columns("tokens")


def users(*extra: sa.Column) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "users",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
        *extra,
    )
    return md


def test_a_column_retired_by_an_earlier_run_is_no_rename_candidate(ws, any_db):
    v1 = users(sa.Column("auth_state", sa.Text), sa.Column("seen", sa.DateTime))
    v2 = users(sa.Column("seen", sa.DateTime))
    v3 = users(sa.Column("seen", sa.DateTime), sa.Column("user_info", sa.Text))
    v4 = users(
        sa.Column("seen", sa.DateTime),
        sa.Column("user_info", sa.Text),
        sa.Column("last_login", sa.DateTime),
    )
    run(any_db, ws, v1)
    insert(any_db, v1, "users", {"id": 1, "name": "ann", "auth_state": "x"})
    assert run(any_db, ws, v2).outcome is Outcome.APPLIED or up_to_date(any_db, ws, v2)
    assert "auth_state" in any_db.columns("users")  # retired, kept
    assert run(any_db, ws, v3).outcome is Outcome.APPLIED
    # On SQLite DATETIME and TEXT share a storage family; auth_state is long retired.
    assert run(any_db, ws, v4).outcome is Outcome.APPLIED
    assert {"auth_state", "seen", "user_info", "last_login"} <= set(any_db.columns("users"))
    assert any_db.sql("SELECT auth_state FROM users") == [("x",)]
    assert up_to_date(any_db, ws, v4)


def test_a_column_dropped_and_one_of_its_type_added_in_one_release_is_still_asked_about(ws, any_db):
    run(any_db, ws, users(sa.Column("auth_state", sa.Text)))
    with pytest.raises(RefusedChange, match="renamed_from"):
        run(any_db, ws, users(sa.Column("user_info", sa.Text)))


def parent_child(with_pair: bool) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table("keep", md, sa.Column("id", sa.Integer, primary_key=True))
    if with_pair:
        # Names chosen so that alphabetical and hash orders do not happen to be FK order.
        sa.Table("a_parent", md, sa.Column("id", sa.Integer, primary_key=True))
        sa.Table(
            "z_child",
            md,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("parent_id", sa.Integer, sa.ForeignKey("a_parent.id")),
        )
        sa.Table(
            "b_grandchild",
            md,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("child_id", sa.Integer, sa.ForeignKey("z_child.id")),
        )
    return md


def test_tables_gone_together_are_dropped_children_first_on_the_contract_step(ws, any_db):
    v1, v2 = parent_child(True), parent_child(False)
    run(any_db, ws, v1)
    insert(any_db, v1, "a_parent", {"id": 1})
    insert(any_db, v1, "z_child", {"id": 1, "parent_id": 1})
    insert(any_db, v1, "b_grandchild", {"id": 1, "child_id": 1})
    retired = run(any_db, ws, v2)
    assert retired.outcome is Outcome.UP_TO_DATE  # kept: nothing to apply
    assert {"a_parent", "z_child", "b_grandchild"} <= any_db.tables()
    planned = check(db_url=any_db.url, metadata=v2, base_dir=str(ws.root), allow_destructive=True)
    drops = [op.table for op in planned.plan.operations]
    assert drops == ["b_grandchild", "z_child", "a_parent"]
    result = run(any_db, ws, v2, allow_destructive=True)
    assert result.outcome is Outcome.APPLIED
    assert any_db.tables() == {"keep"}
    assert up_to_date(any_db, ws, v2, allow_destructive=True)


def roles(*extra: sa.Column) -> sa.MetaData:
    md = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    sa.Table("groups", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "roles",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), unique=True),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id")),
        *extra,
    )
    return md


def test_a_rebuild_keeps_the_names_of_the_naming_convention(ws, any_db):
    v1 = roles(sa.Column("level", sa.String(20)))
    # Integer from text: a rebuild on SQLite, an ALTER on the servers.
    v2 = roles(
        sa.Column("level", sa.Integer),
        sa.Column("note", sa.Text, nullable=False, server_default="-"),
    )
    run(any_db, ws, v1)
    insert(any_db, v1, "groups", {"id": 1})
    insert(any_db, v1, "roles", {"id": 1, "name": "admin", "group_id": 1, "level": "3"})
    assert run(any_db, ws, v2).outcome is Outcome.APPLIED
    assert up_to_date(any_db, ws, v2)
    uniques = any_db.inspector_call("get_unique_constraints", "roles")
    names = {u["name"] for u in uniques}
    indexes = {i["name"] for i in any_db.inspector_call("get_indexes", "roles") if i.get("unique")}
    assert "uq_roles_name" in names | indexes
    assert select(any_db, v2, "roles", "id", "name", "level") == [(1, "admin", 3)]


def server_types(with_extra: bool) -> sa.MetaData:
    md = sa.MetaData()
    cols = [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("doc", sa.JSON),
        sa.Column("price", sa.Numeric(12, 2)),
        sa.Column("ref", sa.Uuid),
        sa.Column("flag", sa.Boolean),
        sa.Column("amount", sa.Float),
        sa.Column("born", sa.Date),
        sa.Column("at", sa.DateTime),
        sa.Column("big", sa.BigInteger),
        sa.Column("body", sa.Text),
        sa.Column("raw", sa.LargeBinary),
    ]
    if with_extra:
        cols.append(sa.Column("extra", sa.JSON))
    sa.Table("things", md, *cols)
    return md


def test_json_numeric_uuid_and_the_other_generic_types_converge(ws, any_db):
    md = server_types(False)
    assert run(any_db, ws, md).outcome is Outcome.APPLIED
    assert up_to_date(any_db, ws, md)
    assert run(any_db, ws, md).outcome is Outcome.UP_TO_DATE
    ref = uuid.uuid4()
    insert(
        any_db, md, "things", {"id": 1, "doc": {"a": [1, 2]}, "price": Decimal("12.34"), "ref": ref}
    )
    # A change elsewhere on the table: the unchanged columns stay as they are.
    v2 = server_types(True)
    assert run(any_db, ws, v2).outcome is Outcome.APPLIED
    assert up_to_date(any_db, ws, v2)
    assert select(any_db, v2, "things", "id", "doc", "price", "ref") == [
        (1, {"a": [1, 2]}, Decimal("12.34"), ref)
    ]


def flags(*extra: sa.Column) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "flags",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(20)),
        *extra,
    )
    return md


def cli_on_flags(ws, db, module: str, column: str):
    """The CLI with --json, migrating to flags(id, name, <column source>) in a models module."""
    ref = ws.write_models(
        module,
        "import sqlalchemy as sa\nmd = sa.MetaData()\n"
        "sa.Table('flags', md, sa.Column('id', sa.Integer, primary_key=True),"
        f" sa.Column('name', sa.String(20)), {column})\n",
    )
    return ws.cli("--json", "--models", ref, env={PREFIX + "DB_URL": db.url})


def test_a_not_null_column_with_a_python_default_fills_the_existing_rows(ws, any_db):
    v1 = flags()
    v2 = flags(
        sa.Column("active", sa.Boolean, default=False, nullable=False),
        sa.Column("level", sa.Integer, default=7, nullable=False),
        sa.Column("kind", sa.String(10), default="plain", nullable=False),
    )
    run(any_db, ws, v1)
    insert(any_db, v1, "flags", {"id": 1, "name": "a"}, {"id": 2, "name": "b"})
    planned = check(db_url=any_db.url, metadata=v2, base_dir=str(ws.root)).plan
    described = " ".join(op.description for op in planned.operations)
    assert "fill 2 rows of flags.active with False" in described
    assert "fill 2 rows of flags.level with 7" in described
    result = run(any_db, ws, v2)
    assert result.outcome is Outcome.APPLIED
    assert select(any_db, v2, "flags", "id", "active", "level", "kind") == [
        (1, False, 7, "plain"),
        (2, False, 7, "plain"),
    ]
    recorded = history(db_url=any_db.url, base_dir=str(ws.root))[0]
    assert "fill 2 rows of flags.kind with 'plain'" in json.dumps(recorded.operations)
    assert up_to_date(any_db, ws, v2)
    # The model, not the database, supplies the value for new rows: NOT NULL holds.
    insert(any_db, v2, "flags", {"id": 3, "name": "c"})
    with pytest.raises((sa.exc.IntegrityError, sa.exc.OperationalError)):
        any_db.sql("INSERT INTO flags (id, name) VALUES (4, 'd')")


def test_a_server_default_wins_over_a_python_default(ws, any_db):
    v1 = flags()
    v2 = flags(sa.Column("level", sa.Integer, default=7, server_default="5", nullable=False))
    run(any_db, ws, v1)
    insert(any_db, v1, "flags", {"id": 1, "name": "a"})
    run(any_db, ws, v2)
    assert select(any_db, v2, "flags", "id", "level") == [(1, 5)]


def test_a_not_null_column_with_a_callable_default_is_still_refused(ws, any_db):
    v1 = flags()
    v2 = flags(sa.Column("token", sa.String(40), default=lambda: uuid.uuid4().hex, nullable=False))
    run(any_db, ws, v1)
    insert(any_db, v1, "flags", {"id": 1, "name": "a"})
    with pytest.raises(RefusedChange, match=r"flags\.token") as refused:
        run(any_db, ws, v2)
    assert "backfill" in str(refused.value)
    assert "token" not in any_db.columns("flags")


def test_a_retired_column_keeps_its_foreign_key(ws, any_db):
    v1 = clients_and_tokens(True)
    v2 = clients_and_tokens(False)
    run(any_db, ws, v1)
    insert(any_db, v1, "clients", {"id": 1, "name": "a"})
    insert(any_db, v1, "tokens", {"id": 1, "value": "t", "client_id": 1})
    run(any_db, ws, v2)
    assert "client_id" in any_db.columns("tokens")
    fks = any_db.inspector_call("get_foreign_keys", "tokens")
    assert [fk["constrained_columns"] for fk in fks] == [["client_id"]]
    assert up_to_date(any_db, ws, v2)
    if any_db.kind == "sqlite":
        return  # SQLite checks foreign keys only where a connection turns them on
    with pytest.raises(sa.exc.IntegrityError):
        any_db.sql("INSERT INTO tokens (id, value, client_id) VALUES (2, 'u', 999)")
    # The contract step drops the column and its constraint together.
    run(any_db, ws, v2, allow_destructive=True)
    assert "client_id" not in any_db.columns("tokens")


def test_a_refused_run_reports_its_outcome_plan_and_details_in_json(ws, any_db):
    v1 = flags(sa.Column("note", sa.String(20)))
    run(any_db, ws, v1)
    insert(
        any_db,
        v1,
        "flags",
        {"id": 1, "name": "a", "note": None},
        {"id": 2, "name": "b", "note": "x"},
    )
    out = cli_on_flags(ws, any_db, "flags_v2", "sa.Column('note', sa.String(20), nullable=False)")
    assert out.returncode == ExitCode.REFUSED, out.output
    doc = out.json()
    assert doc["outcome"] == "refused" and doc["success"] is False
    assert doc["exit_code"] == 4
    assert doc["plan"]["operations"], doc
    [refusal] = doc["refusals"]
    assert refusal["table"] == "flags" and refusal["column"] == "note"
    assert refusal["count"] == 1 and refusal["sample_keys"] == [1]


def test_a_failure_before_any_ddl_is_exit_5_with_the_failed_plan_in_json(ws, any_db):
    md = flags(sa.Column("note", sa.String(20)))
    run(any_db, ws, md)
    insert(any_db, md, "flags", {"id": 1, "name": "a", "note": "soon"})
    out = cli_on_flags(ws, any_db, "flags_int", "sa.Column('note', sa.Integer)")
    if any_db.kind == "sqlite":
        # SQLite stores 'soon' in an INTEGER column: a rebuild that keeps every value.
        assert out.returncode == 0, out.output
        return
    assert out.returncode == ExitCode.FAILED_RESTORED, out.output
    doc = out.json()
    assert doc["outcome"] == "failed_restored" and doc["exit_code"] == 5
    assert [op["kind"] for op in doc["plan"]["operations"]] == ["alter_type"]
    assert (
        "soon" in doc["error_message"]
        or "Incorrect" in doc["error_message"]
        or "invalid" in doc["error_message"]
    )
    assert select(any_db, md, "flags", "id", "note") == [(1, "soon")]


def test_a_failed_api_run_carries_its_outcome(ws, any_db):
    md = flags(sa.Column("note", sa.String(20)))
    run(any_db, ws, md)
    insert(
        any_db,
        md,
        "flags",
        {"id": 1, "name": "a", "note": "x"},
        {"id": 2, "name": "b", "note": "x"},
    )
    v2 = flags(sa.Column("note", sa.String(20), unique=True))
    with pytest.raises(RefusedChange) as refused:
        run(any_db, ws, v2)
    assert refused.value.outcome is Outcome.REFUSED
    assert refused.value.refusals[0].table == "flags"
    assert refused.value.refusals[0].count == 2


def test_plan_shows_the_refusal_a_run_would_meet_and_writes_nothing(ws, any_db):
    v1 = flags(sa.Column("note", sa.String(20)))
    run(any_db, ws, v1)
    insert(
        any_db,
        v1,
        "flags",
        {"id": 1, "name": "a", "note": None},
        {"id": 2, "name": "b", "note": None},
    )
    v2 = flags(sa.Column("note", sa.String(20), nullable=False))
    planned = check(db_url=any_db.url, metadata=v2, base_dir=str(ws.root))
    [refusal] = planned.refusals
    assert (refusal.table, refusal.column, refusal.count, refusal.sample_keys) == (
        "flags",
        "note",
        2,
        [1, 2],
    )
    with pytest.raises(RefusedChange) as refused:
        run(any_db, ws, v2)
    assert refused.value.refusals == planned.refusals
    assert any_db.columns("flags")["note"]["nullable"] is True


def test_the_sql_a_run_executes_is_the_sql_its_plan_showed(ws, any_db):
    v1 = clients_and_tokens(False)
    v2 = clients_and_tokens(True)
    v2.tables["tokens"].append_column(sa.Column("active", sa.Boolean, default=True, nullable=False))
    run(any_db, ws, v1)
    insert(any_db, v1, "clients", {"id": 1, "name": "a"})
    insert(any_db, v1, "tokens", {"id": 1, "value": "t1"})
    planned = check(db_url=any_db.url, metadata=v2, base_dir=str(ws.root)).plan
    result = run(any_db, ws, v2)
    assert result.plan.sql == planned.sql
    assert history(db_url=any_db.url, base_dir=str(ws.root))[0].sql == planned.sql
    assert select(any_db, v2, "tokens", "id", "active") == [(1, True)]


def test_models_the_database_cannot_express_fail_with_exit_5_and_change_nothing(ws, any_db):
    run(any_db, ws, flags())
    out = cli_on_flags(ws, any_db, "flags_array", "sa.Column('tags', sa.ARRAY(sa.Integer))")
    if any_db.kind == "postgresql":  # PostgreSQL has arrays
        assert out.returncode == 0, out.output
        return
    assert out.returncode == ExitCode.FAILED_RESTORED, out.output
    doc = out.json()
    assert doc["outcome"] == "failed_restored"
    assert "before changing anything" in doc["error_message"]
    assert "ARRAY" in doc["error_message"]
    assert "tags" not in any_db.columns("flags")


def test_a_column_added_with_index_or_unique_gets_each_once(ws, any_db):
    v1 = users()
    v2 = users(
        sa.Column("code", sa.String(20), index=True),
        sa.Column("handle", sa.String(20), unique=True),
    )
    run(any_db, ws, v1)
    insert(any_db, v1, "users", {"id": 1, "name": "ann"}, {"id": 2, "name": "bob"})
    assert run(any_db, ws, v2).outcome is Outcome.APPLIED
    assert up_to_date(any_db, ws, v2)
    indexes = any_db.inspector_call("get_indexes", "users")
    uniques = any_db.inspector_call("get_unique_constraints", "users")
    on_code = [i for i in indexes if i["column_names"] == ["code"]]
    on_handle = [i for i in indexes if i["column_names"] == ["handle"] and i.get("unique")]
    on_handle += [u for u in uniques if u["column_names"] == ["handle"]]
    assert len(on_code) == 1 and len({i["name"] for i in on_handle}) == 1, (indexes, uniques)


def test_an_enum_column_added_to_an_old_table_creates_its_type_once(ws, any_db):
    colour = sa.Enum("red", "green", name="colour")
    v1 = users()
    v2 = users(sa.Column("colour", colour))
    sa.Table(
        "paints", v2, sa.Column("id", sa.Integer, primary_key=True), sa.Column("colour", colour)
    )
    run(any_db, ws, v1)
    insert(any_db, v1, "users", {"id": 1, "name": "ann"})
    assert run(any_db, ws, v2).outcome is Outcome.APPLIED
    assert up_to_date(any_db, ws, v2)
    insert(any_db, v2, "users", {"id": 2, "name": "bob", "colour": "green"})
    insert(any_db, v2, "paints", {"id": 1, "colour": "red"})
    assert select(any_db, v2, "users", "id", "colour") == [(1, None), (2, "green")]


def widened(big: bool) -> sa.MetaData:
    key = sa.BigInteger().with_variant(sa.Integer(), "sqlite") if big else sa.Integer()
    md = sa.MetaData()
    sa.Table(
        "issues", md, sa.Column("id", key, primary_key=True), sa.Column("title", sa.String(50))
    )
    sa.Table(
        "comments",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "issue_id",
            sa.BigInteger if big else sa.Integer,
            sa.ForeignKey("issues.id", ondelete="CASCADE"),
        ),
    )
    if big:
        sa.Table(
            "links",
            md,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("issue_id", sa.BigInteger, sa.ForeignKey("issues.id")),
        )
    return md


def test_a_primary_key_widened_with_the_foreign_keys_that_use_it(ws, any_db):
    v1, v2 = widened(False), widened(True)
    run(any_db, ws, v1)
    insert(any_db, v1, "issues", {"id": 1, "title": "a"})
    insert(any_db, v1, "comments", {"id": 1, "issue_id": 1})
    assert run(any_db, ws, v2).outcome is Outcome.APPLIED
    assert up_to_date(any_db, ws, v2)
    fks = any_db.inspector_call("get_foreign_keys", "comments")
    assert [(fk["referred_table"], (fk.get("options") or {}).get("ondelete")) for fk in fks] == [
        ("issues", "CASCADE")
    ]
    insert(any_db, v2, "issues", {"id": 2**40, "title": "big"})
    insert(any_db, v2, "links", {"id": 1, "issue_id": 2**40})
    assert select(any_db, v2, "comments") == [(1, 1)]


def test_a_text_column_dropped_beside_a_new_date_column_is_no_rename(ws, any_db):
    run(any_db, ws, users(sa.Column("display_name", sa.String(50))))
    insert(
        any_db,
        users(sa.Column("display_name", sa.String(50))),
        "users",
        {"id": 1, "name": "a", "display_name": "A"},
    )
    v2 = users(sa.Column("last_seen_at", sa.DateTime))
    assert run(any_db, ws, v2).outcome is Outcome.APPLIED
    assert any_db.sql("SELECT display_name FROM users") == [("A",)]


def test_a_likely_rename_is_asked_about_the_same_pair_every_time(ws, any_db):
    run(any_db, ws, users(sa.Column("b_old", sa.Text), sa.Column("a_old", sa.Text)))
    for _ in range(2):
        with pytest.raises(RefusedChange, match=r"users\.a_old is gone .* users\.fresh"):
            run(any_db, ws, users(sa.Column("fresh", sa.Text)))
