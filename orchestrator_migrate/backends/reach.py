"""A database that cannot be opened or reached, said in one line: a file that is no SQLite
database, a server that refuses the connection, a database that does not exist, credentials the
server refuses. Every engine we create raises DatabaseUnavailable (exit 2) for these instead of
the driver's exception; each dialect's errors are recognised here."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, ExceptionContext

from ..model.errors import DatabaseUnavailable

# Why a driver's error means the database cannot be used as configured, for humans; None when
# it is some other failure. `connecting`: raised while opening a connection.
Recogniser = Callable[[BaseException, URL, bool], str | None]

_FIX_URL = "fix MCP_TASK_ORCHESTRATOR_DB_URL"


def guard(engine: Engine, url: URL) -> Engine:
    """engine, whose failures to open or reach the database at url raise DatabaseUnavailable."""
    recognise = _RECOGNISERS.get(url.get_backend_name())
    if recognise is None:
        return engine

    def translate(context: ExceptionContext) -> None:
        connecting = context.connection is None
        reason = recognise(context.original_exception, url, connecting)
        if reason is not None:
            raise DatabaseUnavailable(reason)

    event.listen(engine, "handle_error", translate)
    return engine


def _sqlite(error: BaseException, url: URL, connecting: bool) -> str | None:
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return None
    path = url.database or ":memory:"
    point = (
        "; nothing was changed. Point MCP_TASK_ORCHESTRATOR_DB_PATH or"
        " MCP_TASK_ORCHESTRATOR_DB_URL at the database file"
    )
    if code & 0xFF == sqlite3.SQLITE_NOTADB:
        return f"{path} is not a SQLite database (the file holds something else){point}"
    if code & 0xFF in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR) and Path(path).is_dir():
        return f"{path} is a directory, not a SQLite database file{point}"
    if connecting and code & 0xFF == sqlite3.SQLITE_CANTOPEN:
        return f"cannot open the SQLite database {path} (no permission?){point}"
    return None


def _server(url: URL, port: int) -> str:
    """host:port, the host a socket directory when the URL names one (?host=/run/...)."""
    host = url.host or url.query.get("host") or url.query.get("unix_socket") or "localhost"
    return f"{host if isinstance(host, str) else ','.join(host)}:{url.port or port}"


def _postgresql(error: BaseException, url: URL, connecting: bool) -> str | None:
    if not connecting:
        return None
    said = _one_line(str(error))
    # libpq: 'connection to server at "h", port p failed: FATAL:  database "x" does not exist'
    said = re.sub(r"^.*\bfailed:\s*(FATAL:\s*)?", "", said)
    lowered = said.lower()
    state = str(getattr(error, "sqlstate", None) or "")
    server = _server(url, 5432)
    database = url.database or ""
    if state == "3D000" or (lowered.startswith("database ") and "does not exist" in lowered):
        return (
            f'database "{database}" does not exist on the PostgreSQL server at {server};'
            f" nothing was created: create it (CREATE DATABASE), or {_FIX_URL}"
        )
    credentials = ("password", "authentication", "role ", "pg_hba.conf")
    if state.startswith("28") or any(word in lowered for word in credentials):
        return (
            f'the PostgreSQL server at {server} refused user "{url.username or ""}" for database'
            f' "{database}": {said}; {_FIX_URL} (user, password)'
        )
    if any(words in lowered for words in _NO_SERVER):
        return (
            f"no PostgreSQL server answers at {server}: {said}; is it running there? Otherwise"
            f" {_FIX_URL} (host, port)"
        )
    return None  # e.g. too many clients: the server is there and may take us later


# libpq's words for a server that is not there (or not where the URL says).
_NO_SERVER = (
    "connection refused",
    "could not translate host name",
    "failed to resolve host",
    "name or service not known",
    "no route to host",
    "network is unreachable",
    "timeout expired",
    "no such file or directory",  # no server's socket in that directory
)


# PyMySQL's error numbers: no such database; access denied; no server answering.
_UNKNOWN_DATABASE = {1049}
_ACCESS_DENIED = {1044, 1045, 1698}
_CANNOT_CONNECT = {2003, 2005}


def _mysql(error: BaseException, url: URL, connecting: bool) -> str | None:
    args = getattr(error, "args", ())
    if not connecting or not args or not isinstance(args[0], int):
        return None
    number, said = args[0], _one_line(str(args[1]) if len(args) > 1 else "")
    server = _server(url, 3306)
    database = url.database or ""
    if number in _UNKNOWN_DATABASE:
        return (
            f'database "{database}" does not exist on the MariaDB/MySQL server at {server};'
            f" nothing was created: create it (CREATE DATABASE), or {_FIX_URL}"
        )
    if number in _ACCESS_DENIED:
        return (
            f'the MariaDB/MySQL server at {server} refused user "{url.username or ""}" for'
            f' database "{database}": {said}; {_FIX_URL} (user, password)'
        )
    if number in _CANNOT_CONNECT:
        return (
            f"no MariaDB/MySQL server answers at {server}: {said}; is it running there?"
            f" Otherwise {_FIX_URL} (host, port)"
        )
    return None


def _one_line(text: str) -> str:
    """The first line of a driver's message, without an OS error number."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return " ".join(re.sub(r"\[Errno -?\d+\]\s*", "", first).split())


_RECOGNISERS: dict[str, Recogniser] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
    "mysql": _mysql,
    "mariadb": _mysql,
}
