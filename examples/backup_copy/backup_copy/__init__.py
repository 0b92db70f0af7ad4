"""An orchestrator_migrate hook: after each verified backup, copy it to a second directory
(another disk, a mounted bucket) and keep the newest BACKUP_COPY_KEEP copies there.

Install this package next to orchestrator-migrate (it registers itself in the entry-point group
`orchestrator_migrate.hooks`), or name it in MCP_TASK_ORCHESTRATOR_HOOKS=backup_copy:copy_backup.

    BACKUP_COPY_DIR   where the copies go (required; the hook stops the run if it is unset,
                      so that no migration runs without its second copy)
    BACKUP_COPY_KEEP  how many copies to keep, newest first (default 10; 0 keeps all)

The copy is written under a temporary name, fsynced, checked against the backup's SHA-256 and
only then renamed into place, so the directory never holds a half-written backup. A failure
raises, which stops the migration before anything changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from orchestrator_migrate import AfterBackup, Event


def copy_backup(event: Event) -> None:
    """The hook: act on AfterBackup, ignore the other events."""
    if not isinstance(event, AfterBackup):
        return
    target_dir = os.environ.get("BACKUP_COPY_DIR", "").strip()
    if not target_dir:
        raise RuntimeError("BACKUP_COPY_DIR is not set: where should the backup be copied?")
    keep = int(os.environ.get("BACKUP_COPY_KEEP", "10"))
    copied = copy_verified(event.backup.path, Path(target_dir))
    prune(Path(target_dir), keep, prefix="backup_", protect=copied)


def copy_verified(source: Path, directory: Path) -> Path:
    """Copy source into directory; the copy is complete and identical, or absent."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / source.name
    if target.exists():
        raise FileExistsError(f"{target} exists already; a backup copy is never overwritten")
    partial = directory / f".{source.name}.partial"
    fd = os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)  # as private as the backup
    with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())
    if _sha256(partial) != _sha256(source):
        partial.unlink()
        raise OSError(f"the copy of {source} in {directory} does not match it")
    partial.rename(target)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def prune(directory: Path, keep: int, prefix: str, protect: Path) -> list[Path]:
    """Remove all but the newest `keep` copies (by name: backup ids sort by time)."""
    if keep <= 0:
        return []
    copies = sorted(p for p in directory.iterdir() if p.name.startswith(prefix) and p.is_file())
    removed = [p for p in copies[:-keep] if p != protect]
    for path in removed:
        path.unlink()
    return removed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
