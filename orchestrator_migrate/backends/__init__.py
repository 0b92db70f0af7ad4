"""The backends, chosen in one place by the URL's dialect."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..model.errors import ConfigError
from ..progress import Progress
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


def backend_for(
    url: str | URL, busy_timeout_s: float = 60.0, progress: Progress | None = None
) -> Backend:
    """The backend for a database URL, reporting long work to progress (log lines by default);
    ConfigError when the dialect is not supported or its driver is not installed."""
    parsed = parse_url(url)
    dialect = parsed.get_backend_name()
    if dialect not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise ConfigError(
            f"database {parsed.render_as_string(hide_password=True)}: the {dialect!r} backend is"
            " not supported; supported: sqlite, postgresql, mysql/mariadb"
        )
    _require_driver(parsed)
    if dialect == "sqlite":
        from .sqlite import SQLiteBackend

        return SQLiteBackend(parsed, busy_timeout_s, progress)
    if dialect == "postgresql":
        from .postgresql import PostgreSQLBackend

        return PostgreSQLBackend(parsed, busy_timeout_s, progress)
    from .mysql import MySQLBackend

    return MySQLBackend(parsed, busy_timeout_s, progress)


# The extra that installs each server's default driver, and that driver.
_EXTRAS = {
    "postgresql": ("postgres", "psycopg"),
    "mysql": ("mysql", "pymysql"),
    "mariadb": ("mysql", "pymysql"),
}


def _require_driver(url: URL) -> None:
    """The URL's driver imports, or a ConfigError that says what to install."""
    try:
        url.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError) as exc:
        raise ConfigError(_missing_driver(url, exc)) from None


def _missing_driver(url: URL, exc: Exception) -> str:
    """One line: the URL (password hidden), its driver, and the extra that installs one."""
    dialect, driver = url.get_backend_name(), url.get_driver_name()
    extra, default = _EXTRAS.get(dialect, ("", ""))
    install = f"pip install 'orchestrator-migrate[{extra}]'"
    if isinstance(exc, NoSuchModuleError):
        what = f"SQLAlchemy has no driver {driver!r} for {dialect}"
    elif isinstance(exc, ModuleNotFoundError):
        what = f"its driver {driver!r} is not installed"
    else:  # installed, yet its import fails (e.g. a missing system library): say why
        said = " ".join(str(exc).split()) or "its import fails"
        what = f"its driver {driver!r} does not import ({said})"
    if not extra:
        hint = ""
    elif driver == default:
        hint = f": {install}"
    else:
        hint = f"; {install} installs {default}, which a plain {dialect}:// URL uses"
    return f"database {url.render_as_string(hide_password=True)}: {what}{hint}"


def lock_for(url: str | URL, timeout_s: float, lock_name: str) -> MigrationLock:
    """The migration lock for a database URL (its backend's)."""
    return backend_for(url).lock(timeout_s, lock_name)


__all__ = ["Backend", "backend_for", "lock_for", "parse_url"]
