"""A SQLite backup is the database file copied under a read transaction when that file holds the
snapshot (a rollback journal; WAL once checkpointed), else every page through the backup API.
Either way it is one snapshot while writers run: the writer's rows are a prefix, its tally agrees
with them, rows committed during the copy stay out; and a copy that is not intact is refused.
Real files and real writer processes; no timings."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from loguru import logger
from sqlalchemy.engine import make_url

import orchestrator_migrate.backends.sqlite as sqlite_backend
from orchestrator_migrate.apply.runner import execute
from orchestrator_migrate.backends.sqlite import SQLiteBackend
from orchestrator_migrate.config.settings import load_settings
from orchestrator_migrate.context import prepare_run
from orchestrator_migrate.model.errors import RefusedChange

TASKS = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("tasks", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.Text))
"""
TASKS_WITH_NOTES = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("tasks", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.Text),
         sa.Column("notes", sa.Text))
"""
PREFILL = 15_000  # ~35 MB of events: a copy long enough for the writer to run beside it
BODY = 2000  # the length of each event's body
FILE_COPY = "the file, copied under a read transaction"
BACKUP_API = "through the backup API"

# Inserts events 1, 2, 3, ... each in its own transaction with the tally that sums them, until
# the stop file appears; prints the last event committed. Frequent automatic checkpoints (WAL)
# try to move its frames into the database file while a backup copies it. A pause after each
# commit, as an application's writes have: with a rollback journal, a writer that never pauses
# keeps every reader out (its pending lock), backups included.
WRITER = """
import sqlite3, sys, time
from pathlib import Path
db, ready, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
conn = sqlite3.connect(db, timeout=120, isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint=10")
last = conn.execute("SELECT last FROM tally").fetchone()[0]
while not stop.exists():
    last += 1
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO events (id, body) VALUES (?, hex(randomblob(?)))", (last, BODY // 2))
    conn.execute("UPDATE tally SET last = ?, total = total + ?", (last, BODY))
    conn.execute("COMMIT")
    ready.touch()
    time.sleep(0.002)
print(last)
""".replace("BODY", str(BODY))


def _events(path: Path, rows: int, journal_mode: str) -> None:
    """The writer's tables beside the models' (the tool leaves them alone), rows already in."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchone() == (journal_mode,)
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        conn.execute("CREATE TABLE tally (last INTEGER NOT NULL, total INTEGER NOT NULL)")
        conn.execute("BEGIN")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO events (id, body) SELECT i, hex(randomblob(?)) FROM n",
            (rows, BODY // 2),
        )
        conn.execute("INSERT INTO tally VALUES (?, ?)", (rows, rows * BODY))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def _one_snapshot(path: Path) -> int:
    """Check that the copy at path is intact and one moment of the writer's work: events 1..n
    exactly, with the tally of those n. Returns n."""
    copy = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        count, low, high, total = copy.execute(
            "SELECT count(*), min(id), max(id), sum(length(body)) FROM events"
        ).fetchone()
        assert copy.execute("SELECT last, total FROM tally").fetchall() == [(high, total)]
    finally:
        copy.close()
    assert (low, high) == (1, count), "not a prefix of the writer's events"
    assert total == count * BODY
    return int(count)


class Writer:
    """The writer process, started and waited for until it has committed once."""

    def __init__(self, db: Path, workdir: Path) -> None:
        self.ready, self.stop = workdir / "writer.ready", workdir / "writer.stop"
        command = [sys.executable, "-c", WRITER, str(db), str(self.ready), str(self.stop)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not self.ready.exists():
            assert self.proc.poll() is None, "the writer died"
            assert time.monotonic() < deadline, "the writer never committed"
            time.sleep(0.01)

    def finish(self) -> int:
        """Stop it; the last event it committed."""
        self.stop.touch()
        out, _ = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0
        return int(out)


@pytest.fixture
def writer_db(ws: Any, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The workspace's database under TASKS, in the journal mode the test is parametrised with,
    with the writer's tables and PREFILL events."""
    assert ws.cli("--models", ws.write_models("v1", TASKS)).returncode == 0
    _events(ws.db_path, PREFILL, request.param)
    yield ws.db_path


@pytest.fixture
def ways() -> Iterator[list[str]]:
    """How each backup was taken: FILE_COPY or BACKUP_API, from the backend's debug lines."""
    seen: list[str] = []

    def sink(message: Any) -> None:
        text = str(message)
        seen.extend(way for way in (FILE_COPY, BACKUP_API) if way in text)

    handle = logger.add(sink, level="DEBUG", format="{message}")
    yield seen
    logger.remove(handle)


JOURNAL_MODES = pytest.mark.parametrize("writer_db", ["delete", "wal"], indirect=True)


@JOURNAL_MODES
def test_a_migration_backup_with_a_writer_alongside_is_one_snapshot(ws, writer_db, tmp_path):
    writer = Writer(writer_db, tmp_path)
    try:
        run = ws.cli("--models", ws.write_models("v2", TASKS_WITH_NOTES))
    finally:
        last = writer.finish()

    assert run.returncode == 0, run.output
    [backup] = ws.backups()
    assert PREFILL < _one_snapshot(backup) <= last
    copy = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        assert [r[1] for r in copy.execute("PRAGMA table_info(tasks)")] == ["id", "title"]
    finally:
        copy.close()
    assert _one_snapshot(writer_db) == last  # the live database lost nothing either


@JOURNAL_MODES
def test_copies_taken_while_a_writer_commits_are_each_one_snapshot(writer_db, tmp_path, ways):
    backend = SQLiteBackend(make_url(f"sqlite:///{writer_db}"))
    writer = Writer(writer_db, tmp_path)
    taken = []
    try:
        for _ in range(4):
            # The rehearsal's copy: no lock of a migration keeps the writer out meanwhile.
            with backend.throwaway_copy(tmp_path) as url:
                assert url.database is not None
                taken.append(_one_snapshot(Path(url.database)))
    finally:
        last = writer.finish()

    assert taken[0] > PREFILL and taken == sorted(taken) and taken[-1] <= last
    assert len(ways) == 4
    if _journal_mode(writer_db) == "delete":
        assert set(ways) == {FILE_COPY}  # the read lock keeps writers out: always the file


@JOURNAL_MODES
def test_rows_committed_while_the_file_is_copied_stay_out_of_the_copy(
    writer_db, tmp_path, monkeypatch, ways
):
    """After the snapshot is taken and before the file is copied, another connection commits
    more events and checkpoints: WAL lets it commit, but not move its frames into the file
    (the snapshot's read mark); a rollback journal does not let it commit at all."""
    wal = _journal_mode(writer_db) == "wal"
    copy_file = sqlite_backend._copy_file
    committed: list[int] = []

    def commit_then_copy(*args: Any) -> bool:
        other = sqlite3.connect(writer_db, timeout=0, isolation_level=None)
        try:
            for n in range(PREFILL + 1, PREFILL + 201):
                other.execute("BEGIN IMMEDIATE")
                other.execute("INSERT INTO events (id, body) VALUES (?, 'x')", (n,))
                other.execute("UPDATE tally SET last = ?, total = total + 1", (n,))
                other.execute("COMMIT")
                committed.append(n)
            other.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
        finally:
            other.close()
        return copy_file(*args)

    monkeypatch.setattr(sqlite_backend, "_copy_file", commit_then_copy)
    backend = SQLiteBackend(make_url(f"sqlite:///{writer_db}"))
    with backend.throwaway_copy(tmp_path) as url:
        assert url.database is not None
        assert _one_snapshot(Path(url.database)) == PREFILL

    assert ways == [FILE_COPY]
    assert len(committed) == (200 if wal else 0)
    conn = sqlite3.connect(writer_db)
    try:
        newest = conn.execute("SELECT max(id) FROM events").fetchone()[0]
    finally:
        conn.close()
    assert newest == max(committed, default=PREFILL)


@pytest.mark.parametrize("writer_db", ["wal"], indirect=True)
def test_a_wal_checkpoint_held_back_by_a_reader_sends_the_backup_through_the_api(
    ws, writer_db, ways
):
    """A reader on an older snapshot keeps the newest frames out of the database file: the
    file alone would miss them, so the pages are copied, the WAL's rows included."""
    reader = sqlite3.connect(writer_db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM events").fetchone() == (PREFILL,)
        other = sqlite3.connect(writer_db, isolation_level=None)
        other.execute("PRAGMA wal_autocheckpoint=0")
        other.execute("INSERT INTO events (id, body) VALUES (?, 'late')", (PREFILL + 1,))
        other.execute("UPDATE tally SET last = last + 1, total = total + 4")
        other.close()

        result = _run(ws, notes=True)
    finally:
        reader.close()

    assert result.outcome.value == "applied" and result.backup_info is not None
    assert ways == [BACKUP_API]
    copy = sqlite3.connect(f"file:{result.backup_info.path}?mode=ro", uri=True)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        late = copy.execute("SELECT body FROM events WHERE id = ?", (PREFILL + 1,)).fetchall()
    finally:
        copy.close()
    assert late == [("late",)]


# ------------------------------------------------------------------ a copy that is not intact


def _corrupt_middle(path: Path) -> None:
    data_size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek((data_size // 4096 // 2) * 4096)
        f.write(b"\xde\xad\xbe\xef" * 1024)


def _cut_short(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2 // 4096 * 4096)


def _models(notes: bool) -> sa.MetaData:
    md = sa.MetaData()
    columns = [sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.Text)]
    if notes:
        columns.append(sa.Column("notes", sa.Text))
    sa.Table("tasks", md, *columns)
    return md


def _run(ws: Any, notes: bool) -> Any:
    settings = load_settings({"db_url": ws.url, "base_dir": str(ws.root)}, environ={})
    return execute(prepare_run(settings, _models(notes)))


def _filled(ws: Any) -> list[str]:
    assert _run(ws, notes=False).outcome.value == "applied"
    ws.script(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
        " INSERT INTO tasks (id, title) SELECT i, hex(randomblob(200)) FROM n;"
    )
    return list(ws.dump())


@pytest.mark.parametrize("damage", [_corrupt_middle, _cut_short], ids=["corrupt", "short"])
def test_a_copy_damaged_after_it_was_written_is_refused_and_nothing_changes(
    ws, monkeypatch, damage: Callable[[Path], None]
):
    before = _filled(ws)
    copy_file = sqlite_backend._copy_file

    def copy_then_damage(source: Path, destination: Path, *rest: Any) -> bool:
        copied = copy_file(source, destination, *rest)
        damage(destination)
        return copied

    monkeypatch.setattr(sqlite_backend, "_copy_file", copy_then_damage)
    with pytest.raises(RefusedChange, match="cannot write a backup"):
        _run(ws, notes=True)

    assert ws.dump() == before
    assert ws.backups() == []
    assert not list(ws.backup_dir.glob(".*.tmp"))


def test_without_a_python_to_copy_the_file_the_backup_api_takes_it(ws, monkeypatch, ways):
    before = _filled(ws)
    monkeypatch.setattr(sys, "executable", "")  # an embedding program: no child to start

    result = _run(ws, notes=True)

    assert result.outcome.value == "applied" and result.backup_info is not None
    assert ways == [BACKUP_API]
    copy = sqlite3.connect(f"file:{result.backup_info.path}?mode=ro", uri=True)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert list(copy.iterdump()) == before
    finally:
        copy.close()
