"""Estimate how long a plan takes from the rows it copies and a cost measured on this database."""

from __future__ import annotations

import time

from sqlalchemy.engine import Connection

from ..model.names import quote_table
from ..model.plan import Plan

SAMPLE_ROWS = 5000
CALIBRATE_ABOVE_ROWS = 20_000
# Rebuilding indexes and verifying roughly double the raw copy.
OVERHEAD = 2.0
PER_STATEMENT_MS = 2.0


def estimate_ms(conn: Connection, plan: Plan) -> int:
    """The expected duration of applying plan, in milliseconds."""
    copies = {op.table: op.rebuilt_rows or 0 for op in plan.operations if op.rebuilt_rows}
    statements = len(plan.sql)
    total_rows = sum(copies.values())
    if total_rows <= CALIBRATE_ABOVE_ROWS:
        return int(statements * PER_STATEMENT_MS + total_rows * 0.01)
    largest = max(copies, key=lambda t: copies[t])
    per_row_ms = _per_row_ms(conn, largest)
    return int(statements * PER_STATEMENT_MS + total_rows * per_row_ms * OVERHEAD)


def _per_row_ms(conn: Connection, table: str) -> float:
    """Time copying a sample of table's rows into a temporary table, then undo it."""
    source = quote_table(conn.dialect, table)
    savepoint = conn.begin_nested()
    try:
        started = time.perf_counter()
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE om_estimate_sample AS SELECT * FROM {source}"
            f" LIMIT {SAMPLE_ROWS}"
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        copied = conn.exec_driver_sql("SELECT count(*) FROM om_estimate_sample").scalar_one()
    finally:
        savepoint.rollback()
    return elapsed_ms / max(int(copied), 1)
