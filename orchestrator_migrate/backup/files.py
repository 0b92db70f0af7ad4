"""Backups: a verified, fsynced copy written under a temporary name, then renamed; retention."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Connection

from ..backends.base import Backend
from ..model.backup_info import BackupInfo
from ..model.errors import ConfigError

PREFIX = "backup_"


def backup_id(now: datetime) -> str:
    """backup_YYYYmmdd_HHMMSS_mmm for a moment."""
    return now.strftime(f"{PREFIX}%Y%m%d_%H%M%S_") + f"{now.microsecond // 1000:03d}"


def create(backend: Backend, conn: Connection, directory: Path, now: datetime) -> BackupInfo:
    """Copy the database on conn into directory; never overwrites an existing backup."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = backup_id(now)
    tmp = directory / f".{stem}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        backend.backup_to(conn, tmp)
        _check_while_syncing(backend, tmp)
        suffix = backend.backup_suffix
        final, n = directory / f"{stem}{suffix}", 0
        while True:
            try:
                os.link(tmp, final)  # unlike rename, link refuses to replace a file
                break
            except FileExistsError:
                n += 1
                final = directory / f"{stem}_{n}{suffix}"
        _fsync(directory)
    finally:
        tmp.unlink(missing_ok=True)
    return _info(final)


def _check_while_syncing(backend: Backend, path: Path) -> None:
    """The backend's check of the copy at path while it is fsynced: the check reads the copy
    from memory while the disk writes it, so the two take the longer one's time."""
    failed: list[BaseException] = []

    def sync() -> None:
        try:
            _fsync(path)
        except BaseException as exc:  # raised below, in the caller's thread
            failed.append(exc)

    syncing = threading.Thread(target=sync, name="orchestrator-migrate-backup-fsync")
    syncing.start()
    try:
        backend.check_backup(path)
    finally:
        syncing.join()
    if failed:
        raise failed[0]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _info(path: Path) -> BackupInfo:
    stat = path.stat()
    created = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
    return BackupInfo(path.name.split(".", 1)[0], path, stat.st_size, created)


def listing(directory: Path) -> list[BackupInfo]:
    """The backups in directory, oldest first."""
    if not directory.is_dir():
        return []
    found = [_info(p) for p in directory.iterdir() if p.name.startswith(PREFIX) and p.is_file()]
    return sorted(found, key=lambda b: (b.created_at, b.id))


def find(directory: Path, backup_id: str) -> BackupInfo:
    """The backup with this id (or file name); ConfigError saying where it was looked for."""
    for info in listing(directory):
        if backup_id in (info.id, info.path.name):
            return info
    raise ConfigError(
        f"backup {backup_id!r} not found in {directory}; `orchestrator-migrate backups list`"
        " shows the backups there"
    )


def prune(directory: Path, retention_days: int, now: float | None = None) -> list[BackupInfo]:
    """Remove backups older than retention_days (0 keeps all); returns what was removed."""
    if retention_days <= 0:
        return []
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    removed = []
    for info in listing(directory):
        if info.path.stat().st_mtime < cutoff:
            info.path.unlink(missing_ok=True)
            removed.append(info)
    return removed


def storage_warning(directory: Path, limit_mb: int) -> str | None:
    """A warning when the backups take more than limit_mb MiB (0: never)."""
    if limit_mb <= 0:
        return None
    total = sum(b.size_bytes for b in listing(directory))
    if total > limit_mb * 1024 * 1024:
        return (
            f"Large backup storage usage - consider cleanup: {total / 1048576:.1f} MiB in"
            f" {directory} (limit MCP_TASK_ORCHESTRATOR_BACKUP_WARN_SIZE_MB={limit_mb})"
        )
    return None
