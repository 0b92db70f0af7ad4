"""Long work tells its progress: a table rebuild's rows, a backup's and a restore's bytes, as
log lines (at most every second once the work has run a second), or as a bar on a terminal,
whose library loads only when such work starts."""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import subprocess
import sys
import termios
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import Db, Workspace
from loguru import logger

from orchestrator_migrate.apply.runner import execute
from orchestrator_migrate.config.settings import load_settings
from orchestrator_migrate.context import prepare_run
from orchestrator_migrate.model.outcome import Outcome
from orchestrator_migrate.progress import BarProgress, LogProgress, Progress, for_stream
from orchestrator_migrate.undo.restore import find_backup, restore

ROWS = 20_000


def _models(title_not_null: bool = False, notes: bool = False) -> sa.MetaData:
    md = sa.MetaData()
    columns = [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(100), nullable=not title_not_null),
    ]
    if notes:
        columns.append(sa.Column("notes", sa.String(100)))
    sa.Table("tasks", md, *columns)
    return md


def _settings(ws: Workspace, url: str):
    return load_settings({"db_url": url, "base_dir": str(ws.root)}, environ={})


def _fill(db: Db, rows: int) -> None:
    if db.kind == "sqlite":
        series = (
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})"
            " INSERT INTO tasks (id, title) SELECT i, 'task number ' || i FROM n"
        )
        db.sql(series)
        return
    values = ", ".join(f"({i}, 'task number {i}')" for i in range(1, rows + 1))
    db.sql(f"INSERT INTO tasks (id, title) VALUES {values}")


@dataclass
class Task:
    what: str
    total: int | None
    unit: str
    done: list[int] = field(default_factory=list)  # the running total after each advance
    finished: bool = False


class Recording:
    """A Progress that keeps every call, to check the numbers exactly."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def start(self, what: str, total: int | None, unit: str) -> None:
        self.tasks.append(Task(what, total, unit))

    def advance(self, n: int) -> None:
        task = self.tasks[-1]
        assert n > 0, f"{task.what}: advanced by {n}"
        task.done.append((task.done[-1] if task.done else 0) + n)

    def finish(self) -> None:
        self.tasks[-1].finished = True

    def one(self, prefix: str) -> Task:
        found = [t for t in self.tasks if t.what.startswith(prefix)]
        assert len(found) == 1, [t.what for t in self.tasks]
        return found[0]


def _sane(task: Task) -> int:
    """Finished, never past its total, ending at it; returns the amount done."""
    assert task.finished, task.what
    assert task.done, f"{task.what}: no progress told"
    if task.total is not None:
        assert all(d <= task.total for d in task.done), task
        assert task.done[-1] == task.total, task
    return task.done[-1]


@pytest.fixture
def log_lines():
    """The INFO messages logged while the test runs."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message).rstrip("\n")), format="{message}")
    yield lines
    logger.remove(sink)


def _recording_run(ws: Workspace, db: Db, metadata: sa.MetaData, progress: Progress):
    return execute(prepare_run(_settings(ws, db.url), metadata, progress=progress))


# ---------------------------------------------------------------- a table rebuild


def test_a_rebuild_logs_rows_done_of_total_and_ends_at_the_total(ws, log_lines) -> None:
    db = Db("sqlite", ws.url)
    ws.db_path.parent.mkdir(parents=True)
    assert _recording_run(ws, db, _models(), LogProgress()).outcome is Outcome.APPLIED
    _fill(db, ROWS)
    log_lines.clear()

    # title becomes NOT NULL: a rebuild that copies every row. Lines from the first moment on.
    result = _recording_run(ws, db, _models(title_not_null=True), LogProgress(0, 0))

    assert result.outcome is Outcome.APPLIED
    pattern = re.compile(r"^Rebuilding table tasks: (\d+)/(\d+) rows \((\d+)%\), \d+ rows/s, (.+)$")
    lines = [m for m in map(pattern.match, log_lines) if m]
    assert len(lines) >= 2, log_lines
    done = [int(m.group(1)) for m in lines]
    assert {int(m.group(2)) for m in lines} == {ROWS}
    assert done == sorted(done) and all(d <= ROWS for d in done), done
    assert done[-1] == ROWS and lines[-1].group(3) == "100"
    assert lines[-1].group(4).startswith("took ")
    assert all(m.group(4).endswith("s left") for m in lines[:-1]), [m.group(0) for m in lines]
    assert db.sql("SELECT count(*) FROM tasks") == [(ROWS,)]


def test_the_rebuild_copy_still_stops_at_the_time_limit(ws) -> None:
    """The copy's progress and the time limit share SQLite's one progress handler."""
    db = Db("sqlite", ws.url)
    ws.db_path.parent.mkdir(parents=True)
    assert _recording_run(ws, db, _models(), LogProgress()).outcome is Outcome.APPLIED
    _fill(db, ROWS)
    md = _models(title_not_null=True)
    costly = "length(hex(zeroblob(100000 + length(title)))) > 0"  # the copy outlasts the limit
    md.tables["tasks"].append_constraint(sa.CheckConstraint(costly, name="ck_slow"))
    settings = load_settings(
        {"db_url": db.url, "base_dir": str(ws.root), "migration_timeout": 300}, environ={}
    )
    recording = Recording()
    from orchestrator_migrate.model.errors import MigrationFailed, RefusedChange

    with pytest.raises((MigrationFailed, RefusedChange)) as failed:
        execute(prepare_run(settings, md, progress=recording))
    if isinstance(failed.value, MigrationFailed):  # not refused on its estimate: it ran
        assert "MIGRATION_TIMEOUT" in str(failed.value)
        copy = recording.one("Rebuilding table tasks")
        assert copy.finished and all(d < ROWS for d in copy.done), copy.done[-3:]
    assert db.sql("SELECT count(*) FROM tasks WHERE title IS NOT NULL") == [(ROWS,)]


# ---------------------------------------------------------------- backup and restore


def test_backup_and_restore_tell_the_bytes_done(ws, any_db: Db) -> None:
    assert _recording_run(ws, any_db, _models(), LogProgress()).outcome is Outcome.APPLIED
    _fill(any_db, 2_000)
    recording = Recording()

    applied = _recording_run(ws, any_db, _models(notes=True), recording)

    assert applied.outcome is Outcome.APPLIED and applied.backup_info is not None
    backup = recording.one("Backing up")
    assert backup.unit == "bytes"
    written = _sane(backup)
    if any_db.kind == "sqlite":  # its size is known beforehand: the database's pages
        assert backup.total == applied.backup_info.size_bytes
    else:  # a dump's size is not: the bytes it has written, as it writes them
        assert backup.total is None
        assert written == applied.backup_info.size_bytes

    recording = Recording()
    run = prepare_run(_settings(ws, any_db.url), sa.MetaData(), progress=recording)
    restored = restore(run, find_backup(run, applied.backup_info.id), "test")

    assert restored.outcome is Outcome.APPLIED
    put_back = recording.one(f"Restoring {applied.backup_info.path.name}")
    assert put_back.unit == "bytes" and put_back.total is not None
    _sane(put_back)
    _sane(recording.one("Backing up"))  # the database before the restore
    assert "notes" not in any_db.columns("tasks")
    assert any_db.sql("SELECT count(*) FROM tasks") == [(2_000,)]


def test_backup_and_restore_log_their_progress_lines(ws, any_db: Db, log_lines) -> None:
    assert _recording_run(ws, any_db, _models(), LogProgress()).outcome is Outcome.APPLIED
    _fill(any_db, 500)
    applied = _recording_run(ws, any_db, _models(notes=True), LogProgress(0, 0))
    assert applied.backup_info is not None
    run = prepare_run(_settings(ws, any_db.url), sa.MetaData(), progress=LogProgress(0, 0))
    restore(run, find_backup(run, applied.backup_info.id), "test")

    size = r"\d+\.\d (B|[KMG]iB)"
    with_total = re.compile(rf"^(Backing up|Restoring) .+: \d+\.\d/{size} \(\d+%\), {size}/s, .+$")
    without = re.compile(rf"^Backing up .+: {size}, {size}/s(, took .+)?$")
    backing = [line for line in log_lines if line.startswith("Backing up")]
    restoring = [line for line in log_lines if line.startswith("Restoring")]
    assert backing and restoring, log_lines
    shapes = (with_total,) if any_db.kind == "sqlite" else (with_total, without)
    for line in backing + restoring:
        assert any(shape.match(line) for shape in shapes), line
    assert restoring[-1].split(", ")[-1].startswith("took ")
    assert "(100%)" in restoring[-1]


# ---------------------------------------------------------------- the reporters


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_start_after_a_second_and_come_at_most_every_second(log_lines) -> None:
    clock = Clock()
    progress = LogProgress(clock=clock)
    progress.start("Rebuilding table tasks", 1_000_000, "rows")
    for at, rows in ((0.5, 100_000), (1.0, 300_000), (1.5, 200_000), (2.0, 200_000)):
        clock.now = at
        progress.advance(rows)
    clock.now = 2.5
    progress.advance(200_000)
    progress.finish()
    assert log_lines == [
        "Rebuilding table tasks: 400000/1000000 rows (40%), 400000 rows/s, 2s left",
        "Rebuilding table tasks: 800000/1000000 rows (80%), 400000 rows/s, 0s left",
        "Rebuilding table tasks: 1000000/1000000 rows (100%), 400000 rows/s, took 2.5s",
    ]

    log_lines.clear()
    progress.start("Backing up db", None, "bytes")  # a quick one says nothing
    clock.now = 2.9
    progress.advance(2**20)
    progress.finish()
    assert log_lines == []

    progress.start("Backing up app (pg_dump)", None, "bytes")  # a size not known beforehand
    clock.now = 4.9
    progress.advance(12 * 2**20)
    progress.finish()
    assert log_lines == [
        "Backing up app (pg_dump): 12.0 MiB, 6.0 MiB/s",
        "Backing up app (pg_dump): 12.0 MiB, 6.0 MiB/s, took 2.0s",
    ]


def test_the_bar_is_drawn_on_the_stream_and_chosen_for_a_terminal() -> None:
    stream = io.StringIO()
    bar = BarProgress(stream, after_s=0)
    bar.start("Rebuilding table tasks", 1000, "rows")
    bar.advance(400)
    bar.advance(600)
    bar.finish()
    drawn = stream.getvalue()
    assert "Rebuilding table tasks" in drawn and "100%" in drawn and "1.00k/1.00k" in drawn

    assert isinstance(for_stream(io.StringIO()), LogProgress)
    main, other = os.openpty()
    with os.fdopen(other, "w") as terminal:
        assert isinstance(for_stream(terminal), BarProgress)
    os.close(main)


def _on_a_terminal(code: str, cwd: Path, env: dict[str, str]) -> tuple[str, str]:
    """Run python code with its stderr on a terminal; (stdout, what the terminal showed)."""
    main, other = os.openpty()
    # A terminal has a size (tqdm draws nothing on one 0 columns wide).
    fcntl.ioctl(other, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=other
    )
    os.close(other)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(main)
    assert proc.returncode == 0, shown.decode(errors="replace")
    return out.decode(), shown.decode(errors="replace")


def test_a_rebuild_on_a_terminal_draws_a_bar(ws) -> None:
    ws.db_path.parent.mkdir(parents=True)
    db = Db("sqlite", ws.url)
    assert _recording_run(ws, db, _models(), LogProgress()).outcome is Outcome.APPLIED
    _fill(db, ROWS)
    code = textwrap.dedent(
        f"""
        import sys
        import sqlalchemy as sa
        from orchestrator_migrate.apply.runner import execute
        from orchestrator_migrate.config.settings import load_settings
        from orchestrator_migrate.context import prepare_run
        from orchestrator_migrate.progress import BarProgress
        md = sa.MetaData()
        sa.Table("tasks", md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("title", sa.String(100), nullable=False))
        overrides = {{"db_url": {ws.url!r}, "base_dir": {str(ws.root)!r}}}
        settings = load_settings(overrides, environ={{}})
        print("tqdm" in sys.modules)
        execute(prepare_run(settings, md, progress=BarProgress(sys.stderr, after_s=0)))
        print("tqdm" in sys.modules)
        """
    )
    out, shown = _on_a_terminal(code, ws.root, ws.env())
    assert out.split() == ["False", "True"]  # loaded when the work started
    assert "Rebuilding table tasks: 100%" in shown and "20.0k/20.0k" in shown, shown
    assert "Backing up" in shown, shown


def test_the_bar_library_is_not_loaded_by_an_up_to_date_start(ws) -> None:
    ref = ws.write_models(
        "m",
        """
        import sqlalchemy as sa
        md = sa.MetaData()
        sa.Table("tasks", md, sa.Column("id", sa.Integer, primary_key=True))
        """,
    )
    code = textwrap.dedent(
        f"""
        import sys
        from orchestrator_migrate.cli import main
        assert main(["run", "--models", {ref!r}]) == 0  # creates the table
        assert main(["run", "--models", {ref!r}]) == 0  # up to date
        assert main(["check", "--models", {ref!r}]) == 0
        print("tqdm" in sys.modules)
        """
    )
    out, _ = _on_a_terminal(code, ws.root, ws.env())
    assert out.splitlines()[-1] == "False"
