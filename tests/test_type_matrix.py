"""Every generic SQLAlchemy type, and the dialect types people use, converge on the first run:
`check` finds nothing right after `run`, and a second run takes no backup."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from orchestrator_migrate import Outcome, check, migrate

pytestmark = pytest.mark.usefixtures("api_env")


GENERIC = {
    "big": sa.BigInteger(),
    "small": sa.SmallInteger(),
    "integer": sa.Integer(),
    "flag": sa.Boolean(),
    "day": sa.Date(),
    "at": sa.DateTime(),
    "at_tz": sa.DateTime(timezone=True),
    "clock": sa.Time(),
    "span": sa.Interval(),
    "ratio": sa.Float(),
    "double": sa.Double(),
    "money": sa.Numeric(12, 2),
    "plain_numeric": sa.Numeric(),
    "name": sa.String(50),
    "body": sa.Text(),
    "title": sa.Unicode(80),
    "long_title": sa.UnicodeText(),
    "blob": sa.LargeBinary(),
    "ref": sa.Uuid(),
    "doc": sa.JSON(),
    "colour": sa.Enum("red", "green", name="matrix_colour"),
    "plain_enum": sa.Enum("a", "b", name="matrix_plain", native_enum=False),
    "checked_flag": sa.Boolean(create_constraint=True, name="ck_matrix_checked_flag"),
}

DIALECT = {
    "postgresql": {
        "tags": postgresql.ARRAY(sa.Integer),
        "jdoc": postgresql.JSONB(),
        "pg_span": postgresql.INTERVAL(),
        "stamp_tz": postgresql.TIMESTAMP(timezone=True),
        "pg_enum": postgresql.ENUM("x", "y", name="matrix_pg_enum"),
        "raw": postgresql.BYTEA(),
    },
    "mysql": {
        "tiny": mysql.TINYINT(1),
        "choices": mysql.SET("a", "b", "c"),
        "precise": mysql.DATETIME(fsp=6),
        "medium": mysql.MEDIUMTEXT(),
        "long": mysql.LONGTEXT(),
        "my_enum": mysql.ENUM("p", "q"),
        "display": mysql.INTEGER(display_width=11),
    },
    "sqlite": {},
}


def matrix(kind: str) -> sa.MetaData:
    md = sa.MetaData()
    columns = {**GENERIC, **DIALECT[kind]}
    sa.Table(
        "matrix",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(name, type_) for name, type_ in columns.items()),
    )
    return md


def test_every_type_converges_on_the_first_run(ws, any_db):
    md = matrix(any_db.kind)
    settings = {"db_url": any_db.url, "base_dir": str(ws.root)}
    assert migrate(metadata=md, **settings).outcome is Outcome.APPLIED
    left = check(metadata=md, **settings).plan
    assert left.empty, [op.description for op in left.operations]
    engine = any_db.engine()
    try:
        with engine.begin() as conn:
            conn.execute(
                md.tables["matrix"].insert(),
                {"id": 1, "span": datetime.timedelta(hours=2), "doc": {"a": 1}, "flag": True},
            )
    finally:
        engine.dispose()
    again = migrate(metadata=md, **settings)
    assert again.outcome is Outcome.UP_TO_DATE and again.backup_info is None
    assert not check(metadata=md, **settings).migration_needed
