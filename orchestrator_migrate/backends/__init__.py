"""The backends, chosen in one place by the URL's dialect."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..model.errors import ConfigError
from .base import Backend
from .lock import MigrationLock


def parse_url(url: str | URL) -> URL:
    """A SQLAlchemy URL; ConfigError naming the setting when it does not parse."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            "MCP_TASK_ORCHESTRATOR_DB_URL: not a SQLAlchemy URL"
            " (expected e.g. sqlite:///path/to.db or postgresql+psycopg://user@host/db)"
        ) from None
    drivers = {
        "postgresql": "postgresql+psycopg",
        "mysql": "mysql+pymysql",
        "mariadb": "mariadb+pymysql",
    }  # the drivers of the `postgres` and `mysql` extras
    if parsed.drivername in drivers:
        return parsed.set(drivername=drivers[parsed.drivername])
    return parsed


def backend_for(url: str | URL, busy_timeout_s: float = 60.0) -> Backend:
    """The backend for a database URL."""
    parsed = parse_url(url)
    dialect = parsed.get_backend_name()
    if dialect == "sqlite":
        from .sqlite import SQLiteBackend

        return SQLiteBackend(parsed, busy_timeout_s)
    if dialect == "postgresql":
        from .postgresql import PostgreSQLBackend

        return PostgreSQLBackend(parsed, busy_timeout_s)
    if dialect in ("mysql", "mariadb"):
        from .mysql import MySQLBackend

        return MySQLBackend(parsed, busy_timeout_s)
    raise ConfigError(
        f"database {parsed.render_as_string(hide_password=True)}: the {dialect!r} backend is"
        " not supported; supported: sqlite, postgresql, mysql/mariadb"
    )


def lock_for(url: str | URL, timeout_s: float, lock_name: str) -> MigrationLock:
    """The migration lock for a database URL (its backend's)."""
    return backend_for(url).lock(timeout_s, lock_name)


__all__ = ["Backend", "backend_for", "lock_for", "parse_url"]
