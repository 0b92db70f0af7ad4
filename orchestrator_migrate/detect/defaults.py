"""Server defaults compared as values, whatever spelling the database hands back: quotes and
casts ('x'::character varying), now() / CURRENT_TIMESTAMP / current_timestamp(), false / 0 / '0',
the parentheses SQLite and MariaDB add, numeric formatting."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_CAST = re.compile(r"::[\w\s\".]+(?:\[\])?$")
_NOW = re.compile(r"^(?:now|current_timestamp|localtimestamp)\s*(?:\(\s*\d*\s*\))?$", re.I)
_BOOLEANS = {"true": "=1", "false": "=0"}


def defaults_differ(reflected: str | None, model_default: Any, rendered: str | None) -> bool:
    """Whether the database's default (as reflected) differs from the model's server_default
    (rendered for the dialect; a plain string there is a literal value)."""
    if model_default is None:
        # A serial or identity column's default belongs to the database, not to the models.
        return _normal(reflected) is not None and not _generated(reflected)
    literal = isinstance(getattr(model_default, "arg", None), str)
    model = _value(rendered) if literal else _normal(rendered)
    return _normal(reflected) != model


def _generated(text: str | None) -> bool:
    return bool(text) and str(text).strip().lower().startswith("nextval(")


def _normal(text: str | None) -> str | None:
    """One spelling for a default as SQL."""
    if text is None:
        return None
    sql = _bare(text.strip())
    if sql.lower() == "null" or not sql:
        return None
    if len(sql) >= 2 and sql[0] == sql[-1] == "'":
        return _value(sql[1:-1].replace("''", "'"))
    if _NOW.match(sql):
        return "current_timestamp"
    return (
        _value(sql.lower())
        if _number(sql) is not None or sql.lower() in _BOOLEANS
        else (" ".join(sql.lower().split()))
    )


def _value(value: str | None) -> str | None:
    """One spelling for a literal value: numbers and booleans by value, text as it is."""
    if value is None:
        return None
    if value.lower() in _BOOLEANS:
        return _BOOLEANS[value.lower()]
    number = _number(value)
    return f"={number}" if number is not None else f"'{value}"


def _number(text: str) -> str | None:
    try:
        number = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    normal = number.normalize()
    return "0" if normal.is_zero() else format(normal, "f")


def _bare(sql: str) -> str:
    """Without the parentheses around it and PostgreSQL's trailing casts."""
    while True:
        before = sql
        sql = _CAST.sub("", sql).strip()
        if sql.startswith("(") and sql.endswith(")") and _balanced(sql[1:-1]):
            sql = sql[1:-1].strip()
        if sql == before:
            return sql


def _balanced(sql: str) -> bool:
    depth = 0
    quoted = False
    for char in sql:
        if char == "'":
            quoted = not quoted
        elif not quoted:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth < 0:
                return False
    return depth == 0
