"""The servers' client tools for the long work, run with its progress told: a dump's size as it
grows (pg_dump, mariadb-dump; its final size is not known beforehand), and how much of a
script a client has read (psql, mariadb restoring a backup)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO

from ..progress import Progress, tracked

POLL_S = 0.25
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 3600.0


def dump_to(
    command: list[str], env: dict[str, str], destination: Path, progress: Progress, what: str
) -> None:
    """Run a tool that writes destination, telling progress its size as it grows; OSError with
    the tool's message when it fails or is missing."""
    with _running(command, env) as (proc, errors):
        with tracked(progress, what, None, "bytes") as advance:
            deadline, told = time.monotonic() + TIMEOUT_S, 0
            while True:
                try:
                    proc.wait(timeout=POLL_S)
                    finished = True
                except subprocess.TimeoutExpired:
                    finished = False
                size = destination.stat().st_size if destination.exists() else 0
                if size > told:
                    advance(size - told)
                    told = size
                if finished:
                    break
                if time.monotonic() > deadline:
                    raise OSError(f"{command[0]} did not finish within {TIMEOUT_S:.0f}s")
        _check(command, proc, errors)


def feed(
    command: list[str], env: dict[str, str], script: str, progress: Progress, what: str
) -> None:
    """Run a tool that reads script on its stdin, telling progress the bytes it has taken;
    OSError with the tool's message when it fails or is missing."""
    data = script.encode()
    with _running(command, env, stdin=True) as (proc, errors):
        with tracked(progress, what, len(data), "bytes") as advance:
            assert proc.stdin is not None
            try:
                for start in range(0, len(data), CHUNK_BYTES):
                    chunk = data[start : start + CHUNK_BYTES]
                    proc.stdin.write(chunk)  # blocks while the tool has not read the last one
                    advance(len(chunk))
                proc.stdin.close()
            except BrokenPipeError:  # it stopped reading (an error): its message says why
                pass
            proc.wait(timeout=TIMEOUT_S)
        _check(command, proc, errors)


@contextmanager
def _running(
    command: list[str], env: dict[str, str], stdin: bool = False
) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """The started tool and a file collecting its stderr (a file: a pipe nobody reads would
    stall it); it is killed if it is still running when the block ends."""
    with ExitStack() as stack:
        errors = stack.enter_context(tempfile.TemporaryFile())
        try:
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        except FileNotFoundError as exc:
            raise OSError(f"{command[0]} is not installed (the database's client tools)") from exc
        try:
            yield proc, errors
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdin is not None and not proc.stdin.closed:
                with suppress(BrokenPipeError):
                    proc.stdin.close()


def _check(command: list[str], proc: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
    if proc.returncode != 0:
        errors.seek(0)
        said = errors.read().decode("utf-8", "replace").strip()[:500]
        raise OSError(f"{command[0]} failed: {said}")
