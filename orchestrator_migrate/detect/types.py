"""Whether a type change widens: every value of the old type fits the new one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Enum, Float, Integer, Numeric, SmallInteger, String, Text


def widens(old: Any, new: Any) -> bool:
    """True for a longer VARCHAR, VARCHAR to TEXT, a larger integer, more NUMERIC digits, an
    enum with more values."""
    if isinstance(old, Enum) or isinstance(new, Enum):
        kept = set(getattr(old, "enums", ()) or ())
        return isinstance(old, Enum) and isinstance(new, Enum) and kept <= set(new.enums)
    if isinstance(old, String) and isinstance(new, String):
        return _longer(old, new)
    if isinstance(old, Integer) and isinstance(new, Integer):
        return integer_bits(new) >= integer_bits(old)
    if isinstance(old, Numeric) and isinstance(new, Numeric):
        return not isinstance(old, Float) and not isinstance(new, Float) and _more_digits(old, new)
    return False


def _longer(old: String, new: String) -> bool:
    if isinstance(new, Text) or new.length is None:
        return True  # TEXT, or a VARCHAR without a limit, holds any string
    if isinstance(old, Text) or old.length is None:
        return False
    return new.length >= old.length


def _more_digits(old: Numeric[Any], new: Numeric[Any]) -> bool:
    if new.precision is None:
        return True
    if old.precision is None:
        return False
    old_scale, new_scale = old.scale or 0, new.scale or 0
    return new_scale >= old_scale and new.precision - new_scale >= old.precision - old_scale


def integer_bits(type_: Integer) -> int:
    """How many bits an integer type holds (MariaDB's TINYINT and MEDIUMINT included)."""
    name = type(type_).__name__.upper()
    if "TINY" in name:
        return 8
    if "MEDIUM" in name:
        return 24
    if isinstance(type_, BigInteger):
        return 64
    if isinstance(type_, SmallInteger):
        return 16
    return 32
