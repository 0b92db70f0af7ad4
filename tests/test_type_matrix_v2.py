"""The type matrix, v1 then v2, on SQLite, PostgreSQL and MariaDB, with rows in every table.
v1 converges on the first run. v2 changes and drops defaults, adds an enum value and removes one,
widens a VARCHAR and narrows another, adds and drops CHECKs (named and unnamed), re-keys a table,
changes comments: it keeps every row, converges, and is undone by SQL back to v1 (the pieces only
a backup can undo are refused, each on its own). Over rows it does not fit, v2 is refused with the
count and the database is left as it was."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa
from test_type_matrix import DIALECT, GENERIC

from orchestrator_migrate import Outcome, RefusedChange, check, migrate
from orchestrator_migrate.api import rollback

pytestmark = pytest.mark.usefixtures("api_env")

V1_STATES = ("draft", "open", "done")
V2_STATES = ("draft", "open", "closed")  # closed added, done removed


def model(kind: str, v2: bool = False, states=None, unnamed=None) -> sa.MetaData:
    """matrix (every type, a default of each kind, named and unnamed CHECKs, a native enum,
    comments, a composite unique, a partial index) and links, keyed on (id), in v2 (id, other_col).
    states and unnamed (the unnamed CHECKs' SQL) override the version's."""
    md = sa.MetaData()
    types = {name: type_.copy() for name, type_ in {**GENERIC, **DIALECT[kind]}.items()}
    matrix = sa.Table(
        "matrix",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(name, type_) for name, type_ in types.items()),
        sa.Column("state", sa.Enum(*(states or (V2_STATES if v2 else V1_STATES)), name="tm2_st")),
        sa.Column("wide", sa.String(60 if v2 else 20), comment=f"wide {'v2' if v2 else 'v1'}"),
        sa.Column("narrow", sa.String(30 if v2 else 80)),
        sa.Column("qty", sa.Integer, server_default="5" if v2 else "3"),
        sa.Column("label", sa.String(20), server_default=None if v2 else "new"),
        sa.Column("active", sa.Boolean, server_default=sa.true() if v2 else sa.false()),
        sa.Column("created", sa.DateTime, server_default=None if v2 else sa.func.now()),
        sa.Column("rank", sa.Integer, server_default=sa.text("10" if v2 else "0")),
        sa.Column("note", sa.String(40), server_default="hello" if v2 else None),
        sa.UniqueConstraint("name", "integer", name="uq_matrix_name_integer"),
        comment=f"the type matrix, {'v2' if v2 else 'v1'}",
    )
    c = matrix.c
    # Named CHECKs as expressions, unnamed ones as SQL text; the tests at the end cover two text
    # CHECKs through a SQLite rebuild and an unnamed expression CHECK on every database.
    named = (c.qty <= 100, "ck_matrix_qty_max") if v2 else (c.qty >= 0, "ck_matrix_qty_min")
    matrix.append_constraint(sa.CheckConstraint(named[0], name=named[1]))
    for text in unnamed if unnamed is not None else ["rank >= 0" if v2 else "rank < 1000"]:
        matrix.append_constraint(sa.CheckConstraint(text))
    sa.Index("ix_matrix_rank", c.rank, postgresql_where=c.qty > 0, sqlite_where=c.qty > 0)
    sa.Table(
        "links",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("other_col", sa.Integer, primary_key=v2, nullable=not v2, autoincrement=False),
        sa.Column("payload", sa.String(20)),
        *([sa.UniqueConstraint("payload", name="uq_links_payload")] if v2 else []),
    )
    return md


# v2 without the pieces that rollback by SQL refuses on that database (asserted separately).
ROLLBACK_V2 = {
    "sqlite": {},
    "postgresql": {},  # the enum value added is undone (the removed one is kept)
    "mysql": {},
}
FIRST = {"id": 1, "name": "one", "integer": 1, "span": datetime.timedelta(hours=2), "doc": {"a": 1}}
FIRST |= {"flag": True, "state": "draft", "wide": "w" * 20, "narrow": "n" * 30, "qty": 7, "rank": 1}
SECOND = {"id": 2, "name": "two", "integer": 2, "state": "open", "wide": "x", "narrow": "y"}
SEEDED = [
    (1, "one", "draft", "w" * 20, "n" * 30, 7, "new", 1),
    (2, "two", "open", "x", "y", 3, "new", 0),  # v1's defaults
]
LINKS = [(1, 10, "a"), (2, 20, "b")]


class Scene:
    """One database, its settings, and the few reads the tests compare."""

    def __init__(self, db, ws) -> None:
        self.db, self.kw = db, {"db_url": db.url, "base_dir": str(ws.root)}

    def run(self, md: sa.MetaData, **kw):
        return migrate(metadata=md, **self.kw, **kw)

    def plan(self, md: sa.MetaData):
        return check(metadata=md, **self.kw).plan

    def rollback(self, **kw):
        return rollback(**self.kw, **kw)

    def start(self) -> sa.MetaData:
        """v1 applied, with rows in every table."""
        v1 = model(self.db.kind)
        assert self.run(v1).outcome is Outcome.APPLIED
        self.insert(v1, FIRST, SECOND)
        self.db.sql("INSERT INTO links (id, other_col, payload) VALUES (1, 10, 'a'), (2, 20, 'b')")
        assert self.rows() == (SEEDED, LINKS)
        return v1

    def insert(self, md: sa.MetaData, *rows: dict) -> None:
        engine = self.db.engine()
        try:
            with engine.begin() as conn:
                for row in rows:  # one at a time: each row leaves other columns to their defaults
                    conn.execute(md.tables["matrix"].insert(), row)
        finally:
            engine.dispose()

    def rows(self):
        return (
            self.db.sql(
                "SELECT id, name, state, wide, narrow, qty, label, rank FROM matrix ORDER BY id"
            ),
            self.db.sql("SELECT id, other_col, payload FROM links ORDER BY id"),
        )

    def defaults_of(self, md: sa.MetaData, row_id: int) -> tuple:
        t = md.tables["matrix"]
        query = sa.select(t.c.qty, t.c.label, t.c.active, t.c.created, t.c.rank, t.c.note)
        engine = self.db.engine()
        try:
            with engine.connect() as conn:
                return tuple(conn.execute(query.where(t.c.id == row_id)).one())
        finally:
            engine.dispose()

    def key(self) -> list[str]:
        return self.db.inspector_call("get_pk_constraint", "links")["constrained_columns"]

    def shape(self) -> tuple:
        """VARCHAR lengths and comments, where the database keeps them (not SQLite)."""
        if self.db.kind == "sqlite":
            return ()
        columns = self.db.columns("matrix")
        table = self.db.inspector_call("get_table_comment", "matrix")["text"]
        return (
            columns["wide"]["type"].length,
            columns["narrow"]["type"].length,
            columns["wide"]["comment"],
            table,
        )

    def enum_labels(self) -> list[str]:
        if self.db.kind == "postgresql":
            query = (
                "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
                " WHERE t.typname = 'tm2_st' ORDER BY e.enumsortorder"
            )
        else:
            query = (
                "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
                " AND TABLE_NAME = 'matrix' AND COLUMN_NAME = 'state'"
            )
        return [r[0] for r in self.db.sql(query)]


V1_SHAPE = (20, 80, "wide v1", "the type matrix, v1")
V2_SHAPE = (60, 30, "wide v2", "the type matrix, v2")


def test_v1_converges_on_the_first_run(ws, any_db):
    s = Scene(any_db, ws)
    v1 = s.start()
    left = s.plan(v1)
    assert left.empty and not left.retained, left.to_dict()
    again = s.run(v1)
    assert again.outcome is Outcome.UP_TO_DATE and again.backup_info is None
    assert s.shape() == (() if any_db.kind == "sqlite" else V1_SHAPE)
    assert s.key() == ["id"]
    qty, label, active, created, rank, note = s.defaults_of(v1, 2)
    assert (qty, label, active, rank, note) == (3, "new", False, 0, None) and created is not None


def test_v2_keeps_every_row_converges_and_takes_new_values(ws, any_db):
    s = Scene(any_db, ws)
    s.start()
    v2 = model(any_db.kind, v2=True)
    plan = s.plan(v2)
    kinds = {
        "alter_default",
        "add_check",
        "drop_check",
        "add_unique",
        "set_not_null",
        "alter_primary_key",
    }
    if any_db.kind != "sqlite":  # SQLite: no VARCHAR lengths, no comments, no enum type
        kinds |= {"alter_type", "alter_comment", "alter_table_comment"}
    if any_db.kind == "postgresql":
        kinds |= {"add_enum_value"}
    assert {c.kind.value for c in plan.changes} == kinds, plan.to_dict()
    # PostgreSQL keeps the removed value until the contract step (old replicas may write it).
    retiring = [("remove_enum_values", "retiring")] if any_db.kind == "postgresql" else []
    assert [(c.kind.value, c.safety.value) for c in plan.retained] == retiring
    types = {c.column: c.safety.value for c in plan.changes if c.kind.value == "alter_type"}
    if any_db.kind != "sqlite":  # narrowing is checked against the rows; MariaDB: ENUM MODIFY
        expected = {"wide": "safe", "narrow": "data-dependent"}
        assert types == expected | ({"state": "data-dependent"} if any_db.kind == "mysql" else {})

    assert s.run(v2).outcome is Outcome.APPLIED
    assert s.rows() == (SEEDED, LINKS)
    left = s.plan(v2)
    assert left.empty and [c.kind.value for c in left.retained] == [r[0] for r in retiring]
    # The new enum member, and a row that relies on every new default (dropped ones give NULL).
    s.insert(v2, {"id": 3, "state": "closed"})
    assert s.defaults_of(v2, 3) == (5, None, True, None, 10, "hello")
    if any_db.kind == "postgresql":
        assert s.enum_labels() == [*V1_STATES, "closed"]
        assert s.run(v2, allow_destructive=True).outcome is Outcome.APPLIED  # the contract step
        assert s.enum_labels() == list(V2_STATES)
        contracted = s.plan(v2)
        assert contracted.empty and not contracted.retained
    if any_db.kind == "mysql":
        assert s.enum_labels() == ["enum('draft','open','closed')"]
    if any_db.kind != "sqlite":
        with pytest.raises(sa.exc.DBAPIError):
            any_db.sql("INSERT INTO matrix (id, state) VALUES (4, 'done')")
    assert s.shape() == (() if any_db.kind == "sqlite" else V2_SHAPE)
    assert s.key() == ["id", "other_col"]
    # The CHECKs swapped: v1's are gone, v2's hold.
    any_db.sql("INSERT INTO matrix (id, qty, rank) VALUES (5, -1, 5000)")
    for bad in ("(6, 101, 1)", "(7, 1, -1)"):
        with pytest.raises(sa.exc.DBAPIError):
            any_db.sql(f"INSERT INTO matrix (id, qty, rank) VALUES {bad}")
    assert [r[0] for r in s.rows()[0]] == [1, 2, 3, 5]


def test_v2_is_rolled_back_by_sql_to_v1_with_the_rows(ws, any_db):
    s = Scene(any_db, ws)
    v1 = s.start()
    v2 = model(any_db.kind, v2=True, **ROLLBACK_V2[any_db.kind])
    assert s.run(v2).outcome is Outcome.APPLIED
    assert s.plan(v2).empty
    any_db.sql(  # written by v2, in columns the rollback keeps
        "UPDATE links SET payload = 'z' WHERE id = 2",
        "INSERT INTO links (id, other_col, payload) VALUES (3, 30, 'c')",
    )

    back = s.rollback()

    assert back.success, back.error_message
    left = s.plan(v1)
    assert left.empty and not left.retained, left.to_dict()
    assert s.rows() == (SEEDED, [(1, 10, "a"), (2, 20, "z"), (3, 30, "c")])
    assert s.key() == ["id"]
    assert s.shape() == (() if any_db.kind == "sqlite" else V1_SHAPE)
    s.insert(v1, {"id": 3})  # v1's defaults are back
    qty, label, active, _, rank, note = s.defaults_of(v1, 3)
    assert (qty, label, active, rank, note) == (3, "new", False, 0, None)


PIECES = {  # v1 plus one piece of v2
    "enum_remove": ({"states": ("draft", "open")}, "dropped data that only its backup holds"),
}


@pytest.mark.parametrize(
    ("any_db", "piece"),
    [
        ("postgresql", "enum_remove"),
    ],
    indirect=["any_db"],
)
def test_a_piece_only_the_backup_can_undo_is_refused_by_sql(ws, any_db, piece):
    s = Scene(any_db, ws)
    v1 = s.start()
    overrides, message = PIECES[piece]
    md = model(any_db.kind, **overrides)
    assert s.run(md, allow_destructive=True).outcome is Outcome.APPLIED
    with pytest.raises(RefusedChange, match=message) as refused:
        s.rollback()
    assert refused.value.exit_code == 4 and "--use-backup" in str(refused.value)
    assert s.plan(md).empty  # nothing changed
    assert s.rollback(use_backup=True).success  # the way the message names
    assert s.plan(v1).empty and s.rows() == (SEEDED, LINKS)


BAD = {  # rows v2 does not fit: SQL, the count, the refusal's text
    "check": (
        "UPDATE matrix SET qty = 500",
        2,
        r"check ck_matrix_qty_max on matrix: 2 rows violate",
    ),
    "enum": ("UPDATE matrix SET state = 'done'", 2, r"'done'.*: 2 rows hold it"),
    "null_key": (
        "INSERT INTO links (id, other_col, payload) VALUES (3, NULL, 'c'), (4, NULL, 'd')",
        2,
        r"links\.other_col part of the primary key: 2 rows hold NULL",
    ),
    "duplicate_key": (
        "INSERT INTO links (id, other_col, payload) VALUES (3, 30, 'b'), (4, 40, 'b')",
        3,
        r"links \(payload\) unique: 1 values are shared by 3 rows",
    ),
}


@pytest.mark.parametrize("bad", list(BAD))
def test_v2_over_rows_it_does_not_fit_is_refused_and_changes_nothing(ws, any_db, bad):
    s = Scene(any_db, ws)
    v1 = s.start()
    sql, count, message = BAD[bad]
    any_db.sql(sql)
    before = s.rows()
    v2 = model(any_db.kind, v2=True)
    if bad == "enum" and any_db.kind == "sqlite":  # a VARCHAR: no value to remove, rows kept
        assert s.run(v2).outcome is Outcome.APPLIED and s.rows() == before
        return
    with pytest.raises(RefusedChange, match=message) as refused:
        s.run(v2, allow_destructive=bad == "enum")  # PostgreSQL: the contract step
    assert refused.value.exit_code == 4
    assert {r.count for r in refused.value.refusals} == {count}
    left = s.plan(v1)
    assert left.empty and not left.retained, left.to_dict()
    assert s.rows() == before and s.key() == ["id"]


def small(*checks, **columns) -> sa.MetaData:
    md = sa.MetaData()
    t = sa.Table(
        "t",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", sa.Integer),
        sa.Column("b", sa.Integer),
        *(sa.Column(k, v) for k, v in columns.items()),
    )
    for make in checks:
        t.append_constraint(make(t))
    return md


@pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)
def test_two_text_checks_keep_their_names_through_a_sqlite_rebuild(ws, any_db):
    s = Scene(any_db, ws)
    a, b = (
        (lambda t: sa.CheckConstraint("a >= 0", name="ck_t_a")),
        (lambda t: sa.CheckConstraint("b >= 0", name="ck_t_b")),
    )
    assert s.run(small(a, b)).outcome is Outcome.APPLIED
    any_db.sql("INSERT INTO t (id, a, b) VALUES (1, 1, 1)")
    v2 = small(a, b, lambda t: sa.CheckConstraint("a < 10", name="ck_t_c"))
    assert s.run(v2).outcome is Outcome.APPLIED  # a rebuild of t
    checks = sorted(
        (c["name"], c["sqltext"]) for c in any_db.inspector_call("get_check_constraints", "t")
    )
    assert checks == [("ck_t_a", "a >= 0"), ("ck_t_b", "b >= 0"), ("ck_t_c", "a < 10")]


def test_an_unnamed_check_written_as_an_expression_converges(ws, any_db):
    s = Scene(any_db, ws)
    md = small(lambda t: sa.CheckConstraint(t.c.a >= 0))
    assert s.run(md).outcome is Outcome.APPLIED
    left = s.plan(md)
    assert left.empty, left.to_dict()
    with pytest.raises(sa.exc.DBAPIError):
        any_db.sql("INSERT INTO t (id, a) VALUES (1, -1)")


@pytest.mark.parametrize("any_db", ["sqlite", "mysql"], indirect=True)
def test_plan_descriptions_say_what_the_sql_does(ws, any_db):
    s = Scene(any_db, ws)
    s.run(small(flag=sa.Boolean(), state=sa.Enum("x", "y", name="st")))
    v2 = small(state=sa.Enum("x", "y", "z", name="st"))
    v2.tables["t"].append_column(sa.Column("flag", sa.Boolean, server_default=sa.true()))
    described = [c.description for c in s.plan(v2).changes]
    assert any(d.startswith("set default of t.flag to ") for d in described), described
    assert not any("object at 0x" in d for d in described), described
    assert not any("VARCHAR" in d for d in described), described
