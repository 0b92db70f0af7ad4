"""Shared fixtures: real SQLite files, real model modules, the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PREFIX = "MCP_TASK_ORCHESTRATOR_"


@dataclass
class CliResult:
    """A finished CLI process."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Workspace:
    """A base dir with a models folder on PYTHONPATH and helpers to run the CLI against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models_dir = root / "models_src"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = root / ".task_orchestrator" / "task_orchestrator.db"
        self.backup_dir = root / ".task_orchestrator" / "backups"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def write_models(self, module: str, source: str) -> str:
        """Write a models module; returns its MODULE:md reference (the module defines md)."""
        (self.models_dir / f"{module}.py").write_text(textwrap.dedent(source))
        return f"{module}:md"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.models_dir), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        env[PREFIX + "BASE_DIR"] = str(self.root)
        env.update(extra or {})
        return env

    def cli(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> CliResult:
        """Run `python -m orchestrator_migrate ARGS` in the workspace."""
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator_migrate", *args],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the CLI without waiting."""
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator_migrate", *args],
            cwd=self.root,
            env=self.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the database file and return its rows."""
        with sqlite3.connect(self.db_path) as conn:
            rows = conn.execute(statement, params).fetchall()
        conn.close()
        return rows

    def script(self, script: str) -> None:
        """Run several statements on the database file."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path)
        try:
            conn.executescript(script)
            conn.commit()
        finally:
            conn.close()

    def dump(self) -> list[str]:
        """The whole database as SQL, for before/after equality."""
        conn = sqlite3.connect(self.db_path)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()

    def backups(self) -> list[Path]:
        if not self.backup_dir.is_dir():
            return []
        return sorted(p for p in self.backup_dir.iterdir() if p.name.startswith("backup_"))

    def history_rows(self) -> list[tuple[Any, ...]]:
        return self.sql("SELECT id, outcome, backup_id, error FROM orchestrator_migrate_history")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture
def api_env(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """For in-process API calls: the workspace is the current directory, and no
    MCP_TASK_ORCHESTRATOR_* variable from outside leaks into the settings."""
    monkeypatch.chdir(ws.root)
    for key in list(os.environ):
        if key.upper().startswith(PREFIX):
            monkeypatch.delenv(key)


WriteModels = Callable[[str, str], str]


PG_ADMIN_URL = os.environ.get(
    "OM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN_URL = os.environ.get("OM_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _scratch_database(admin_url: str, kind: str):
    """Create a database of its own for one test; drop it afterwards."""
    import uuid

    import sqlalchemy as sa

    name = f"om_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        pytest.fail(f"{kind} server not reachable at {admin_url}: {exc}")
    url = sa.engine.make_url(admin_url).set(database=name)
    try:
        yield url
    finally:
        with engine.connect() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        engine.dispose()


@pytest.fixture
def pg_url():
    yield from _scratch_database(PG_ADMIN_URL, "postgresql")


@pytest.fixture
def mysql_url():
    yield from _scratch_database(MYSQL_ADMIN_URL, "mysql")


@dataclass
class Db:
    """A scratch database on one of the three backends, and the few queries that differ."""

    kind: str  # "sqlite", "postgresql" or "mysql"
    url: str  # with the password, for settings and engines

    def engine(self) -> Any:
        import sqlalchemy as sa

        return sa.create_engine(self.url)

    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements in one transaction; the rows of the last one."""
        engine = self.engine()
        try:
            with engine.begin() as conn:
                result: list[tuple[Any, ...]] = []
                for statement in statements:
                    rows = conn.exec_driver_sql(statement)
                    result = [tuple(r) for r in rows] if rows.returns_rows else []
                return result
        finally:
            engine.dispose()

    def inspector_call(self, name: str, *args: Any) -> Any:
        """One call on a fresh SQLAlchemy inspector, e.g. ("get_columns", "users")."""
        import sqlalchemy as sa

        engine = self.engine()
        try:
            with engine.connect() as conn:
                return getattr(sa.inspect(conn), name)(*args)
        finally:
            engine.dispose()

    def tables(self) -> set[str]:
        """The tables, without this tool's own."""
        names = self.inspector_call("get_table_names")
        return {t for t in names if not t.startswith("orchestrator_migrate")}

    def columns(self, table: str) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in self.inspector_call("get_columns", table)}

    @property
    def backup_glob(self) -> str:
        return {"sqlite": "backup_*.db", "postgresql": "backup_*.dump"}.get(
            self.kind, "backup_*.sql"
        )


BACKENDS = ["sqlite", "postgresql", "mysql"]


@pytest.fixture(params=BACKENDS)
def any_db(request, ws: Workspace) -> Db:
    """The same test on a SQLite file, a PostgreSQL database and a MariaDB database."""
    if request.param == "sqlite":
        ws.db_path.parent.mkdir(parents=True, exist_ok=True)
        return Db("sqlite", ws.url)
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return Db(request.param, url.render_as_string(hide_password=False))
