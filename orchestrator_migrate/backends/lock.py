"""The migration lock: one base with the behaviour, one small subclass per mechanism."""

from __future__ import annotations

import json
import os
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from loguru import logger

from ..model.errors import LockTimeout

WAIT_LOG_EVERY_S = 5.0


@dataclass(frozen=True)
class Lease:
    """Who holds the lock, written by the holder for waiters and operators to read."""

    host: str
    pid: int
    since: str

    @classmethod
    def mine(cls) -> Lease:
        """A lease describing this process, now."""
        return cls(socket.gethostname(), os.getpid(), datetime.now(UTC).isoformat())

    def describe(self) -> str:
        """'host H pid P since T', for messages."""
        return f"host {self.host} pid {self.pid} since {self.since}"


class MigrationLock(ABC):
    """Exclusive across processes; bounded waits that say who holds it; a context manager."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._held = False

    @property
    @abstractmethod
    def name(self) -> str:
        """What is locked, for messages (a file path, a lock key)."""

    @abstractmethod
    def _try_acquire(self, timeout_s: float) -> bool:
        """Wait up to timeout_s (0: do not wait) for the lock; True when acquired."""

    @abstractmethod
    def _release(self) -> None:
        """Give the lock up."""

    @abstractmethod
    def _write_lease(self, lease: Lease) -> None:
        """Record the holder where waiters can read it."""

    @abstractmethod
    def read_lease(self) -> Lease | None:
        """The holder's record, if any (it may be stale when nobody holds the lock)."""

    @property
    def inspect_hint(self) -> str:
        """How an operator sees the holder."""
        return "run `orchestrator-migrate locks` to see the holder"

    def acquire(self) -> None:
        """Take the lock within timeout_s, logging the holder while waiting; LockTimeout if not."""
        deadline = time.monotonic() + self.timeout_s
        if not self._try_acquire(0):
            while True:
                holder = self.read_lease()
                who = holder.describe() if holder else "an unknown process"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LockTimeout(
                        f"migration lock {self.name} not acquired within"
                        f" {self.timeout_s * 1000:.0f}ms: held by {who};"
                        f" {self.inspect_hint}, or raise MCP_TASK_ORCHESTRATOR_LOCK_TIMEOUT",
                        self.name,
                    )
                logger.info("Waiting for migration lock {} held by {}", self.name, who)
                if self._try_acquire(min(remaining, WAIT_LOG_EVERY_S)):
                    break
        self._held = True
        self._write_lease(Lease.mine())
        logger.debug("Acquired migration lock {}", self.name)

    def release(self) -> None:
        """Give the lock up (no-op when not held)."""
        if self._held:
            self._held = False
            self._release()
            logger.debug("Released migration lock {}", self.name)

    def current_holder(self) -> Lease | None:
        """The live holder, or None when the lock is free (probes without waiting)."""
        if self._held:
            return self.read_lease()
        if self._try_acquire(0):
            self._release()
            return None
        return self.read_lease()

    def close(self) -> None:
        """Release the lock if held and free what the mechanism holds (a connection)."""
        self.release()

    def __enter__(self) -> MigrationLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FileMigrationLock(MigrationLock):
    """An OS file lock beside the database file; the OS releases it when the holder dies."""

    POLL_S = 0.002

    def __init__(self, lock_path: Path, timeout_s: float) -> None:
        from filelock import FileLock

        super().__init__(timeout_s)
        self.lock_path = lock_path
        self.lease_path = lock_path.with_name(lock_path.name + ".json")
        self._lock = FileLock(str(lock_path), thread_local=False)

    @property
    def name(self) -> str:
        return str(self.lock_path)

    @property
    def inspect_hint(self) -> str:
        return f"see {self.lease_path} or run `orchestrator-migrate locks`"

    def _try_acquire(self, timeout_s: float) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=timeout_s, poll_interval=self.POLL_S, blocking=timeout_s > 0)
        except Timeout:
            return False
        except OSError as exc:
            raise LockTimeout(f"migration lock {self.lock_path} cannot be created: {exc}") from exc
        return True

    def _release(self) -> None:
        self.lease_path.unlink(missing_ok=True)  # the lease exists while the lock is held
        self._lock.release()

    def _write_lease(self, lease: Lease) -> None:
        tmp = self.lease_path.with_name(self.lease_path.name + f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(asdict(lease)), encoding="utf-8")
            os.replace(tmp, self.lease_path)
        except OSError as exc:
            logger.warning("Could not write lock lease {}: {}", self.lease_path, exc)

    def read_lease(self) -> Lease | None:
        try:
            data = json.loads(self.lease_path.read_text(encoding="utf-8"))
            return Lease(str(data["host"]), int(data["pid"]), str(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


class ProcessLocalLock(MigrationLock):
    """For an in-memory database that no other process can see: nothing to coordinate."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self._lease: Lease | None = None

    @property
    def name(self) -> str:
        return "<in-memory database>"

    def _try_acquire(self, timeout_s: float) -> bool:
        return True

    def _release(self) -> None:
        self._lease = None

    def _write_lease(self, lease: Lease) -> None:
        self._lease = lease

    def read_lease(self) -> Lease | None:
        return self._lease
