"""Type changes on SQLite, PostgreSQL and MariaDB: widening is safe, narrowing is checked against
the data first and refused with the offending rows counted."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from orchestrator_migrate import Outcome, RefusedChange, check, migrate

pytestmark = pytest.mark.usefixtures("api_env")


def notes(name_type, count_type, price_type=None) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "notes",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", name_type),
        sa.Column("count", count_type),
        sa.Column("price", price_type if price_type is not None else sa.Numeric(8, 2)),
    )
    return md


def seed(db, md: sa.MetaData, *rows: dict) -> None:
    engine = db.engine()
    try:
        with engine.begin() as conn:
            conn.execute(md.tables["notes"].insert(), list(rows))
    finally:
        engine.dispose()


def settings(db, ws) -> dict:
    return {"db_url": db.url, "base_dir": str(ws.root)}


def test_widening_is_safe_and_keeps_every_value(ws, any_db):
    v1 = notes(sa.String(120), sa.Integer)
    v2 = notes(sa.String(200), sa.BigInteger, sa.Numeric(12, 2))
    migrate(metadata=v1, **settings(any_db, ws))
    seed(any_db, v1, {"id": 1, "name": "x" * 120, "count": 2**31 - 1, "price": 123456.78})
    planned = check(metadata=v2, **settings(any_db, ws)).plan
    if any_db.kind == "sqlite":
        # SQLite stores by affinity: lengths and integer sizes are not enforced, nothing to do.
        assert planned.empty
        return
    kinds = {c.kind.value: c.safety.value for c in planned.changes}
    assert kinds == {"alter_type": "safe"}, planned.to_dict()
    assert all(c.description.startswith("widen type of") for c in planned.changes)
    assert migrate(metadata=v2, **settings(any_db, ws)).outcome is Outcome.APPLIED
    assert any_db.sql("SELECT name, count FROM notes") == [("x" * 120, 2**31 - 1)]
    assert not check(metadata=v2, **settings(any_db, ws)).migration_needed
    seed(any_db, v2, {"id": 2, "name": "y" * 200, "count": 2**40, "price": 1234567890.12})


def test_varchar_to_text_is_safe(ws, any_db):
    v1 = notes(sa.String(20), sa.Integer)
    v2 = notes(sa.Text, sa.Integer)
    migrate(metadata=v1, **settings(any_db, ws))
    seed(any_db, v1, {"id": 1, "name": "short", "count": 1})
    planned = check(metadata=v2, **settings(any_db, ws)).plan
    if any_db.kind == "sqlite":
        assert planned.empty  # both are TEXT to SQLite
        return
    assert [c.safety.value for c in planned.changes] == ["safe"]
    migrate(metadata=v2, **settings(any_db, ws))
    assert any_db.sql("SELECT name FROM notes") == [("short",)]


def test_narrowing_over_values_that_do_not_fit_is_refused_with_the_rows_counted(ws, any_db):
    v1 = notes(sa.String(200), sa.BigInteger)
    v2 = notes(sa.String(10), sa.Integer)
    migrate(metadata=v1, **settings(any_db, ws))
    seed(
        any_db,
        v1,
        {"id": 1, "name": "fits", "count": 5},
        {"id": 2, "name": "much too long", "count": 2**40},
        {"id": 3, "name": "also far too long", "count": 7},
    )
    planned = check(metadata=v2, **settings(any_db, ws))
    if any_db.kind == "sqlite":
        assert planned.plan.empty  # not enforced by SQLite: no change, nothing lost
        return
    assert {c.safety.value for c in planned.plan.changes} == {"data-dependent"}
    found = {(r.column, r.count, tuple(r.sample_keys)) for r in planned.refusals}
    assert found == {("name", 2, (2, 3)), ("count", 1, (2,))}
    with pytest.raises(RefusedChange, match=r"notes\.name to VARCHAR\(10\): 2 values"):
        migrate(metadata=v2, **settings(any_db, ws))
    assert any_db.columns("notes")["name"]["type"].length == 200
    assert any_db.sql("SELECT count(*) FROM notes") == [(3,)]


def test_narrowing_over_values_that_fit_is_applied(ws, any_db):
    v1 = notes(sa.String(200), sa.BigInteger)
    v2 = notes(sa.String(10), sa.Integer)
    migrate(metadata=v1, **settings(any_db, ws))
    seed(any_db, v1, {"id": 1, "name": "fits", "count": 5})
    result = migrate(metadata=v2, **settings(any_db, ws))
    expected = Outcome.UP_TO_DATE if any_db.kind == "sqlite" else Outcome.APPLIED
    assert result.outcome is expected
    assert any_db.sql("SELECT name, count FROM notes") == [("fits", 5)]
