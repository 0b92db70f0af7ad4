"""Primary-key changes on SQLite, PostgreSQL and MariaDB: a column added to the key or taken
out of it, rows kept, NULLs and duplicates counted first, converging, undone by rollback."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from orchestrator_migrate import Outcome, RefusedChange, check, migrate
from orchestrator_migrate.api import rollback

pytestmark = pytest.mark.usefixtures("api_env")


def run(db, ws, md: sa.MetaData):
    return migrate(db_url=db.url, metadata=md, base_dir=str(ws.root))


def planned(db, ws, md: sa.MetaData):
    return check(db_url=db.url, metadata=md, base_dir=str(ws.root)).plan


def prices(*key: str, note: bool = False) -> sa.MetaData:
    """prices(item, region, amount[, note]) keyed on key."""
    md = sa.MetaData()
    extra = [sa.Column("note", sa.Text)] if note else []
    sa.Table(
        "prices",
        md,
        sa.Column("item", sa.Integer, primary_key="item" in key, autoincrement=False),
        sa.Column(
            "region",
            sa.String(8),
            primary_key="region" in key,
            nullable="region" not in key,
            server_default="eu",
        ),
        sa.Column("amount", sa.Integer),
        *extra,
    )
    return md


def key(db) -> list[str]:
    return db.inspector_call("get_pk_constraint", "prices")["constrained_columns"]


def test_a_column_joins_the_key_then_leaves_it(ws, any_db):
    run(any_db, ws, prices("item"))
    any_db.sql("INSERT INTO prices (item, region, amount) VALUES (1, 'eu', 10), (2, 'us', 20)")
    wider = prices("item", "region")
    plan = planned(any_db, ws, wider)
    assert ("alter_primary_key", "data-dependent") in [
        (c.kind.value, c.safety.value) for c in plan.changes
    ], plan.to_dict()
    assert run(any_db, ws, wider).outcome is Outcome.APPLIED
    assert key(any_db) == ["item", "region"]
    assert planned(any_db, ws, wider).empty, planned(any_db, ws, wider).to_dict()
    any_db.sql("INSERT INTO prices (item, region, amount) VALUES (1, 'us', 11)")  # now allowed
    with pytest.raises(sa.exc.IntegrityError):
        any_db.sql("INSERT INTO prices (item, region, amount) VALUES (1, 'us', 12)")

    # Back to (item) in a later version: item 1 is now in two rows, counted and refused.
    narrower = prices("item", note=True)
    with pytest.raises(RefusedChange, match="2 rows") as refused:
        run(any_db, ws, narrower)
    assert refused.value.exit_code == 4
    assert key(any_db) == ["item", "region"]
    any_db.sql("DELETE FROM prices WHERE item = 1 AND region = 'us'")
    assert run(any_db, ws, narrower).outcome is Outcome.APPLIED
    assert key(any_db) == ["item"]
    assert planned(any_db, ws, narrower).empty
    assert any_db.sql("SELECT item, region, amount FROM prices ORDER BY item") == [
        (1, "eu", 10),
        (2, "us", 20),
    ]


def test_a_key_over_nulls_is_refused_with_the_count(ws, any_db):
    run(any_db, ws, prices("item"))
    any_db.sql("INSERT INTO prices (item, region) VALUES (1, NULL), (2, NULL), (3, 'eu')")
    with pytest.raises(RefusedChange, match="2 rows hold NULL"):
        run(any_db, ws, prices("item", "region"))
    assert key(any_db) == ["item"]


def test_a_key_change_is_rolled_back_by_sql(ws, any_db):
    run(any_db, ws, prices("item"))
    any_db.sql("INSERT INTO prices (item, region, amount) VALUES (1, 'eu', 10)")
    run(any_db, ws, prices("item", "region"))
    back = rollback(db_url=any_db.url, base_dir=str(ws.root))
    assert back.success, back.error_message
    assert key(any_db) == ["item"]
    assert planned(any_db, ws, prices("item")).empty
    assert any_db.sql("SELECT item, region, amount FROM prices") == [(1, "eu", 10)]
