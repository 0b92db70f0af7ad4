"""The command line through the real process: commands, options, exit codes, JSON, secrets."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from orchestrator_migrate import migrate

PREFIX = "MCP_TASK_ORCHESTRATOR_"

MODELS_V1 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "tasks", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.String(100))
)
"""

MODELS_V2_NULLABLE = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "tasks",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100)),
    sa.Column("notes", sa.Text, nullable=True),
)
"""

MODELS_V2_NOT_NULL = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "tasks",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100)),
    sa.Column("priority", sa.Integer, nullable=False),
)
"""


def _tables(ws) -> set[str]:
    return {row[0] for row in ws.sql("SELECT name FROM sqlite_master WHERE type='table'")}


def _json_lines(stderr: str) -> list[dict]:
    """Every non-empty stderr line, each parsed as a JSON object (fails on any other line)."""
    records = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"stderr line is not JSON with LOG_FORMAT=json: {line!r}\n{stderr}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def _migrate_in_process(ws, source: str, *, rows: int = 0) -> None:
    """Set up the workspace database at the models in source (not what a test is about)."""
    namespace: dict = {}
    exec(compile(source, "<models>", "exec"), namespace)
    assert migrate(db_url=ws.url, base_dir=ws.root, metadata=namespace["md"], backup=False).success
    for n in range(rows):
        ws.sql("INSERT INTO tasks (title) VALUES (?)", (f"row {n}",))


@dataclass
class Result:
    returncode: int | str | None
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def main_in_process(ws, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]):
    """cli.main(argv) in this process, with the workspace's environment, cwd and models path.

    For behaviour that is about what the CLI prints, not about the process; much faster than a
    subprocess. Restores loguru (which main() reconfigures) and forgets imported model modules.
    """
    from loguru import logger

    from orchestrator_migrate.cli import main

    monkeypatch.chdir(ws.root)
    monkeypatch.syspath_prepend(str(ws.models_dir))
    modules_before = set(sys.modules)

    def call(*args: str, env: dict[str, str] | None = None) -> Result:
        for key in list(os.environ):
            if key.upper().startswith(PREFIX):
                monkeypatch.delenv(key)
        for key, value in ws.env(env).items():
            if key.upper().startswith(PREFIX):
                monkeypatch.setenv(key, value)
        capfd.readouterr()
        try:
            code: int | str | None = main(list(args))
        except SystemExit as exc:
            code = exc.code
        out, err = capfd.readouterr()
        return Result(code, out, err)

    yield call
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message))
    for name in set(sys.modules) - modules_before:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if Path(module_file).parent == ws.models_dir:
            del sys.modules[name]


# ---------------------------------------------------------------- commands


def test_check_exits_1_when_needed_and_0_when_up_to_date_and_run_is_the_default(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    needed = ws.cli("check", "--models", ref)
    assert needed.returncode == 1, needed.output
    assert "Migration needed" in needed.stdout
    assert "tasks" in needed.stdout
    assert not ws.db_path.exists(), "check must not create the database"

    default = ws.cli("--models", ref)  # no command: run
    assert default.returncode == 0, default.output
    assert "tasks" in _tables(ws)

    up_to_date = ws.cli("check", "--models", ref)
    assert up_to_date.returncode == 0, up_to_date.output
    assert "up to date" in up_to_date.stdout


@pytest.mark.parametrize("layout", ["before", "after", "before-and-after"])
def test_options_are_accepted_before_and_after_the_command(
    ws, main_in_process, layout: str
) -> None:
    ref = ws.write_models("options_models", MODELS_V1)
    options = {
        "before": (["--models", ref, "--db-path", "x.db", "--json"], []),
        "after": ([], ["--models", ref, "--db-path", "x.db", "--json"]),
        "before-and-after": (["--db-path", "x.db"], ["--models", ref, "--json"]),
    }[layout]
    result = main_in_process(*options[0], "run", *options[1])
    assert result.returncode == 0, result.stderr
    assert (ws.root / "x.db").is_file()
    assert not ws.db_path.exists()
    assert result.json()["outcome"] == "applied"


def test_json_on_every_command_prints_one_json_document(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    env = {PREFIX + "LOG_LEVEL": "DEBUG", PREFIX + "MODELS": ref}

    run = ws.cli("--json", env=env)  # the default command is run
    assert run.returncode == 0, run.output
    doc = run.json()
    assert doc["outcome"] == "applied"
    assert doc["success"] is True
    assert doc["operations_executed"] == 1

    check = ws.cli("check", "--json", env=env)
    assert check.returncode == 0, check.output
    assert check.json()["migration_needed"] is False

    plan = ws.cli("plan", "--json", env=env)
    assert plan.returncode == 0, plan.output
    assert isinstance(plan.json(), dict)

    history = ws.cli("history", "--json", env=env)
    assert history.returncode == 0, history.output
    entries = history.json()
    assert isinstance(entries, list)
    assert [e["outcome"] for e in entries] == ["applied"]

    locks = ws.cli("locks", "--json", env=env)
    assert locks.returncode == 0, locks.output
    assert locks.json()["held"] is False


def test_json_error_is_one_json_document_too(ws, main_in_process) -> None:
    result = main_in_process("check", "--json", "--models", "no_such_module:md")
    assert result.returncode == 2, result.stderr
    doc = result.json()
    assert doc["success"] is False
    assert doc["exit_code"] == 2
    assert "no_such_module:md" in doc["error_message"]


def test_plan_sql_prints_the_sql_and_writes_nothing(ws, main_in_process) -> None:
    ref = ws.write_models("plan_models", MODELS_V1)
    result = main_in_process("plan", "--sql", "--models", ref)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE tasks" in result.stdout
    assert result.stdout.rstrip().endswith(";")
    assert not ws.db_path.exists()
    assert not (ws.root / ".task_orchestrator").exists()


# ---------------------------------------------------------------- exit codes


def test_usage_error_exits_2_and_touches_nothing(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    result = ws.cli("--frobnicate", env={PREFIX + "MODELS": ref})
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    assert not (ws.root / ".task_orchestrator").exists()


@pytest.mark.parametrize(
    "args",
    [["frobnicate"], ["history", "--limit", "many"], ["plan", "--sql=yes"]],
    ids=["unknown-command", "bad-option-value", "flag-with-value"],
)
def test_more_usage_errors_exit_2(ws, main_in_process, args: list[str]) -> None:
    ref = ws.write_models("usage_models", MODELS_V1)
    result = main_in_process(*args, env={PREFIX + "MODELS": ref})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not (ws.root / ".task_orchestrator").exists()


def test_refused_change_exits_4_and_changes_nothing(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    _migrate_in_process(ws, MODELS_V1, rows=1)
    before = ws.dump()
    ws.write_models("m1", MODELS_V2_NOT_NULL)
    result = ws.cli("--models", ref)
    assert result.returncode == 4, result.output
    assert "priority" in result.stderr
    assert ws.dump() == before


def test_lock_held_elsewhere_exits_3(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    ws.script("CREATE TABLE other (id INTEGER PRIMARY KEY);")
    before = ws.dump()
    lock = FileLock(str(ws.db_path) + ".lock")
    with lock:
        result = ws.cli("--models", ref, env={PREFIX + "LOCK_TIMEOUT": "300"})
    assert result.returncode == 3, result.output
    assert "lock" in result.stderr.lower()
    assert ws.dump() == before


# ---------------------------------------------------------------- log format


def test_log_format_json_makes_every_stderr_line_a_json_object(ws) -> None:
    _migrate_in_process(ws, MODELS_V1, rows=2)
    ref = ws.write_models("m1", MODELS_V2_NULLABLE)
    env = {PREFIX + "LOG_FORMAT": "json", PREFIX + "LOG_LEVEL": "DEBUG"}
    result = ws.cli("--models", ref, env=env)
    assert result.returncode == 0, result.output
    records = _json_lines(result.stderr)
    for record in records:
        assert {"time", "level", "message"} <= set(record), record
    messages = " | ".join(r["message"] for r in records)
    assert "Backup created" in messages
    assert "completed" in messages
    assert "DEBUG" in {r["level"] for r in records}


def test_log_format_json_also_for_a_failed_run(ws) -> None:
    _migrate_in_process(ws, MODELS_V1, rows=1)
    ref = ws.write_models("m1", MODELS_V2_NOT_NULL)
    result = ws.cli("--models", ref, env={PREFIX + "LOG_FORMAT": "json"})
    assert result.returncode == 4, result.output
    records = _json_lines(result.stderr)
    assert any("priority" in json.dumps(r) for r in records)


# ---------------------------------------------------------------- secrets

SECRET = "s3cretPassw0rd"
SECRET_URL = f"postgresql://user:{SECRET}@127.0.0.1:1/db"
MALFORMED_SECRET_URL = f"postgresql://user:{SECRET}@127.0.0.1:notaport/db"
COMMANDS = ["run", "check", "plan", "history", "locks"]
VARIANTS = {
    "text": ([], {}),
    "json-debug": (["--json"], {PREFIX + "LOG_LEVEL": "DEBUG"}),
    "logjson-debug": ([], {PREFIX + "LOG_FORMAT": "json", PREFIX + "LOG_LEVEL": "DEBUG"}),
}


def _assert_no_secret(result) -> None:
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        leaks = [line.strip()[:200] for line in text.splitlines() if SECRET in line]
        assert not leaks, f"the password is printed on {name} in {len(leaks)} lines: {leaks[:5]}"


def _check_secret_result(result, args: list[str]) -> None:
    assert result.returncode not in (0, None), result.stderr
    assert result.stderr.strip(), "a failure must say why"
    _assert_no_secret(result)
    if "--json" in args:
        doc = result.json()
        assert doc["success"] is False
        assert SECRET not in json.dumps(doc)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("command", COMMANDS)
def test_password_in_db_url_is_never_printed(
    ws, main_in_process, command: str, variant: str
) -> None:
    ref = ws.write_models("secret_models", MODELS_V1)
    args, env = VARIANTS[variant]
    result = main_in_process(
        command, *args, env={**env, PREFIX + "DB_URL": SECRET_URL, PREFIX + "MODELS": ref}
    )
    _check_secret_result(result, args)


@pytest.mark.parametrize("command", COMMANDS)
def test_password_in_a_malformed_db_url_is_never_printed(ws, main_in_process, command: str) -> None:
    ref = ws.write_models("secret_models", MODELS_V1)
    args = ["--json", "--db-url", MALFORMED_SECRET_URL]
    result = main_in_process(
        command, *args, env={PREFIX + "LOG_LEVEL": "DEBUG", PREFIX + "MODELS": ref}
    )
    _check_secret_result(result, args)


@pytest.mark.parametrize(
    ("command", "url", "variant"),
    [("run", SECRET_URL, "logjson-debug"), ("history", MALFORMED_SECRET_URL, "json-debug")],
    ids=["run-unsupported-url", "history-malformed-url"],  # ids must not hold the secret
)
def test_password_is_never_printed_by_the_real_process(
    ws, command: str, url: str, variant: str
) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    args, env = VARIANTS[variant]
    result = ws.cli(command, *args, env={**env, PREFIX + "DB_URL": url, PREFIX + "MODELS": ref})
    _check_secret_result(result, args)


def test_a_database_driver_that_is_not_installed_is_a_usage_error_naming_it(ws):
    ref = ws.write_models("drv", "import sqlalchemy as sa\nmd = sa.MetaData()\n")
    out = ws.cli("check", "--models", ref, "--db-url", "mysql+mysqldb://root@127.0.0.1/test")
    assert out.returncode == 2, out.output
    assert "its driver 'mysqldb' is not installed" in out.stderr, out.output
    assert "orchestrator-migrate[mysql]" in out.stderr, out.output
