"""Server defaults on SQLite, PostgreSQL and MariaDB: set, changed and dropped by a run; every
spelling a database hands back converges; a Python-side default is never one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from orchestrator_migrate import MigrationFailed, Outcome, RefusedChange, check, migrate

pytestmark = pytest.mark.usefixtures("api_env")


def tasks(**defaults) -> sa.MetaData:
    """tasks(id, status, priority, done, price, created) with the given server defaults."""
    md = sa.MetaData()
    sa.Table(
        "tasks",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(20), server_default=defaults.get("status")),
        sa.Column("priority", sa.Integer, server_default=defaults.get("priority")),
        sa.Column("done", sa.Boolean, server_default=defaults.get("done")),
        sa.Column("price", sa.Numeric(8, 2), server_default=defaults.get("price")),
        sa.Column("created", sa.DateTime, server_default=defaults.get("created")),
        sa.Column("note", sa.Text, default="python side"),  # never a server default
    )
    return md


EVERY_SPELLING = {
    "status": "open",
    "priority": "3",
    "done": sa.false(),
    "price": "1.50",
    "created": sa.func.now(),
}


def run(db, ws, md: sa.MetaData):
    return migrate(db_url=db.url, metadata=md, base_dir=str(ws.root))


def planned(db, ws, md: sa.MetaData):
    return check(db_url=db.url, metadata=md, base_dir=str(ws.root)).plan


def insert_bare(db) -> None:
    engine = db.engine()
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO tasks (id) VALUES (100)")
    finally:
        engine.dispose()


def test_every_spelling_of_a_default_converges(ws, any_db):
    md = tasks(**EVERY_SPELLING)
    assert run(any_db, ws, md).outcome is Outcome.APPLIED
    assert planned(any_db, ws, md).empty, planned(any_db, ws, md).to_dict()
    assert run(any_db, ws, md).outcome is Outcome.UP_TO_DATE


def test_defaults_set_changed_and_dropped_keep_the_rows(ws, any_db):
    v1 = tasks(status="open", priority="3")
    run(any_db, ws, v1)
    any_db.sql("INSERT INTO tasks (id, status, priority) VALUES (1, 'mine', 9)")
    v2 = tasks(status="new", done=sa.true(), created=sa.text("CURRENT_TIMESTAMP"))
    plan = planned(any_db, ws, v2)
    kinds = sorted((c.kind.value, c.column, c.safety.value) for c in plan.changes)
    assert kinds == [
        ("alter_default", "created", "safe"),
        ("alter_default", "done", "safe"),
        ("alter_default", "priority", "safe"),
        ("alter_default", "status", "safe"),
    ], plan.to_dict()
    described = " ".join(op.description for op in plan.operations)
    assert "set default of tasks.status to 'new'" in described
    assert "drop default of tasks.priority" in described
    assert run(any_db, ws, v2).outcome is Outcome.APPLIED
    assert planned(any_db, ws, v2).empty
    insert_bare(any_db)
    rows = any_db.sql("SELECT id, status, priority, done FROM tasks ORDER BY id")
    assert [r[:3] for r in rows] == [(1, "mine", 9), (100, "new", None)]
    assert bool(rows[1][3]) is True
    created = any_db.sql("SELECT created FROM tasks WHERE id = 100")
    assert created[0][0] is not None


def test_a_python_default_is_not_a_server_default(ws, any_db):
    md = tasks()
    run(any_db, ws, md)
    assert planned(any_db, ws, md).empty
    columns = any_db.columns("tasks")
    assert columns["note"]["default"] in (None, "NULL")


def colours(*values: str, native: bool = True) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "paints",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("colour", sa.Enum(*values, name="colour", native_enum=native, length=20)),
    )
    return md


def test_a_value_added_to_an_enum_is_usable_after_the_run(ws, any_db):
    v1, v2 = colours("red", "green"), colours("red", "green", "blue")
    run(any_db, ws, v1)
    any_db.sql("INSERT INTO paints (id, colour) VALUES (1, 'red')")
    plan = planned(any_db, ws, v2)
    if any_db.kind == "sqlite":
        assert plan.empty  # a VARCHAR on SQLite: any value fits
    else:
        assert [c.safety.value for c in plan.changes] == ["safe"], plan.to_dict()
        assert run(any_db, ws, v2).outcome is Outcome.APPLIED
    assert planned(any_db, ws, v2).empty
    any_db.sql("INSERT INTO paints (id, colour) VALUES (2, 'blue')")
    assert any_db.sql("SELECT id, colour FROM paints ORDER BY id") == [(1, "red"), (2, "blue")]


def test_a_value_removed_from_an_enum_is_not_safe(ws, any_db):
    v1, v2 = colours("red", "green", "blue"), colours("red", "green")
    run(any_db, ws, v1)
    plan = planned(any_db, ws, v2)
    if any_db.kind == "mysql":  # an ENUM column: MODIFY, checked against the data
        assert [c.safety.value for c in plan.changes] == ["data-dependent"], plan.to_dict()
    else:  # PostgreSQL keeps the value (rows and old replicas may use it); SQLite: a VARCHAR
        assert plan.empty, plan.to_dict()


def test_a_removed_enum_value_is_kept_until_the_contract_step_then_counted_and_removed(ws, any_db):
    v1, v2 = colours("red", "green", "blue"), colours("red", "green")
    run(any_db, ws, v1)
    any_db.sql("INSERT INTO paints (id, colour) VALUES (1, 'red'), (2, 'blue'), (3, 'blue')")
    if any_db.kind != "postgresql":
        # SQLite: a VARCHAR, nothing to remove; MariaDB: the ENUM column's MODIFY, refused
        # over the rows that hold the value (covered above).
        return
    # Without the contract step the value stays: old replicas may still write it.
    plan = planned(any_db, ws, v2)
    assert plan.empty
    assert [(c.kind.value, c.safety.value) for c in plan.retained] == [
        ("remove_enum_values", "retiring")
    ]
    assert run(any_db, ws, v2).outcome is Outcome.UP_TO_DATE
    any_db.sql("INSERT INTO paints (id, colour) VALUES (4, 'blue')")

    def contract():
        return migrate(
            db_url=any_db.url,
            metadata=colours("red", "green"),
            base_dir=str(ws.root),
            allow_destructive=True,
        )

    with pytest.raises(RefusedChange, match=r"cannot remove 'blue'.*3 rows hold it"):
        contract()
    any_db.sql("UPDATE paints SET colour = 'green' WHERE colour = 'blue'")
    assert contract().outcome is Outcome.APPLIED
    labels = any_db.sql(
        "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
        " WHERE t.typname = 'colour' ORDER BY e.enumsortorder"
    )
    assert labels == [("red",), ("green",)]
    assert planned(any_db, ws, v2).empty and not planned(any_db, ws, v2).retained
    assert any_db.sql("SELECT count(*) FROM paints WHERE colour = 'green'") == [(3,)]


def test_an_enum_type_no_column_uses_is_dropped_on_the_contract_step(ws, pg_url):
    url = pg_url.render_as_string(hide_password=False)
    md = colours("red", "green")
    migrate(db_url=url, metadata=md, base_dir=str(ws.root))
    plain = sa.MetaData()
    sa.Table("paints", plain, sa.Column("id", sa.Integer, primary_key=True))
    kw = {"db_url": url, "base_dir": str(ws.root), "allow_destructive": True}
    # Without the contract step the column and its type are kept; with it both go, the type last.
    plan = check(db_url=url, metadata=plain, base_dir=str(ws.root)).plan
    assert [c.kind.value for c in plan.retained] == ["drop_column", "drop_enum_type"]
    result = migrate(metadata=plain, **kw)
    assert result.outcome is Outcome.APPLIED
    assert [c.kind.value for c in result.plan.changes] == ["drop_column", "drop_enum_type"]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert not conn.exec_driver_sql("SELECT 1 FROM pg_type WHERE typname = 'colour'").all()
    engine.dispose()
    assert check(metadata=plain, db_url=url, base_dir=str(ws.root)).plan.empty


def test_enum_values_added_in_the_middle_keep_the_models_order(ws, any_db):
    run(any_db, ws, colours("red", "blue"))
    md = colours("red", "orange", "yellow", "blue", "violet")
    assert run(any_db, ws, md).outcome in (Outcome.APPLIED, Outcome.UP_TO_DATE)
    assert planned(any_db, ws, md).empty
    if any_db.kind == "postgresql":
        labels = any_db.sql(
            "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
            " WHERE t.typname = 'colour' ORDER BY e.enumsortorder"
        )
        assert [v for (v,) in labels] == ["red", "orange", "yellow", "blue", "violet"]


def orders(*values: str, default: str | None = None, check: str | None = None) -> sa.MetaData:
    md = sa.MetaData()
    extra = [sa.CheckConstraint(check, name="ck_orders_state")] if check else []
    sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("state", sa.Enum(*values, name="order_state"), server_default=default),
        sa.Column("returned_at", sa.DateTime),
        *extra,
    )
    return md


def test_a_new_enum_value_is_usable_in_the_same_release(ws, any_db):
    """PostgreSQL lets a value added by ALTER TYPE be used only once that transaction has
    committed: a CHECK and a default that use it in the same release still apply."""
    run(any_db, ws, orders("new", "paid"))
    any_db.sql("INSERT INTO orders (id, state) VALUES (1, 'paid')")
    md = orders(
        "new",
        "paid",
        "returned",
        default="returned",
        check="state <> 'returned' OR returned_at IS NOT NULL",
    )
    assert run(any_db, ws, md).outcome is Outcome.APPLIED
    assert planned(any_db, ws, md).empty
    any_db.sql("INSERT INTO orders (id, returned_at) VALUES (2, CURRENT_TIMESTAMP)")
    assert any_db.sql("SELECT id, state FROM orders ORDER BY id") == [(1, "paid"), (2, "returned")]


def test_a_release_that_fails_after_its_new_enum_value_leaves_the_type_as_it_was(ws, pg_url):
    url = pg_url.render_as_string(hide_password=False)
    kw = {"db_url": url, "base_dir": str(ws.root)}
    migrate(metadata=orders("new", "paid"), **kw)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO orders (id, state) VALUES (1, 'paid')")
    # The CHECK reads a column the release adds, so only the database can check it: it fails.
    md = orders("new", "paid", "returned", check="length(code) > 3")
    sa.Table(
        "orders",
        md,
        sa.Column("code", sa.String(5), nullable=False, server_default="x"),
        extend_existing=True,
    )
    with pytest.raises(MigrationFailed, match="rolled back, the database is unchanged"):
        migrate(metadata=md, **kw)
    with engine.connect() as conn:
        labels = conn.exec_driver_sql(
            "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
            " WHERE t.typname = 'order_state' ORDER BY e.enumsortorder"
        ).all()
    engine.dispose()
    assert labels == [("new",), ("paid",)]
    assert check(metadata=orders("new", "paid"), **kw).plan.empty
