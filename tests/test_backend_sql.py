"""The SQL each backend emits for every change kind, on SQLite, PostgreSQL and MariaDB.

Each case is a tiny v1 -> v2 model pair with rows in its tables. The test migrates to v1, seeds
the rows, asks `check` for the plan (which writes nothing) and compares its SQL with what is
correct for the backend, then migrates to v2 and checks that the run executed exactly the planned
SQL, that the rows and their values survived, and that nothing is left to do.

Expectations are written per backend: an exact statement (whitespace normalised, simple names
compared without their quotes) or a regular expression that a statement must match in full, in
order. SQLite rebuilds are long, so only their key statements are listed; elsewhere the plan must
be exactly the listed statements.
Every check runs even when an earlier one fails, so one run reports all that is wrong.

A last test checks that the other changes to a renamed table get the same pre-checks as any
change (a NOT NULL column without a default over rows is refused before anything changes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from orchestrator_migrate import (
    ChangeKind,
    MigrateError,
    Outcome,
    RefusedChange,
    check,
    history,
    migrate,
)

pytestmark = pytest.mark.usefixtures("api_env")


# --- models -------------------------------------------------------------------------------


def users(
    *extra: Any,
    name: str = "users",
    name_nullable: bool = True,
    name_info: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> sa.MetaData:
    """users(id, name, *extra columns and table arguments)."""
    md = sa.MetaData()
    sa.Table(
        name,
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=name_nullable, info=name_info or {}),
        *extra,
        info=info or {},
    )
    return md


def with_table(md: sa.MetaData, name: str, *columns: sa.Column[Any]) -> sa.MetaData:
    sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True), *columns)
    return md


def groups_and_users(with_fk: bool) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table("groups", md, sa.Column("id", sa.Integer, primary_key=True))
    fk = [sa.ForeignKey("groups.id", name="fk_users_group")] if with_fk else []
    sa.Table(
        "users",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
        sa.Column("group_id", sa.Integer, *fk),
    )
    return md


# --- expectations ---------------------------------------------------------------------------

Expected = str | re.Pattern[str]


def norm(statement: str) -> str:
    return " ".join(statement.split())


_QUOTED = re.compile(r'"([a-z_][a-z0-9_]*)"|`([a-z_][a-z0-9_]*)`')


def canon(statement: str) -> str:
    """Whitespace normalised, and simple lower-case names unquoted: `"users"` and `users` name
    the same table on every backend, so quoting is no part of the expectation."""
    return _QUOTED.sub(lambda m: m.group(1) or m.group(2), norm(statement))


def sqlite_rebuild(table: str, create_body: str, insert_columns: str, select: str) -> list[str]:
    """The key statements of a SQLite table rebuild: new table, copy, drop, rename."""
    new = f"_om_new_{table}"
    return [
        f"CREATE TABLE {new} ( {create_body} )",
        f"INSERT INTO {new} ({insert_columns}) SELECT {select} FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {new} RENAME TO {table}",
    ]


def matches(expected: Expected, statement: str) -> bool:
    if isinstance(expected, re.Pattern):
        return expected.fullmatch(statement) is not None
    return canon(expected) == statement


def assert_statements(actual: Sequence[str], expected: Sequence[Expected], exact: bool) -> None:
    """exact: the statements are exactly `expected`; else `expected` appear among them in order."""
    got = [canon(s) for s in actual]
    if exact:
        assert len(got) == len(expected) and all(
            matches(e, g) for e, g in zip(expected, got, strict=True)
        ), f"plan SQL\n  expected: {list(expected)}\n  actual:   {got}"
        return
    rest = iter(got)
    missing = [e for e in expected if not any(matches(e, g) for g in rest)]
    assert not missing, f"plan SQL lacks (in order) {missing}\n  actual: {got}"


@dataclass(frozen=True)
class Case:
    """v1 -> v2 with rows; the SQL each backend should run; what the tables hold afterwards."""

    v1: Callable[[], sa.MetaData]
    v2: Callable[[], sa.MetaData]
    kinds: Sequence[ChangeKind]
    sql: dict[str, Sequence[Expected]]
    rows: dict[str, list[dict[str, Any]]]
    after: dict[str, list[tuple[Any, ...]]]  # table of v2 -> every row, ordered by id
    # Where a backend reports the change as another kind (MariaDB: a UNIQUE is a unique index).
    kinds_on: dict[str, Sequence[ChangeKind]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    # Shown as kept by a plan without allow_destructive (which then runs no SQL).
    retained: Sequence[str] = ()
    # Raw queries (e.g. a retired column the models no longer have) and their rows.
    queries: Sequence[tuple[str, list[tuple[Any, ...]]]] = ()
    # A schema fact that must hold after the run: (what, function of the db, expected value).
    effect: tuple[str, Callable[[Any], Any], Any] | None = None
    # Backends whose plan is a rebuild: only its key statements are listed.
    partial: frozenset[str] = frozenset({"sqlite"})


def same(statements: Sequence[Expected]) -> dict[str, Sequence[Expected]]:
    return {"sqlite": statements, "postgresql": statements, "mysql": statements}


ANN_BOB = [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]
USERS_ROWS = [(1, "ann"), (2, "bob")]


def index_names(db: Any, table: str) -> set[str]:
    return {i["name"] for i in db.inspector_call("get_indexes", table)}


def unique_names(db: Any, table: str) -> set[str]:
    """Unique constraints, and unique indexes (how MariaDB reports a unique constraint)."""
    named = {u["name"] for u in db.inspector_call("get_unique_constraints", table)}
    return named | {i["name"] for i in db.inspector_call("get_indexes", table) if i.get("unique")}


def fk_names(db: Any, table: str) -> set[str]:
    return {fk["name"] for fk in db.inspector_call("get_foreign_keys", table)}


def nullable(db: Any, table: str, column: str) -> bool:
    return bool(db.columns(table)[column]["nullable"])


CASES: dict[str, Case] = {
    "add_table": Case(
        v1=users,
        v2=lambda: with_table(users(), "tags", sa.Column("label", sa.String(30), nullable=False)),
        kinds=[ChangeKind.ADD_TABLE],
        sql={
            "sqlite": [
                "CREATE TABLE tags ( id INTEGER NOT NULL,"
                " label VARCHAR(30) NOT NULL, PRIMARY KEY (id) )"
            ],
            "postgresql": [
                "CREATE TABLE tags ( id SERIAL NOT NULL,"
                " label VARCHAR(30) NOT NULL, PRIMARY KEY (id) )"
            ],
            "mysql": [
                "CREATE TABLE tags ( id INTEGER NOT NULL AUTO_INCREMENT,"
                " label VARCHAR(30) NOT NULL, PRIMARY KEY (id) )"
            ],
        },
        partial=frozenset(),
        rows={"users": ANN_BOB},
        after={"users": USERS_ROWS, "tags": []},
    ),
    "drop_table": Case(
        v1=lambda: with_table(users(), "old_logs", sa.Column("msg", sa.Text)),
        v2=users,
        kinds=[ChangeKind.DROP_TABLE],
        sql=same(["DROP TABLE old_logs"]),
        partial=frozenset(),
        overrides={"allow_destructive": True},
        retained=["table old_logs (1 rows)"],
        rows={"users": ANN_BOB, "old_logs": [{"id": 1, "msg": "x"}]},
        after={"users": USERS_ROWS},
        effect=("tables", lambda db: db.tables(), {"users"}),
    ),
    "add_column": Case(
        v1=users,
        v2=lambda: users(sa.Column("email", sa.String(100))),
        kinds=[ChangeKind.ADD_COLUMN],
        sql=same(["ALTER TABLE users ADD COLUMN email VARCHAR(100)"]),
        partial=frozenset(),
        rows={"users": ANN_BOB},
        after={"users": [(1, "ann", None), (2, "bob", None)]},
    ),
    "add_column_not_null_server_default": Case(
        v1=users,
        v2=lambda: users(sa.Column("level", sa.Integer, nullable=False, server_default="5")),
        kinds=[ChangeKind.ADD_COLUMN],
        sql={
            # SQLAlchemy writes a string server default quoted; each database casts '5' to 5.
            "sqlite": ["ALTER TABLE users ADD COLUMN level INTEGER DEFAULT '5' NOT NULL"],
            "postgresql": ["ALTER TABLE users ADD COLUMN level INTEGER DEFAULT '5' NOT NULL"],
            "mysql": ["ALTER TABLE users ADD COLUMN level INTEGER NOT NULL DEFAULT '5'"],
        },
        partial=frozenset(),
        rows={"users": ANN_BOB},
        after={"users": [(1, "ann", 5), (2, "bob", 5)]},
    ),
    "add_column_not_null_backfill": Case(
        v1=users,
        # The rolling-safe step 2: a new NOT NULL column filled from an existing one.
        v2=lambda: users(
            sa.Column("login", sa.String(50), nullable=False, info={"backfill": "name"})
        ),
        kinds=[ChangeKind.ADD_COLUMN],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), login VARCHAR(50) NOT NULL,"
                " PRIMARY KEY (id)",
                "id, name, login",
                "id, name, (name)",
            ),
            "postgresql": [
                "ALTER TABLE users ADD COLUMN login VARCHAR(50)",
                "UPDATE users SET login = (name)",
                "ALTER TABLE users ALTER COLUMN login SET NOT NULL",
            ],
            "mysql": [
                "ALTER TABLE users ADD COLUMN login VARCHAR(50)",
                "UPDATE users SET login = (name)",
                "ALTER TABLE users MODIFY login VARCHAR(50) NOT NULL",
            ],
        },
        rows={"users": ANN_BOB},
        after={"users": [(1, "ann", "ann"), (2, "bob", "bob")]},
        effect=("login nullable", lambda db: nullable(db, "users", "login"), False),
    ),
    "add_column_not_null_python_default": Case(
        v1=users,
        v2=lambda: users(sa.Column("active", sa.Boolean, nullable=False, default=True)),
        kinds=[ChangeKind.ADD_COLUMN],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), active BOOLEAN NOT NULL, PRIMARY KEY (id)",
                "id, name, active",
                "id, name, (1)",
            ),
            "postgresql": [
                "ALTER TABLE users ADD COLUMN active BOOLEAN",
                "UPDATE users SET active = (true)",
                "ALTER TABLE users ALTER COLUMN active SET NOT NULL",
            ],
            "mysql": [
                "ALTER TABLE users ADD COLUMN active BOOL",
                "UPDATE users SET active = (true)",
                "ALTER TABLE users MODIFY active BOOL NOT NULL",
            ],
        },
        rows={"users": ANN_BOB},
        after={"users": [(1, "ann", True), (2, "bob", True)]},
        effect=("active nullable", lambda db: nullable(db, "users", "active"), False),
    ),
    "drop_column": Case(
        v1=lambda: users(sa.Column("nickname", sa.String(30))),
        v2=users,
        kinds=[ChangeKind.DROP_COLUMN],
        sql={
            # SQLite rebuilds (ALTER TABLE DROP COLUMN exists only since 3.35); equivalent.
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), PRIMARY KEY (id)",
                "id, name",
                "id, name",
            ),
            "postgresql": ["ALTER TABLE users DROP COLUMN nickname"],
            "mysql": ["ALTER TABLE users DROP COLUMN nickname"],
        },
        overrides={"allow_destructive": True},
        retained=["column users.nickname (1 non-NULL values)"],
        rows={"users": [{"id": 1, "name": "ann", "nickname": "annie"}, ANN_BOB[1]]},
        after={"users": USERS_ROWS},
        effect=("columns", lambda db: set(db.columns("users")), {"id", "name"}),
    ),
    "retire_column": Case(
        # A NOT NULL column without a default, gone from the models: kept, NOT NULL relaxed.
        v1=lambda: users(sa.Column("nickname", sa.String(30), nullable=False)),
        v2=users,
        kinds=[ChangeKind.RETIRE_COLUMN],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), nickname VARCHAR(30), PRIMARY KEY (id)",
                "id, name, nickname",
                "id, name, nickname",
            ),
            "postgresql": ["ALTER TABLE users ALTER COLUMN nickname DROP NOT NULL"],
            "mysql": ["ALTER TABLE users MODIFY nickname VARCHAR(30) NULL"],
        },
        rows={
            "users": [
                {"id": 1, "name": "ann", "nickname": "annie"},
                {"id": 2, "name": "bob", "nickname": "bobby"},
            ]
        },
        after={"users": USERS_ROWS},
        queries=[("SELECT nickname FROM users ORDER BY id", [("annie",), ("bobby",)])],
        effect=("nickname nullable", lambda db: nullable(db, "users", "nickname"), True),
    ),
    "alter_type": Case(
        v1=lambda: users(sa.Column("level", sa.String(20))),
        v2=lambda: users(sa.Column("level", sa.Integer)),
        kinds=[ChangeKind.ALTER_TYPE],
        sql={
            # The copy into an INTEGER column converts '3' to 3 by type affinity (a CAST would
            # turn text that is no number into 0); equivalent for the rows here.
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), level INTEGER, PRIMARY KEY (id)",
                "id, name, level",
                "id, name, level",
            ),
            "postgresql": [
                "ALTER TABLE users ALTER COLUMN level TYPE INTEGER USING level::INTEGER"
            ],
            "mysql": ["ALTER TABLE users MODIFY level INTEGER NULL"],
        },
        rows={
            "users": [
                {"id": 1, "name": "ann", "level": "3"},
                {"id": 2, "name": "bob", "level": None},
            ]
        },
        after={"users": [(1, "ann", 3), (2, "bob", None)]},
    ),
    "set_not_null": Case(
        v1=users,
        v2=lambda: users(name_nullable=False),
        kinds=[ChangeKind.SET_NOT_NULL],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50) NOT NULL, PRIMARY KEY (id)",
                "id, name",
                "id, name",
            ),
            "postgresql": ["ALTER TABLE users ALTER COLUMN name SET NOT NULL"],
            "mysql": ["ALTER TABLE users MODIFY name VARCHAR(50) NOT NULL"],
        },
        rows={"users": ANN_BOB},
        after={"users": USERS_ROWS},
        effect=("name nullable", lambda db: nullable(db, "users", "name"), False),
    ),
    "set_not_null_backfill": Case(
        v1=users,
        v2=lambda: users(name_nullable=False, name_info={"backfill": "'anonymous'"}),
        kinds=[ChangeKind.SET_NOT_NULL],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50) NOT NULL, PRIMARY KEY (id)",
                "id, name",
                "id, COALESCE(name, ('anonymous'))",
            ),
            "postgresql": [
                "UPDATE users SET name = ('anonymous') WHERE name IS NULL",
                "ALTER TABLE users ALTER COLUMN name SET NOT NULL",
            ],
            "mysql": [
                "UPDATE users SET name = ('anonymous') WHERE name IS NULL",
                "ALTER TABLE users MODIFY name VARCHAR(50) NOT NULL",
            ],
        },
        rows={"users": [ANN_BOB[0], {"id": 2, "name": None}]},
        after={"users": [(1, "ann"), (2, "anonymous")]},
        effect=("name nullable", lambda db: nullable(db, "users", "name"), False),
    ),
    "set_not_null_keeps_the_server_default": Case(
        v1=lambda: users(sa.Column("tier", sa.String(10), server_default="free")),
        v2=lambda: users(sa.Column("tier", sa.String(10), server_default="free", nullable=False)),
        kinds=[ChangeKind.SET_NOT_NULL],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), tier VARCHAR(10) DEFAULT 'free' NOT NULL,"
                " PRIMARY KEY (id)",
                "id, name, tier",
                "id, name, tier",
            ),
            "postgresql": ["ALTER TABLE users ALTER COLUMN tier SET NOT NULL"],
            # MODIFY redefines the whole column: without restating it, the default is lost.
            "mysql": ["ALTER TABLE users MODIFY tier VARCHAR(10) NOT NULL DEFAULT 'free'"],
        },
        rows={"users": [{"id": 1, "name": "ann", "tier": "gold"}, ANN_BOB[1]]},
        after={"users": [(1, "ann", "gold"), (2, "bob", "free")]},
        effect=(
            "tier default kept",
            lambda db: "free" in str(db.columns("users")["tier"]["default"]),
            True,
        ),
    ),
    "drop_not_null": Case(
        v1=lambda: users(name_nullable=False),
        v2=users,
        kinds=[ChangeKind.DROP_NOT_NULL],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), PRIMARY KEY (id)",
                "id, name",
                "id, name",
            ),
            "postgresql": ["ALTER TABLE users ALTER COLUMN name DROP NOT NULL"],
            "mysql": ["ALTER TABLE users MODIFY name VARCHAR(50) NULL"],
        },
        rows={"users": ANN_BOB},
        after={"users": USERS_ROWS},
        effect=("name nullable", lambda db: nullable(db, "users", "name"), True),
    ),
    "add_index": Case(
        v1=users,
        v2=lambda: users(sa.Index("ix_users_name", "name")),
        kinds=[ChangeKind.ADD_INDEX],
        sql=same(["CREATE INDEX ix_users_name ON users (name)"]),
        partial=frozenset(),
        rows={"users": ANN_BOB},
        after={"users": USERS_ROWS},
        effect=("indexes", lambda db: index_names(db, "users"), {"ix_users_name"}),
    ),
    "drop_index": Case(
        v1=lambda: users(sa.Index("ix_users_name", "name")),
        v2=users,
        kinds=[ChangeKind.DROP_INDEX],
        sql={
            "sqlite": ["DROP INDEX ix_users_name"],
            "postgresql": ["DROP INDEX ix_users_name"],
            "mysql": ["DROP INDEX ix_users_name ON users"],
        },
        partial=frozenset(),
        rows={"users": ANN_BOB},
        after={"users": USERS_ROWS},
        effect=("indexes", lambda db: index_names(db, "users"), set()),
    ),
    "add_unique": Case(
        v1=users,
        v2=lambda: users(sa.UniqueConstraint("name", name="uq_users_name")),
        kinds=[ChangeKind.ADD_UNIQUE],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), PRIMARY KEY (id),"
                " CONSTRAINT uq_users_name UNIQUE (name)",
                "id, name",
                "id, name",
            ),
            "postgresql": ["ALTER TABLE users ADD CONSTRAINT uq_users_name UNIQUE (name)"],
            "mysql": ["ALTER TABLE users ADD CONSTRAINT uq_users_name UNIQUE (name)"],
        },
        rows={"users": ANN_BOB},
        after={"users": USERS_ROWS},
        effect=("unique constraints", lambda db: unique_names(db, "users"), {"uq_users_name"}),
    ),
    "drop_unique": Case(
        v1=lambda: users(sa.UniqueConstraint("name", name="uq_users_name")),
        v2=users,
        kinds=[ChangeKind.DROP_UNIQUE],
        kinds_on={"mysql": [ChangeKind.DROP_INDEX]},
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), PRIMARY KEY (id)",
                "id, name",
                "id, name",
            ),
            "postgresql": ["ALTER TABLE users DROP CONSTRAINT uq_users_name"],
            # A unique constraint is an index on MariaDB; either spelling drops it.
            "mysql": [
                re.compile(
                    r"ALTER TABLE users DROP (INDEX|KEY|CONSTRAINT) uq_users_name"
                    r"|DROP INDEX uq_users_name ON users"
                )
            ],
        },
        rows={"users": ANN_BOB},
        after={"users": USERS_ROWS},
        effect=("unique constraints", lambda db: unique_names(db, "users"), set()),
    ),
    "add_foreign_key": Case(
        v1=lambda: groups_and_users(with_fk=False),
        v2=lambda: groups_and_users(with_fk=True),
        kinds=[ChangeKind.ADD_FK],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), group_id INTEGER, PRIMARY KEY (id),"
                " CONSTRAINT fk_users_group FOREIGN KEY(group_id) REFERENCES groups (id)",
                "id, name, group_id",
                "id, name, group_id",
            ),
            "postgresql": [
                "ALTER TABLE users ADD CONSTRAINT fk_users_group"
                " FOREIGN KEY(group_id) REFERENCES groups (id)"
            ],
            "mysql": [
                "ALTER TABLE users ADD CONSTRAINT fk_users_group"
                " FOREIGN KEY(group_id) REFERENCES groups (id)"
            ],
        },
        rows={
            "groups": [{"id": 1}],
            "users": [{"id": 1, "name": "ann", "group_id": 1}, {"id": 2, "name": "bob"}],
        },
        after={"groups": [(1,)], "users": [(1, "ann", 1), (2, "bob", None)]},
        effect=("foreign keys", lambda db: fk_names(db, "users"), {"fk_users_group"}),
    ),
    "drop_foreign_key": Case(
        v1=lambda: groups_and_users(with_fk=True),
        v2=lambda: groups_and_users(with_fk=False),
        kinds=[ChangeKind.DROP_FK],
        sql={
            "sqlite": sqlite_rebuild(
                "users",
                "id INTEGER NOT NULL, name VARCHAR(50), group_id INTEGER, PRIMARY KEY (id)",
                "id, name, group_id",
                "id, name, group_id",
            ),
            "postgresql": ["ALTER TABLE users DROP CONSTRAINT fk_users_group"],
            "mysql": ["ALTER TABLE users DROP FOREIGN KEY fk_users_group"],
        },
        rows={
            "groups": [{"id": 1}],
            "users": [{"id": 1, "name": "ann", "group_id": 1}, {"id": 2, "name": "bob"}],
        },
        after={"groups": [(1,)], "users": [(1, "ann", 1), (2, "bob", None)]},
        effect=("foreign keys", lambda db: fk_names(db, "users"), set()),
    ),
    "rename_column": Case(
        v1=lambda: users(sa.Column("nick", sa.String(30))),
        v2=lambda: users(sa.Column("nickname", sa.String(30), info={"renamed_from": "nick"})),
        kinds=[ChangeKind.RENAME_COLUMN],
        sql={
            "sqlite": ["ALTER TABLE users RENAME COLUMN nick TO nickname"],
            "postgresql": ["ALTER TABLE users RENAME COLUMN nick TO nickname"],
            "mysql": ["ALTER TABLE users RENAME COLUMN nick TO nickname"],
        },
        partial=frozenset(),
        rows={
            "users": [
                {"id": 1, "name": "ann", "nick": "annie"},
                {"id": 2, "name": "bob", "nick": None},
            ]
        },
        after={"users": [(1, "ann", "annie"), (2, "bob", None)]},
        effect=("columns", lambda db: set(db.columns("users")), {"id", "name", "nickname"}),
    ),
    "rename_table": Case(
        v1=users,
        v2=lambda: users(name="members", info={"renamed_from": "users"}),
        kinds=[ChangeKind.RENAME_TABLE],
        sql=same(["ALTER TABLE users RENAME TO members"]),
        partial=frozenset(),
        rows={"users": ANN_BOB},
        after={"members": USERS_ROWS},
        effect=("tables", lambda db: db.tables(), {"members"}),
    ),
    "rename_table_with_a_new_column_and_index": Case(
        v1=users,
        v2=lambda: users(
            sa.Column("email", sa.String(100)),
            sa.Index("ix_members_name", "name"),
            name="members",
            info={"renamed_from": "users"},
        ),
        # Every change the run applies, and every statement it executes, is in the plan. The
        # table is brought to its model under its old name, then renamed (renaming first and
        # changing `members` would be as correct).
        kinds=[ChangeKind.ADD_COLUMN, ChangeKind.ADD_INDEX, ChangeKind.RENAME_TABLE],
        sql=same(
            [
                "ALTER TABLE users ADD COLUMN email VARCHAR(100)",
                "CREATE INDEX ix_members_name ON users (name)",
                "ALTER TABLE users RENAME TO members",
            ]
        ),
        partial=frozenset(),
        rows={"users": ANN_BOB},
        after={"members": [(1, "ann", None), (2, "bob", None)]},
        effect=(
            "tables and indexes",
            lambda db: (db.tables(), index_names(db, "members")),
            ({"members"}, {"ix_members_name"}),
        ),
    ),
    "rename_table_with_a_backfilled_not_null": Case(
        # On SQLite the change to the renamed table is a rebuild.
        v1=users,
        v2=lambda: users(
            name="members",
            info={"renamed_from": "users"},
            name_nullable=False,
            name_info={"backfill": "'anonymous'"},
        ),
        kinds=[ChangeKind.SET_NOT_NULL, ChangeKind.RENAME_TABLE],
        sql={
            "sqlite": [
                *sqlite_rebuild(
                    "users",
                    "id INTEGER NOT NULL, name VARCHAR(50) NOT NULL, PRIMARY KEY (id)",
                    "id, name",
                    "id, COALESCE(name, ('anonymous'))",
                ),
                "ALTER TABLE users RENAME TO members",
            ],
            "postgresql": [
                "UPDATE users SET name = ('anonymous') WHERE name IS NULL",
                "ALTER TABLE users ALTER COLUMN name SET NOT NULL",
                "ALTER TABLE users RENAME TO members",
            ],
            "mysql": [
                "UPDATE users SET name = ('anonymous') WHERE name IS NULL",
                "ALTER TABLE users MODIFY name VARCHAR(50) NOT NULL",
                "ALTER TABLE users RENAME TO members",
            ],
        },
        rows={"users": [ANN_BOB[0], {"id": 2, "name": None}]},
        after={"members": [(1, "ann"), (2, "anonymous")]},
        effect=("tables", lambda db: db.tables(), {"members"}),
    ),
}


# --- the test ------------------------------------------------------------------------------


class Problems(list[str]):
    """Failed checks, collected so that one run reports every one of them."""

    @contextmanager
    def check(self, what: str) -> Iterator[None]:
        try:
            yield
        except AssertionError as exc:
            self.append(f"{what}: {exc}")
        except Exception as exc:  # e.g. a table the run should have made is not there
            self.append(f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def insert(db: Any, md: sa.MetaData, rows: dict[str, list[dict[str, Any]]]) -> None:
    engine = db.engine()
    try:
        with engine.begin() as conn:
            for table in md.sorted_tables:
                for row in rows.get(table.name, []):
                    conn.execute(table.insert(), row)
    finally:
        engine.dispose()


def select_all(db: Any, md: sa.MetaData, table: str) -> list[tuple[Any, ...]]:
    t = md.tables[table]
    engine = db.engine()
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(t).order_by(t.c.id))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_each_change_kind_plans_the_backends_sql_and_runs_exactly_it(ws, any_db, case: Case):
    # Backups are not what this test is about (MariaDB takes one anyway).
    base = {"db_url": any_db.url, "base_dir": str(ws.root), "backup": False}
    v1, v2 = case.v1(), case.v2()
    assert migrate(metadata=v1, **base).outcome is Outcome.APPLIED
    insert(any_db, v1, case.rows)
    problems = Problems()

    # 1. The plan, written before anything runs.
    if case.retained:  # without allow_destructive: kept with its data, no SQL
        kept = check(metadata=v2, **base).plan
        with problems.check("SQL without allow_destructive"):
            assert kept.sql == []
        with problems.check("kept without allow_destructive"):
            assert kept.retained_descriptions == list(case.retained)
    planned = check(metadata=v2, **base, **case.overrides)
    plan = planned.plan
    with problems.check("check sees a migration"):
        assert planned.migration_needed, f"retained: {plan.retained_descriptions}"
    with problems.check("change kinds"):
        kinds = [c.kind.value for c in plan.changes]
        wanted = [k.value for k in case.kinds_on.get(any_db.kind, case.kinds)]
        assert kinds == wanted, f"{kinds} != {wanted}"
    with problems.check(f"{any_db.kind} SQL"):
        assert_statements(plan.sql, case.sql[any_db.kind], any_db.kind not in case.partial)

    # 2. The run: exactly the planned SQL, the rows kept, nothing left to do.
    try:
        outcome: object = migrate(metadata=v2, **base, **case.overrides).outcome
    except MigrateError as exc:
        outcome = exc
    with problems.check("outcome"):
        assert outcome is Outcome.APPLIED, repr(outcome)
    runs = history(**base)
    with problems.check("recorded runs: v1's and this one (check recorded nothing)"):
        assert len(runs) == 2, [r.outcome for r in runs]
    if outcome is Outcome.APPLIED:
        with problems.check("the run executed the planned SQL"):
            ran, shown = [norm(s) for s in runs[0].sql], [norm(s) for s in plan.sql]
            assert ran == shown, f"\n  ran:     {ran}\n  planned: {shown}"
    for table, expected_rows in case.after.items():
        with problems.check(f"rows of {table}"):
            assert select_all(any_db, v2, table) == expected_rows
    for query, expected_rows in case.queries:
        with problems.check(query):
            assert any_db.sql(query) == expected_rows
    if case.effect is not None:
        what, read, expected = case.effect
        with problems.check(what):
            assert read(any_db) == expected
    with problems.check("up to date afterwards"):
        again = check(metadata=v2, **base, **case.overrides)
        assert not again.migration_needed, f"still planned: {again.plan.sql}"

    assert not problems, "\n\n".join(problems)


def test_the_other_changes_to_a_renamed_table_are_pre_checked_like_any_change(ws, any_db):
    # A NOT NULL column without a default added to a table with rows is refused up front
    # (nothing changed); that must hold too when the table is renamed in the same release.
    base = {"db_url": any_db.url, "base_dir": str(ws.root), "backup": False}
    v1 = users()
    v2 = users(
        sa.Column("email", sa.String(100), nullable=False),
        name="members",
        info={"renamed_from": "users"},
    )
    assert migrate(metadata=v1, **base).outcome is Outcome.APPLIED
    insert(any_db, v1, {"users": ANN_BOB})
    problems = Problems()

    planned = check(metadata=v2, **base)
    with problems.check("check lists the refusal"):
        found = [(r.column, r.count) for r in planned.refusals]
        assert found == [("email", 2)], f"plan SQL: {planned.plan.sql}"
    try:
        outcome: object = migrate(metadata=v2, **base).outcome
    except MigrateError as exc:
        outcome = exc
    with problems.check("the run is refused before any change"):
        assert isinstance(outcome, RefusedChange), repr(outcome)
    with problems.check("nothing changed"):
        tables = any_db.tables()
        assert tables == {"users"}, {t: any_db.sql(f"SELECT * FROM {t}") for t in tables}
        assert select_all(any_db, v1, "users") == USERS_ROWS

    assert not problems, "\n\n".join(problems)
