"""The small conventions, through the real CLI: --version; a driver that is not installed; a
database that cannot be opened or reached. Each a one-line message that names what is wrong and
exit 2, with no exception class names and nothing created or changed."""

from __future__ import annotations

import re
import socket
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, CliResult, Workspace

from orchestrator_migrate.version import __version__

MODELS = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("tasks", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.Text))
"""

COMMANDS = ("run", "check", "plan")
ADMIN = {"postgresql": PG_ADMIN_URL, "mysql": MYSQL_ADMIN_URL}
# What must never reach a user: a driver's or SQLAlchemy's exception, or its module.
LEAKS = re.compile(r"\w+(Error|Exception)\b|psycopg\.|pymysql\.|sqlalchemy|Traceback")


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ - ")


def _error_line(result: CliResult) -> str:
    """The one error line the CLI printed; every other stderr line is a log line."""
    lines = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("orchestrator-migrate: error: "), result.output
    return lines[0].split("error: ", 1)[1]


def _assert_config_error(result: CliResult, *names: str) -> str:
    assert result.returncode == 2, result.output
    message = _error_line(result)
    for name in names:
        assert name in message, message
    assert not LEAKS.search(message), message
    return message


def test_version_prints_the_package_version_and_exits_0(ws: Workspace) -> None:
    result = ws.cli("--version")
    assert result.returncode == 0, result.output
    assert result.stdout == f"orchestrator-migrate {__version__}\n"


# ---------------------------------------------------------------- a driver that is not there

DRIVERS = [
    ("postgresql://app:s3cret@127.0.0.1:5432/app", "psycopg", "postgres"),
    ("mysql://app:s3cret@127.0.0.1:3306/app", "pymysql", "mysql"),
    ("mariadb://app:s3cret@127.0.0.1:3306/app", "pymysql", "mysql"),
]


def _hide(ws: Workspace, module: str, how: str) -> dict[str, str]:
    """An environment in which module does not import: absent (as when not installed), or
    present but failing (as when a library it needs is missing)."""
    shadow = ws.root / "shadow"
    shadow.mkdir(exist_ok=True)
    if how == "absent":  # the import system's own way of saying a module is not there
        (shadow / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    else:
        (shadow / module).mkdir(exist_ok=True)
        (shadow / module / "__init__.py").write_text(
            'raise ImportError("libexample.so.5: cannot open shared object file")\n'
        )
    return {"PYTHONPATH": f"{shadow}:{ws.models_dir}"}


@pytest.mark.parametrize("how", ["absent", "broken"])
@pytest.mark.parametrize(("url", "module", "extra"), DRIVERS)
def test_a_missing_driver_names_the_url_and_the_extra_to_install(
    ws: Workspace, url: str, module: str, extra: str, how: str
) -> None:
    ref = ws.write_models("m", MODELS)
    env = {**_hide(ws, module, how), "MCP_TASK_ORCHESTRATOR_DB_URL": url}
    for command in COMMANDS:
        result = ws.cli(command, "--models", ref, env=env)
        shown = url.split("://", 1)[1].replace(":s3cret@", ":***@")
        message = _assert_config_error(
            result, shown, f"pip install 'orchestrator-migrate[{extra}]'", repr(module)
        )
        assert "s3cret" not in result.output
        assert "No module named" not in message
        if how == "broken":  # why it does not import, when it is there
            assert "libexample.so.5" in message


# ---------------------------------------------------------------- a database out of reach


def test_a_file_that_is_no_sqlite_database_is_named_and_left_as_it_was(ws: Workspace) -> None:
    ref = ws.write_models("m", MODELS)
    ws.db_path.parent.mkdir(parents=True)
    ws.db_path.write_bytes(b"name,title\n1,not a database\n" * 100)
    before = ws.db_path.read_bytes()
    listing = sorted(p.name for p in ws.db_path.parent.iterdir())
    for command in COMMANDS:
        result = ws.cli(command, "--models", ref)
        message = _assert_config_error(result, str(ws.db_path), "not a SQLite database")
        assert ws.db_path.read_bytes() == before, command
        assert sorted(p.name for p in ws.db_path.parent.iterdir()) == listing, command
    as_json = ws.cli("run", "--models", ref, "--json")
    assert as_json.returncode == 2
    assert as_json.json()["error_message"] == message
    assert ws.backups() == []
    assert ws.db_path.read_bytes() == before


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _exists(kind: str, name: str) -> bool:
    query = {
        "postgresql": "SELECT 1 FROM pg_database WHERE datname = :name",
        "mysql": "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name",
    }[kind]
    engine = sa.create_engine(ADMIN[kind])
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query), {"name": name}).first() is not None
    finally:
        engine.dispose()


SERVERS = ["postgresql", "mysql"]


@pytest.mark.parametrize("kind", SERVERS)
def test_a_server_that_refuses_the_connection_is_named_with_host_and_port(
    ws: Workspace, kind: str
) -> None:
    port = _free_port()
    url = sa.make_url(ADMIN[kind]).set(host="127.0.0.1", port=port)
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url.render_as_string(hide_password=False)}
    ref = ws.write_models("m", MODELS)
    for command in COMMANDS:
        result = ws.cli(command, "--models", ref, env=env)
        _assert_config_error(result, f"127.0.0.1:{port}")


@pytest.mark.parametrize("kind", SERVERS)
def test_a_database_that_does_not_exist_is_named_and_not_created(ws: Workspace, kind: str) -> None:
    name = f"om_missing_{uuid.uuid4().hex[:10]}"
    url = sa.make_url(ADMIN[kind]).set(database=name)
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url.render_as_string(hide_password=False)}
    ref = ws.write_models("m", MODELS)
    for command in COMMANDS:
        result = ws.cli(command, "--models", ref, env=env)
        message = _assert_config_error(result, f'"{name}"', f"{url.host}:{url.port}")
        assert "does not exist" in message
        assert not _exists(kind, name), f"{command} created the database"
    assert not ws.backup_dir.exists()


@pytest.mark.parametrize("kind", SERVERS)
def test_credentials_the_server_refuses_are_named_with_the_user(ws: Workspace, kind: str) -> None:
    admin = sa.make_url(ADMIN[kind])
    url = admin.set(username="om_nobody", password="wrong")
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url.render_as_string(hide_password=False)}
    ref = ws.write_models("m", MODELS)
    for command in COMMANDS:
        result = ws.cli(command, "--models", ref, env=env)
        message = _assert_config_error(result, '"om_nobody"', f"{admin.host}:{admin.port}")
        assert "refused" in message
        assert "wrong" not in result.output  # the password


def test_a_directory_at_the_database_path_is_named_and_left_empty(ws: Workspace) -> None:
    target = Path(ws.root) / "is_a_directory.db"
    target.mkdir()
    ref = ws.write_models("m", MODELS)
    for command in COMMANDS:
        result = ws.cli(command, "--models", ref, "--db-path", str(target))
        _assert_config_error(result, str(target), "is a directory")
        assert list(target.iterdir()) == []
