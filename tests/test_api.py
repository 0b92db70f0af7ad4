"""The Python API in-process on real SQLite files: the seed's names and the modern functions."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestrator_migrate import (
    AutoMigrationSystem,
    BackupInfo,
    RefusedChange,
    check,
    execute_startup_migration,
    initialize_database_with_migration,
    migrate,
)

PREFIX = "MCP_TASK_ORCHESTRATOR_"


def models_v1(table: str = "tasks") -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        table, md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.String(100))
    )
    return md


def models_v2_nullable(table: str = "tasks") -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        table,
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(100)),
        sa.Column("notes", sa.Text, nullable=True),
    )
    return md


def models_v2_not_null(table: str = "tasks") -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        table,
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(100)),
        sa.Column("priority", sa.Integer, nullable=False),
    )
    return md


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def execute(path: Path, statement: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(statement).fetchall()
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    rows = execute(path, "SELECT name FROM sqlite_master WHERE type='table'")
    return {name for (name,) in rows if not name.startswith("orchestrator_migrate")}


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cwd (the default base dir) is tmp_path and no MCP_* variable leaks in from outside."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.upper().startswith(PREFIX):
            monkeypatch.delenv(key)


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    """A database at models_v1 with one row."""
    path = tmp_path / "app.db"
    assert migrate(db_url=url(path), metadata=models_v1(), backup=False).success
    execute(path, "INSERT INTO tasks (title) VALUES ('a')")
    return path


# ---------------------------------------------------------------- seed API


def test_execute_startup_migration_returns_the_seed_result(tmp_path: Path) -> None:
    path = tmp_path / "data" / "app.db"
    result = execute_startup_migration(url(path), metadata=models_v1())
    assert result.success is True
    assert result.migration_needed is True
    assert result.operations_executed == 1
    assert isinstance(result.execution_time_ms, int) and result.execution_time_ms >= 0
    assert result.backup_created is False  # an empty database needs no backup
    assert result.backup_info is None
    assert result.error_message is None
    assert list(result.warnings) == []
    assert tables(path) == {"tasks"}

    again = execute_startup_migration(url(path), metadata=models_v1())
    assert again.success is True
    assert again.migration_needed is False
    assert again.operations_executed == 0


def test_execute_startup_migration_backs_up_before_changing_data(populated: Path) -> None:
    result = execute_startup_migration(url(populated), metadata=models_v2_nullable())
    assert result.success is True
    assert result.operations_executed == 1
    assert result.backup_created is True
    assert isinstance(result.backup_info, BackupInfo)
    assert result.backup_info.path.is_file()
    assert result.backup_info.size_bytes > 0


def test_execute_startup_migration_reports_kept_tables_as_warnings(populated: Path) -> None:
    execute(populated, "CREATE TABLE legacy (id INTEGER PRIMARY KEY)")
    result = execute_startup_migration(url(populated), metadata=models_v1())
    assert result.success is True
    assert any("legacy" in w for w in result.warnings), result.warnings
    assert "legacy" in tables(populated)


def test_execute_startup_migration_failure_returns_a_failed_result(populated: Path) -> None:
    before = dump(populated)
    result = execute_startup_migration(url(populated), metadata=models_v2_not_null())
    assert result.success is False
    assert isinstance(result.error_message, str) and "priority" in result.error_message
    assert result.operations_executed == 0
    assert dump(populated) == before


def test_a_refused_result_still_says_a_migration_was_needed(populated: Path) -> None:
    """migration_needed: 'True when the models and the database differed at the start'."""
    result = execute_startup_migration(url(populated), metadata=models_v2_not_null())
    assert result.success is False
    assert result.migration_needed is True


def test_auto_migration_system_check_migration_status(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    status = AutoMigrationSystem(url(path), metadata=models_v1()).check_migration_status()
    assert status["migration_needed"] is True
    assert isinstance(status["differences"], list)
    assert any("tasks" in d for d in status["differences"])
    assert not path.exists()

    assert migrate(db_url=url(path), metadata=models_v1()).success
    status = AutoMigrationSystem(url(path), metadata=models_v1()).check_migration_status()
    assert status["migration_needed"] is False
    assert status["differences"] == []


def test_execute_auto_migration_force_backup_overrides_backup_false(
    tmp_path: Path, populated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PREFIX + "BACKUP", "false")
    backups = tmp_path / ".task_orchestrator" / "backups"
    system = AutoMigrationSystem(url(populated), metadata=models_v2_nullable())
    result = system.execute_auto_migration(force_backup=True)
    assert result.success is True, result.error_message
    assert result.backup_created is True
    assert result.backup_info is not None and result.backup_info.path.parent == backups
    assert result.backup_info.path.is_file()


def test_execute_auto_migration_without_force_respects_backup_false(
    tmp_path: Path, populated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PREFIX + "BACKUP", "false")
    system = AutoMigrationSystem(url(populated), metadata=models_v2_nullable())
    result = system.execute_auto_migration(force_backup=False)
    assert result.success is True, result.error_message
    assert result.backup_created is False
    assert not (tmp_path / ".task_orchestrator" / "backups").exists()


def test_initialize_database_with_migration_returns_a_bool(tmp_path: Path) -> None:
    base = tmp_path / "server"
    ok = initialize_database_with_migration(
        base_dir=base, db_path="data/server.db", metadata=models_v1()
    )
    assert ok is True
    assert tables(base / "data" / "server.db") == {"tasks"}

    execute(base / "data" / "server.db", "INSERT INTO tasks (title) VALUES ('a')")
    refused = initialize_database_with_migration(
        base_dir=base, db_path="data/server.db", metadata=models_v2_not_null()
    )
    assert refused is False


# ---------------------------------------------------------------- modern API


def test_migrate_raises_refused_change(populated: Path) -> None:
    before = dump(populated)
    with pytest.raises(RefusedChange) as excinfo:
        migrate(db_url=url(populated), metadata=models_v2_not_null())
    assert "priority" in str(excinfo.value)
    assert dump(populated) == before


def test_check_never_writes_a_missing_database(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "app.db"
    before = listing(tmp_path)
    result = check(db_url=url(path), metadata=models_v1())
    assert result.migration_needed is True
    assert result.operations_executed == 0
    assert listing(tmp_path) == before


def test_check_never_writes_an_existing_database(tmp_path: Path, populated: Path) -> None:
    for metadata in (models_v2_nullable(), models_v2_not_null(), models_v1()):
        before_files, before_bytes = listing(tmp_path), digest(populated)
        result = check(db_url=url(populated), metadata=metadata)
        assert result.operations_executed == 0
        assert listing(tmp_path) == before_files
        assert digest(populated) == before_bytes
    assert "notes" not in {r[1] for r in execute(populated, "PRAGMA table_info(tasks)")}


# ---------------------------------------------------------------- no global state


def test_two_threads_on_two_databases_do_not_interfere(tmp_path: Path) -> None:
    for round_ in range(3):
        a_path = tmp_path / f"a{round_}" / "a.db"
        b_path = tmp_path / f"b{round_}" / "b.db"
        a_backups = tmp_path / f"a{round_}" / "backups"
        b_backups = tmp_path / f"b{round_}" / "backups"
        assert migrate(db_url=url(a_path), metadata=models_v1("alpha"), backup=False).success
        execute(a_path, "INSERT INTO alpha (title) VALUES ('a')")

        barrier = threading.Barrier(2)
        results: dict[str, object] = {}

        def job(
            name: str,
            barrier: threading.Barrier = barrier,
            results: dict[str, object] = results,
            **kwargs: object,
        ) -> None:
            barrier.wait()
            try:
                results[name] = migrate(**kwargs)
            except BaseException as exc:
                results[name] = exc

        threads = [
            threading.Thread(
                target=job,
                args=("a",),
                kwargs={
                    "db_url": url(a_path),
                    "metadata": models_v2_nullable("alpha"),
                    "backup_dir": a_backups,
                },
            ),
            threading.Thread(
                target=job,
                args=("b",),
                kwargs={
                    "db_url": url(b_path),
                    "metadata": models_v1("beta"),
                    "backup_dir": b_backups,
                    "dry_run": False,
                },
            ),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        a, b = results["a"], results["b"]
        assert not isinstance(a, BaseException), a
        assert not isinstance(b, BaseException), b
        assert a.success and b.success
        assert [op.description for op in a.plan.operations] != []
        assert all("alpha" in op.description for op in a.plan.operations)
        assert all("beta" in op.description for op in b.plan.operations)
        assert tables(a_path) == {"alpha"}
        assert tables(b_path) == {"beta"}
        assert "notes" in {r[1] for r in execute(a_path, "PRAGMA table_info(alpha)")}
        assert a.backup_created and a.backup_info.path.parent == a_backups
        assert not b.backup_created and not b_backups.exists()
