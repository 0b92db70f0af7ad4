"""Named CHECK constraints on SQLite, PostgreSQL and MariaDB: added over data that fits, refused
over rows that violate them (counted), dropped when the models made them, a DBA's kept."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from orchestrator_migrate import Outcome, RefusedChange, check, migrate

pytestmark = pytest.mark.usefixtures("api_env")


def items(*checks: sa.CheckConstraint) -> sa.MetaData:
    md = sa.MetaData(naming_convention={"ck": "ck_%(table_name)s_%(constraint_name)s"})
    sa.Table(
        "items",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("qty", sa.Integer),
        sa.Column("flag", sa.Boolean(create_constraint=True, name="flag_bool")),
        *checks,
    )
    return md


def positive() -> sa.CheckConstraint:
    return sa.CheckConstraint("qty >= 0", name="qty_positive")


def settings(db, ws) -> dict:
    return {"db_url": db.url, "base_dir": str(ws.root)}


def test_a_check_added_over_fitting_rows_is_applied_and_converges(ws, any_db):
    migrate(metadata=items(), **settings(any_db, ws))
    assert not check(metadata=items(), **settings(any_db, ws)).migration_needed
    any_db.sql("INSERT INTO items (id, qty) VALUES (1, 5), (2, NULL)")
    plan = check(metadata=items(positive()), **settings(any_db, ws)).plan
    assert [(c.kind.value, c.safety.value) for c in plan.changes] == [
        ("add_check", "data-dependent")
    ]
    assert migrate(metadata=items(positive()), **settings(any_db, ws)).outcome is Outcome.APPLIED
    assert not check(metadata=items(positive()), **settings(any_db, ws)).migration_needed
    with pytest.raises(sa.exc.DBAPIError):
        any_db.sql("INSERT INTO items (id, qty) VALUES (3, -1)")


def test_a_check_over_violating_rows_is_refused_with_the_count(ws, any_db):
    migrate(metadata=items(), **settings(any_db, ws))
    any_db.sql("INSERT INTO items (id, qty) VALUES (1, -5), (2, 3), (3, -1)")
    with pytest.raises(RefusedChange, match="2 rows violate") as refused:
        migrate(metadata=items(positive()), **settings(any_db, ws))
    assert refused.value.refusals[0].sample_keys == [1, 3]
    any_db.sql("INSERT INTO items (id, qty) VALUES (4, -7)")  # still no CHECK


def add_dba_check(db, constraint: str = "CONSTRAINT dba_qty_small CHECK (qty < 1000)") -> None:
    """A DBA's CHECK, added by hand (on SQLite, which cannot ALTER one in, by a rebuild)."""
    if db.kind != "sqlite":
        db.sql(f"ALTER TABLE items ADD {constraint}")
        return
    [(create,)] = db.sql("SELECT sql FROM sqlite_master WHERE name = 'items'")
    create = create.rstrip()[:-1].rstrip() + f", {constraint})"
    create = create.replace("CREATE TABLE items", "CREATE TABLE items_dba", 1)
    db.sql(
        create,
        "INSERT INTO items_dba SELECT * FROM items",
        "DROP TABLE items",
        "ALTER TABLE items_dba RENAME TO items",
    )


def test_a_check_the_models_dropped_goes_and_a_dbas_stays(ws, any_db):
    migrate(metadata=items(positive()), **settings(any_db, ws))
    add_dba_check(any_db)
    plan = check(metadata=items(), **settings(any_db, ws)).plan
    assert [c.name for c in plan.changes] == ["ck_items_qty_positive"], plan.to_dict()
    assert migrate(metadata=items(), **settings(any_db, ws)).outcome is Outcome.APPLIED
    any_db.sql("INSERT INTO items (id, qty) VALUES (1, -1)")  # the models' CHECK is gone
    with pytest.raises(sa.exc.DBAPIError):
        any_db.sql("INSERT INTO items (id, qty) VALUES (2, 5000)")  # the DBA's holds
    assert not check(metadata=items(), **settings(any_db, ws)).migration_needed


# Unnamed CHECKs: each database names them its own way (PostgreSQL items_qty_check, MariaDB
# CONSTRAINT_1, SQLite none), so they are recognised by their text as the database spells it.


def plain(*checks: sa.CheckConstraint) -> sa.MetaData:
    """items without a naming convention: its CHECKs stay unnamed. Besides the types' own
    CHECKs (a Boolean and a non-native Enum), which are never reported."""
    md = sa.MetaData()
    sa.Table(
        "items",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("qty", sa.Integer),
        sa.Column("code", sa.String(10)),
        sa.Column("flag", sa.Boolean(create_constraint=True)),
        sa.Column("size", sa.Enum("s", "m", native_enum=False, create_constraint=True)),
        *checks,
    )
    return md


def unnamed_checks() -> tuple[sa.CheckConstraint, ...]:
    return (
        sa.CheckConstraint("qty >= 0"),
        sa.CheckConstraint("code IN ('a', 'b') OR code IS NULL"),
        sa.CheckConstraint(sa.text("lower(code) = code")),
    )


def test_unnamed_checks_are_added_converge_and_hold(ws, any_db):
    migrate(metadata=plain(), **settings(any_db, ws))
    assert check(metadata=plain(), **settings(any_db, ws)).plan.empty  # the types' CHECKs
    any_db.sql("INSERT INTO items (id, qty, code) VALUES (1, 5, 'a'), (2, NULL, NULL)")
    md = plain(*unnamed_checks())
    plan = check(metadata=md, **settings(any_db, ws)).plan
    assert [(c.kind.value, c.name) for c in plan.changes] == [("add_check", None)] * 3
    assert migrate(metadata=md, **settings(any_db, ws)).outcome is Outcome.APPLIED
    again = check(metadata=md, **settings(any_db, ws)).plan
    assert again.empty and not again.retained, again.to_dict()
    for bad in ("(3, -1, 'a')", "(3, 1, 'c')"):
        with pytest.raises(sa.exc.DBAPIError):
            any_db.sql(f"INSERT INTO items (id, qty, code) VALUES {bad}")
    assert any_db.sql("SELECT count(*) FROM items") == [(2,)]


def test_an_unnamed_check_over_violating_rows_is_refused_with_the_count(ws, any_db):
    migrate(metadata=plain(), **settings(any_db, ws))
    any_db.sql("INSERT INTO items (id, qty) VALUES (1, -5), (2, 3), (3, -1)")
    with pytest.raises(RefusedChange, match="2 rows violate") as refused:
        migrate(metadata=plain(sa.CheckConstraint("qty >= 0")), **settings(any_db, ws))
    assert refused.value.exit_code == 4
    any_db.sql("INSERT INTO items (id, qty) VALUES (4, -7)")  # still no CHECK


def test_an_unnamed_check_the_models_dropped_goes_and_a_dbas_stays(ws, any_db):
    md = plain(*unnamed_checks())
    migrate(metadata=md, **settings(any_db, ws))
    add_dba_check(any_db, "CHECK (qty < 1000)")
    assert check(metadata=md, **settings(any_db, ws)).plan.empty
    fewer = plain(*unnamed_checks()[1:])
    plan = check(metadata=fewer, **settings(any_db, ws)).plan
    assert [c.kind.value for c in plan.changes] == ["drop_check"], plan.to_dict()
    assert ">= 0" in plan.changes[0].description and "qty" in plan.changes[0].description
    assert migrate(metadata=fewer, **settings(any_db, ws)).outcome is Outcome.APPLIED
    any_db.sql("INSERT INTO items (id, qty) VALUES (1, -1)")  # the models' CHECK is gone
    with pytest.raises(sa.exc.DBAPIError):
        any_db.sql("INSERT INTO items (id, qty) VALUES (2, 5000)")  # the DBA's holds
    later = check(metadata=fewer, **settings(any_db, ws)).plan
    assert later.empty, later.to_dict()
    assert [c.kind.value for c in later.retained] == ["drop_check"]  # the DBA's, kept


def test_a_named_check_whose_condition_changes_is_replaced_after_counting(ws, any_db):
    """Compared by name alone, a changed condition was never applied: the old CHECK held."""
    before = items(sa.CheckConstraint("qty > 0", name="qty_sign"))
    after = items(sa.CheckConstraint("qty <> 0", name="qty_sign"))
    migrate(metadata=before, **settings(any_db, ws))
    any_db.sql("INSERT INTO items (id, qty) VALUES (1, 5)")
    plan = check(metadata=after, **settings(any_db, ws)).plan
    assert [(c.kind.value, c.safety.value) for c in plan.changes] == [
        ("alter_check", "data-dependent")
    ], plan.to_dict()
    assert migrate(metadata=after, **settings(any_db, ws)).outcome is Outcome.APPLIED
    assert check(metadata=after, **settings(any_db, ws)).plan.empty
    any_db.sql("INSERT INTO items (id, qty) VALUES (2, -1)")  # allowed now
    with pytest.raises(sa.exc.DBAPIError):
        any_db.sql("INSERT INTO items (id, qty) VALUES (3, 0)")
    # Back to > 0 over the -1: counted and refused.
    with pytest.raises(RefusedChange, match="1 rows violate"):
        migrate(metadata=before, **settings(any_db, ws), allow_downgrade=True)


def test_an_enum_check_follows_its_values(ws, any_db):
    def pay(*values: str) -> sa.MetaData:
        md = sa.MetaData()
        sa.Table(
            "orders",
            md,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column(
                "method",
                sa.Enum(*values, name="payment_method", native_enum=False, create_constraint=True),
            ),
        )
        return md

    migrate(metadata=pay("card", "invoice"), **settings(any_db, ws))
    assert check(metadata=pay("card", "invoice"), **settings(any_db, ws)).plan.empty
    wider = pay("card", "invoice", "paypal")
    assert migrate(metadata=wider, **settings(any_db, ws)).outcome is Outcome.APPLIED
    assert check(metadata=wider, **settings(any_db, ws)).plan.empty
    any_db.sql("INSERT INTO orders (id, method) VALUES (1, 'paypal')")
