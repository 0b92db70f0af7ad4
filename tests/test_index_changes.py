"""Index changes on SQLite, PostgreSQL and MariaDB: columns and uniqueness changed, a partial
index's WHERE compared and changed where the database has partial indexes, expression indexes
created where the database can and never dropped where it cannot reflect them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from orchestrator_migrate import MigrationFailed, Outcome, RefusedChange, check, migrate

pytestmark = pytest.mark.usefixtures("api_env")


def run(db, ws, md: sa.MetaData):
    return migrate(db_url=db.url, metadata=md, base_dir=str(ws.root))


def planned(db, ws, md: sa.MetaData):
    return check(db_url=db.url, metadata=md, base_dir=str(ws.root)).plan


def orders(index=None) -> sa.MetaData:
    """orders(id, customer, day, state) with the one index index(table) returns."""
    md = sa.MetaData()
    table = sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("customer", sa.Integer, nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
    )
    if index is not None:
        index(table)
    return md


def partial(value: str, unique: bool = True):
    def index(t: sa.Table) -> sa.Index:
        where = t.c.state == value
        return sa.Index(
            "ix_orders_open",
            t.c.customer,
            unique=unique,
            postgresql_where=where,
            sqlite_where=where,
        )

    return index


ROWS = (
    "INSERT INTO orders (id, customer, day, state) VALUES"
    " (1, 7, 1, 'open'), (2, 7, 1, 'done'), (3, 7, 2, 'done'), (4, 8, 1, 'open')"
)


def indexes(db) -> dict[str, tuple[list[str], bool]]:
    return {
        ix["name"]: (list(ix["column_names"]), bool(ix["unique"]))
        for ix in db.inspector_call("get_indexes", "orders")
    }


def test_an_index_changes_columns_then_uniqueness(ws, any_db):
    run(any_db, ws, orders(lambda t: sa.Index("ix_orders_c", t.c.customer)))
    any_db.sql(ROWS)
    wider = orders(lambda t: sa.Index("ix_orders_c", t.c.customer, t.c.day))
    plan = planned(any_db, ws, wider)
    assert [c.kind.value for c in plan.changes] == ["drop_index", "add_index"], plan.to_dict()
    assert run(any_db, ws, wider).outcome is Outcome.APPLIED
    assert indexes(any_db)["ix_orders_c"] == (["customer", "day"], False)
    assert planned(any_db, ws, wider).empty

    # Unique over (customer, day): rows 2 and 1 share (7, 1): refused with the count.
    unique = orders(lambda t: sa.Index("ix_orders_c", t.c.customer, t.c.day, unique=True))
    with pytest.raises(RefusedChange, match="2 rows") as refused:
        run(any_db, ws, unique)
    assert refused.value.exit_code == 4
    assert indexes(any_db)["ix_orders_c"] == (["customer", "day"], False)
    any_db.sql("UPDATE orders SET day = 3 WHERE id = 2")
    assert run(any_db, ws, unique).outcome is Outcome.APPLIED
    assert indexes(any_db)["ix_orders_c"] == (["customer", "day"], True)
    assert planned(any_db, ws, unique).empty
    assert len(any_db.sql("SELECT id FROM orders")) == 4


def test_a_partial_unique_index_counts_only_its_rows_and_its_where_converges(ws, any_db):
    run(any_db, ws, orders())
    any_db.sql(ROWS)  # customer 7 has one open order and two done ones
    only_open = orders(partial("open"))
    if any_db.kind == "mysql":
        # MariaDB has no partial indexes: the index covers every row, and 7 repeats.
        with pytest.raises(RefusedChange, match="3 rows"):
            run(any_db, ws, only_open)
        assert "ix_orders_open" not in indexes(any_db)
        return
    assert run(any_db, ws, only_open).outcome is Outcome.APPLIED
    assert planned(any_db, ws, only_open).empty, planned(any_db, ws, only_open).to_dict()
    assert run(any_db, ws, only_open).outcome is Outcome.UP_TO_DATE

    # The WHERE changes: dropped and created again, after counting the rows it covers.
    only_done = orders(partial("done"))
    plan = planned(any_db, ws, only_done)
    assert [c.kind.value for c in plan.changes] == ["drop_index", "add_index"], plan.to_dict()
    assert "where" in plan.changes[1].description
    with pytest.raises(RefusedChange, match="2 rows"):
        run(any_db, ws, only_done)
    assert planned(any_db, ws, only_open).empty  # the old index is still there
    any_db.sql("UPDATE orders SET customer = 9 WHERE id = 3")
    assert run(any_db, ws, only_done).outcome is Outcome.APPLIED
    assert planned(any_db, ws, only_done).empty
    with pytest.raises(sa.exc.IntegrityError):
        any_db.sql("INSERT INTO orders (id, customer, day, state) VALUES (5, 7, 5, 'done')")
    any_db.sql("INSERT INTO orders (id, customer, day, state) VALUES (5, 7, 5, 'open')")

    # Partial to full, and back.
    full = orders(lambda t: sa.Index("ix_orders_open", t.c.customer))
    assert run(any_db, ws, full).outcome is Outcome.APPLIED
    assert planned(any_db, ws, full).empty
    assert run(any_db, ws, orders(partial("open", unique=False))).outcome is Outcome.APPLIED
    assert planned(any_db, ws, orders(partial("open", unique=False))).empty


def test_expression_indexes_where_the_database_has_them(ws, any_db):
    run(any_db, ws, orders())
    lower = orders(lambda t: sa.Index("ix_orders_state", sa.func.lower(t.c.state)))
    if any_db.kind == "mysql":  # MariaDB has none: said before anything changes
        with pytest.raises(MigrationFailed, match="MariaDB has no expression indexes"):
            run(any_db, ws, lower)
        assert "ix_orders_state" not in indexes(any_db)
        return
    plan = planned(any_db, ws, lower)
    assert "lower(" in plan.changes[0].description
    assert run(any_db, ws, lower).outcome is Outcome.APPLIED
    assert planned(any_db, ws, lower).empty
    names = any_db.inspector_call("get_indexes", "orders")
    if any_db.kind == "sqlite":
        # SQLite's reflection cannot see it: never dropped for what the comparison cannot see.
        assert names == []
        later = orders()
        sa.Table("orders", later, sa.Column("note", sa.Text), extend_existing=True)
        assert run(any_db, ws, later).outcome is Outcome.APPLIED
        assert "note" in any_db.columns("orders")
        assert any_db.sql("SELECT name FROM sqlite_master WHERE name = 'ix_orders_state'")
    else:
        assert [ix["name"] for ix in names] == ["ix_orders_state"]


def test_a_changed_partial_index_is_rolled_back_by_sql(ws, any_db):
    from orchestrator_migrate.api import rollback

    if any_db.kind == "mysql":  # no partial indexes: nothing changes
        return
    run(any_db, ws, orders(partial("open", unique=False)))
    run(any_db, ws, orders(partial("done", unique=False)))
    back = rollback(db_url=any_db.url, base_dir=str(ws.root))
    assert back.success, back.error_message
    assert planned(any_db, ws, orders(partial("open", unique=False))).empty
