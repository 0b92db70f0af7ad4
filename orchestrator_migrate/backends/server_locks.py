"""Migration locks held by a database server, on a dedicated connection.

The server releases them when the holder's connection dies, so a killed migrator never strands one.
The PostgreSQL and MariaDB backends use these; they are usable on their own.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from .lock import Lease, MigrationLock
from .reach import guard

APP_PREFIX = "orchestrator_migrate"


def lock_key(database: str, lock_name: str) -> int:
    """A signed 64-bit advisory-lock key derived from the database and the lock name."""
    digest = hashlib.sha256(f"{database}\0{lock_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _ServerLock(MigrationLock):
    """Holds one autocommit connection for as long as the lock is held or probed."""

    def __init__(self, url: URL, lock_name: str, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.url = url
        self.lock_name = lock_name
        engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._engine = guard(engine, url)
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
            self._on_connect(self._conn)
        return self._conn

    def _on_connect(self, conn: Connection) -> None:
        """Prepare a new dedicated connection."""

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Release the lock if held and close the dedicated connection."""
        self.release()
        self._close()
        self._engine.dispose()


class PostgresAdvisoryLock(_ServerLock):
    """pg_advisory_lock on a dedicated session; the holder is read from pg_stat_activity."""

    def __init__(self, url: URL, lock_name: str, timeout_s: float) -> None:
        super().__init__(url, lock_name, timeout_s)
        self.key = lock_key(url.database or "", lock_name)

    @property
    def name(self) -> str:
        return f"pg_advisory_lock({self.key}) '{self.lock_name}' on {self.url.database}"

    @property
    def inspect_hint(self) -> str:
        return (
            "see pg_locks joined with pg_stat_activity (locktype 'advisory'),"
            " or run `orchestrator-migrate locks`"
        )

    def _try_acquire(self, timeout_s: float) -> bool:
        conn = self._connection()
        if timeout_s <= 0:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            return bool(got)
        # A blocking wait bounded by lock_timeout: the server hands the lock over at once.
        conn.execute(text(f"SET lock_timeout = {max(1, int(timeout_s * 1000))}"))
        try:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
            return True
        except DBAPIError as exc:
            if "lock timeout" in str(exc.orig).lower() or "canceling statement" in str(exc.orig):
                return False
            raise
        finally:
            conn.execute(text("SET lock_timeout = 0"))

    def _release(self) -> None:
        conn = self._connection()
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})

    def _write_lease(self, lease: Lease) -> None:
        conn = self._connection()
        # application_name holds 63 characters: time and pid first, the host may be cut.
        stamp = int(datetime.fromisoformat(lease.since).timestamp())
        value = f"{APP_PREFIX} {stamp} {lease.pid} {lease.host}"[:63]
        conn.execute(text("SELECT set_config('application_name', :v, false)"), {"v": value})

    def read_lease(self) -> Lease | None:
        conn = self._connection()
        classid, objid = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        row = conn.execute(
            text(
                "SELECT a.application_name, a.client_addr, a.pid, a.state_change"
                " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.classid = :c AND l.objid = :o AND l.objsubid = 1"
            ),
            {"c": classid, "o": objid},
        ).first()
        if row is None:
            return None
        return _parse_app_name(str(row[0] or ""), row[1], int(row[2]), row[3])


def _parse_app_name(app: str, client: Any, backend_pid: int, changed: Any) -> Lease:
    parts = app.split(" ", 3)
    if len(parts) == 4 and parts[0] == APP_PREFIX and parts[1].isdigit() and parts[2].isdigit():
        since = datetime.fromtimestamp(int(parts[1]), UTC).isoformat()
        return Lease(parts[3], int(parts[2]), since)
    # Not written yet (or by another tool): describe the server session instead.
    since = changed.isoformat() if changed else ""
    return Lease(f"{client or 'local socket'} (server pid {backend_pid})", -1, since)


class MySQLNamedLock(_ServerLock):
    """GET_LOCK on a dedicated connection; the holder is a row checked against IS_USED_LOCK."""

    LEASE_TABLE = "orchestrator_migrate_lease"

    def __init__(self, url: URL, lock_name: str, timeout_s: float) -> None:
        super().__init__(url, lock_name, timeout_s)
        full = f"{lock_name}:{url.database}"
        # MariaDB/MySQL lock names are at most 64 characters.
        self.lock_id = full if len(full) <= 64 else hashlib.sha256(full.encode()).hexdigest()

    @property
    def name(self) -> str:
        return f"GET_LOCK('{self.lock_id}')"

    def _try_acquire(self, timeout_s: float) -> bool:
        conn = self._connection()
        # GET_LOCK takes whole seconds on older servers; fractions work on MariaDB 10.x+.
        got = conn.execute(
            text("SELECT GET_LOCK(:n, :t)"), {"n": self.lock_id, "t": max(0.0, timeout_s)}
        ).scalar()
        return got == 1

    def _release(self) -> None:
        self._connection().execute(text("SELECT RELEASE_LOCK(:n)"), {"n": self.lock_id})

    def _write_lease(self, lease: Lease) -> None:
        conn = self._connection()
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {self.LEASE_TABLE} (name VARCHAR(64) PRIMARY KEY,"
                " host VARCHAR(255) NOT NULL, pid INTEGER NOT NULL, since VARCHAR(40) NOT NULL,"
                " connection_id BIGINT NOT NULL)"
            )
        )
        conn.execute(
            text(f"REPLACE INTO {self.LEASE_TABLE} VALUES (:n, :h, :p, :s, CONNECTION_ID())"),
            {"n": self.lock_id, "h": lease.host, "p": lease.pid, "s": lease.since},
        )

    def read_lease(self) -> Lease | None:
        conn = self._connection()
        holder = conn.execute(text("SELECT IS_USED_LOCK(:n)"), {"n": self.lock_id}).scalar()
        if holder is None:
            return None
        try:
            row = conn.execute(
                text(
                    f"SELECT host, pid, since FROM {self.LEASE_TABLE}"
                    " WHERE name = :n AND connection_id = :c"
                ),
                {"n": self.lock_id, "c": holder},
            ).first()
        except DBAPIError:
            row = None
        if row is None:  # holder has not written its lease yet
            return Lease(f"connection {holder}", -1, datetime.now(UTC).isoformat())
        return Lease(str(row[0]), int(row[1]), str(row[2]))
