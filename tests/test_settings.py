"""Settings: every key from every source, the precedence, the documented file, bad values."""

from __future__ import annotations

import itertools
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from orchestrator_migrate.config.settings import Settings, load_settings
from orchestrator_migrate.model.errors import ConfigError

PREFIX = "MCP_TASK_ORCHESTRATOR_"
REPO = Path(__file__).resolve().parent.parent
DOC_FILE = REPO / "config" / "orchestrator_migrate.toml"

MODELS_V1 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table(
    "tasks", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.String(100))
)
"""


def toml_value(value: Any) -> str:
    """A TOML literal for a bool, int, str or list of str."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_toml(path: Path, table: dict[str, Any], header: str | None = None) -> Path:
    lines = [f"[{header}]"] if header else []
    lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_pyproject(base_dir: Path, table: dict[str, Any]) -> Path:
    return write_toml(base_dir / "pyproject.toml", table, header="tool.orchestrator_migrate")


def env_name(field: str) -> str:
    return PREFIX + field.upper()


# A valid non-default value of every setting: (as an environment string, as a TOML value,
# the value the Settings field must then hold). "<tmp>" is replaced by the test's tmp_path.
CASES: dict[str, tuple[str, Any, Any]] = {
    "db_url": (
        "sqlite:///<tmp>/elsewhere/url.db",
        "sqlite:///<tmp>/elsewhere/url.db",
        "sqlite:///<tmp>/elsewhere/url.db",
    ),
    "db_path": ("data/other.db", "data/other.db", Path("data/other.db")),
    "base_dir": ("<tmp>/other_base", "<tmp>/other_base", Path("<tmp>/other_base")),
    "auto_migration": ("false", False, False),
    "backup": ("false", False, False),
    "backup_dir": ("my_backups", "my_backups", Path("my_backups")),
    "backup_retention_days": ("7", 7, 7),
    "backup_warn_size_mb": ("5", 5, 5),
    "migration_timeout": ("2500", 2500, 2500),
    "lock_timeout": ("1234", 1234, 1234),
    "lock_name": ("other_lock", "other_lock", "other_lock"),
    "allow_destructive": ("true", True, True),
    "allow_downgrade": ("true", True, True),
    "dry_run": ("true", True, True),
    "models": (
        "pkg_a.models:md,pkg_b:Base",
        ["pkg_a.models:md", "pkg_b:Base"],
        ["pkg_a.models:md", "pkg_b:Base"],
    ),
    "ignore_tables": ("tmp_*,audit_log", ["tmp_*", "audit_log"], ["tmp_*", "audit_log"]),
    "log_level": ("DEBUG", "DEBUG", "DEBUG"),
    "log_format": ("json", "json", "json"),
    "config_file": ("<named>", "<named>", None),
    "hooks": (
        "pkg_a.hooks:copy,pkg_b:notify",
        ["pkg_a.hooks:copy", "pkg_b:notify"],
        ["pkg_a.hooks:copy", "pkg_b:notify"],
    ),
    "metrics_file": ("metrics/om.prom", "metrics/om.prom", Path("metrics/om.prom")),
}

SOURCES = ("env", "config_flag", "config_env", "pyproject")
NAMED_LOCK = "from_the_named_config_file"


def _fill(value: Any, tmp: Path) -> Any:
    if isinstance(value, str):
        return value.replace("<tmp>", str(tmp))
    if isinstance(value, Path):
        return Path(str(value).replace("<tmp>", str(tmp)))
    return value


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process calls see only what a test gives them: cwd is tmp_path, no MCP_* variables."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.upper().startswith(PREFIX):
            monkeypatch.delenv(key)


def test_every_field_has_a_case_with_a_non_default_value() -> None:
    assert set(CASES) == set(Settings.model_fields)
    defaults = load_settings({}, environ={})
    for field, (_, _, expected) in CASES.items():
        if expected is not None:
            assert getattr(defaults, field) != expected, field


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_can_be_set_by_every_source(field: str, source: str, tmp_path: Path) -> None:
    env_text, toml_val, expected = CASES[field]
    env_text, toml_val, expected = (_fill(v, tmp_path) for v in (env_text, toml_val, expected))
    named = write_toml(tmp_path / "named.toml", {"lock_name": NAMED_LOCK})
    if field == "config_file":
        env_text = toml_val = str(named)
        expected = named
    environ: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    config = tmp_path / "conf" / "settings.toml"
    if source == "env":
        environ[env_name(field)] = env_text
    elif source == "config_flag":
        overrides["config_file"] = write_toml(config, {field: toml_val})
    elif source == "config_env":
        environ[env_name("config_file")] = str(write_toml(config, {field: toml_val}))
    else:
        write_pyproject(tmp_path, {field: toml_val})

    if field == "config_file" and source != "env":
        # Naming a config file inside a file must either take effect or be refused by name;
        # silently keeping the key while ignoring the file it names is wrong.
        try:
            settings = load_settings(overrides, environ=environ)
        except ConfigError as exc:
            assert "config_file" in str(exc)
            return
        assert settings.lock_name == NAMED_LOCK, (
            f"config_file = {named} set in {source} was accepted but the file was not read"
        )
        return

    settings = load_settings(overrides, environ=environ)
    assert getattr(settings, field) == expected
    if field == "config_file":
        assert settings.lock_name == NAMED_LOCK


@pytest.mark.parametrize("field", ["models", "ignore_tables"])
def test_list_settings_accept_a_comma_separated_string_in_files_too(
    field: str, tmp_path: Path
) -> None:
    write_pyproject(tmp_path, {field: "a:md, b:md"})
    assert getattr(load_settings({}, environ={}), field) == ["a:md", "b:md"]


def test_pyproject_is_read_from_base_dir_not_cwd(tmp_path: Path) -> None:
    base = tmp_path / "base"
    write_pyproject(base, {"lock_name": "from_base_dir"})
    write_pyproject(tmp_path, {"lock_name": "from_cwd"})
    settings = load_settings({}, environ={env_name("base_dir"): str(base)})
    assert settings.lock_name == "from_base_dir"
    assert load_settings({"base_dir": base}, environ={}).lock_name == "from_base_dir"


def test_config_flag_beats_config_env(tmp_path: Path) -> None:
    flag = write_toml(tmp_path / "flag.toml", {"lock_name": "flag"})
    env = write_toml(tmp_path / "env.toml", {"lock_name": "env"})
    settings = load_settings({"config_file": flag}, environ={env_name("config_file"): str(env)})
    assert settings.lock_name == "flag"
    assert settings.config_file == flag


# ---------------------------------------------------------------- precedence


LAYERS = ("cli", "env", "config", "pyproject")
PRECEDENCE_VALUES: dict[str, dict[str, Any]] = {
    "lock_name": {"cli": "cli", "env": "env", "config": "config", "pyproject": "pyproject"},
    "migration_timeout": {"cli": 1, "env": 2, "config": 3, "pyproject": 4},
    "backup": {"cli": False, "env": True, "config": False, "pyproject": True},
    "models": {"cli": ["c:md"], "env": ["e:md"], "config": ["f:md"], "pyproject": ["p:md"]},
}
SUBSETS = [subset for n in range(len(LAYERS) + 1) for subset in itertools.combinations(LAYERS, n)]


@pytest.mark.parametrize("layers", SUBSETS, ids=lambda s: "+".join(s) or "default")
@pytest.mark.parametrize("field", sorted(PRECEDENCE_VALUES))
def test_precedence_cli_env_config_pyproject_default(
    field: str, layers: tuple[str, ...], tmp_path: Path
) -> None:
    values = PRECEDENCE_VALUES[field]
    environ: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    if "cli" in layers:
        overrides[field] = values["cli"]
    if "env" in layers:
        value = values["env"]
        environ[env_name(field)] = (
            ",".join(value) if isinstance(value, list) else str(value).lower()
        )
    if "config" in layers:
        overrides["config_file"] = write_toml(tmp_path / "c.toml", {field: values["config"]})
    if "pyproject" in layers:
        write_pyproject(tmp_path, {field: values["pyproject"]})
    settings = load_settings(overrides, environ=environ)
    if layers:
        expected = values[layers[0]]  # LAYERS is in precedence order
    else:
        expected = Settings.model_fields[field].get_default(call_default_factory=True)
    assert getattr(settings, field) == expected


# ---------------------------------------------------------------- the documented file


def _documented_assignments() -> dict[str, Any]:
    lines = DOC_FILE.read_text(encoding="utf-8").splitlines()
    assignments = [m.group(1) for line in lines if (m := re.fullmatch(r"# (\w+ = .*)", line))]
    return tomllib.loads("\n".join(assignments))


def test_doc_file_is_valid_toml_that_sets_nothing_and_loads(tmp_path: Path) -> None:
    assert tomllib.loads(DOC_FILE.read_text(encoding="utf-8")) == {}
    load_settings({"config_file": DOC_FILE}, environ={})


def test_doc_file_mentions_every_setting_and_its_variable() -> None:
    text = DOC_FILE.read_text(encoding="utf-8")
    for field in Settings.model_fields:
        assert re.search(rf"\b{field}\b", text), f"{field} is not documented in {DOC_FILE}"
        assert env_name(field) in text, f"{env_name(field)} is not documented"
    assert "[tool.orchestrator_migrate]" in text
    assert "pyproject.toml" in text


def test_doc_file_precedence_is_stated_in_order() -> None:
    text = DOC_FILE.read_text(encoding="utf-8").lower()
    start = text.find("precedence")
    assert start >= 0, "the doc file does not state the precedence"
    words = ("cli flag", "environment", "config file", "pyproject.toml", "default")
    positions = [text.find(word, start) for word in words]
    assert all(p >= 0 for p in positions), dict(zip(words, positions, strict=True))
    assert positions == sorted(positions), dict(zip(words, positions, strict=True))
    assert "--config" in text[start:] and "mcp_task_orchestrator_config_file" in text[start:]


def test_doc_file_describes_every_setting_with_its_field_description() -> None:
    lines = DOC_FILE.read_text(encoding="utf-8").splitlines()
    prose = " ".join(" ".join(line.lstrip("#").split()) for line in lines)
    for field, info in Settings.model_fields.items():
        assert info.description, f"{field} has no description"
        assert info.description in prose, f"{field}: {info.description!r} not in {DOC_FILE}"


def test_doc_file_flags_exist() -> None:
    from orchestrator_migrate.cli import build_parser

    known = set(build_parser()._option_string_actions)
    documented = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", DOC_FILE.read_text(encoding="utf-8")))
    assert documented, "the doc file names no flag"
    assert documented <= known, f"flags in the doc that the CLI lacks: {documented - known}"


def test_doc_file_commented_keys_are_the_defaults(tmp_path: Path) -> None:
    """Uncommented, every documented key is accepted and gives exactly the default settings."""
    documented = _documented_assignments()
    unknown = set(documented) - set(Settings.model_fields)
    assert not unknown, f"documented keys that are not settings: {unknown}"
    not_set_by_default = {
        "db_url",
        "config_file",
        "metrics_file",
    }  # only described: a value would set them
    missing = set(Settings.model_fields) - not_set_by_default - set(documented)
    assert not missing, f"settings without a commented `# key = default` line: {missing}"

    uncommented = write_toml(tmp_path / "uncommented.toml", documented)
    from_doc = load_settings({"config_file": uncommented}, environ={})
    default = load_settings({}, environ={})
    assert from_doc.database_url() == default.database_url()
    assert from_doc.database_path() == default.database_path()
    assert from_doc.backup_path() == default.backup_path()
    assert from_doc.base_dir.absolute() == default.base_dir.absolute()
    for field in set(documented) - {"db_path", "backup_dir", "base_dir"}:
        assert getattr(from_doc, field) == getattr(default, field), field


# ---------------------------------------------------------------- database location


def test_default_database_is_under_base_dir_and_its_parent_is_created(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    base = ws.root / "base"
    base.mkdir()
    result = ws.cli("--models", ref, env={env_name("base_dir"): str(base)})
    assert result.returncode == 0, result.output
    assert (base / ".task_orchestrator" / "task_orchestrator.db").is_file()
    assert not (ws.root / ".task_orchestrator").exists()  # not the current directory


def test_default_base_dir_is_the_current_directory(tmp_path: Path) -> None:
    settings = load_settings({}, environ={})
    assert settings.database_path() == tmp_path / ".task_orchestrator" / "task_orchestrator.db"
    assert settings.database_url() == f"sqlite:///{settings.database_path()}"


def test_db_path_is_relative_to_base_dir(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    base = ws.root / "base"
    base.mkdir()
    env = {env_name("base_dir"): str(base), env_name("db_path"): "data/nested/app.db"}
    result = ws.cli("--models", ref, env=env)
    assert result.returncode == 0, result.output
    assert (base / "data" / "nested" / "app.db").is_file()
    assert not (ws.root / "data").exists()
    assert not (base / ".task_orchestrator" / "task_orchestrator.db").exists()


def test_db_url_wins_over_db_path(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    url_db = ws.root / "by_url" / "url.db"
    env = {env_name("db_url"): f"sqlite:///{url_db}", env_name("db_path"): "by_path.db"}
    result = ws.cli("--models", ref, env=env)
    assert result.returncode == 0, result.output
    assert url_db.is_file()
    assert not (ws.root / "by_path.db").exists()
    assert not ws.db_path.exists()


# ---------------------------------------------------------------- precedence through the CLI

CLI_LAYERS = ("flag", "env", "config_flag", "config_env", "pyproject")


@pytest.mark.parametrize("top", CLI_LAYERS)
def test_cli_precedence_of_db_path(ws, top: str) -> None:
    """Every layer from `top` down sets DB_PATH; only the top one's database is created."""
    ref = ws.write_models("m1", MODELS_V1)
    present = CLI_LAYERS[CLI_LAYERS.index(top) :]
    args: list[str] = ["--models", ref]
    env: dict[str, str] = {}
    if "flag" in present:
        args += ["--db-path", "flag.db"]
    if "env" in present:
        env[env_name("db_path")] = "env.db"
    if "config_flag" in present:
        args += ["--config", str(write_toml(ws.root / "flag_cfg.toml", {"db_path": "cfg.db"}))]
    if "config_env" in present:
        cfg = write_toml(ws.root / "env_cfg.toml", {"db_path": "cfgenv.db"})
        env[env_name("config_file")] = str(cfg)
    if "pyproject" in present:
        write_pyproject(ws.root, {"db_path": "pyproject.db"})
    result = ws.cli(*args, "run", env=env)
    assert result.returncode == 0, result.output
    files = {
        "flag": "flag.db",
        "env": "env.db",
        "config_flag": "cfg.db",
        "config_env": "cfgenv.db",
        "pyproject": "pyproject.db",
    }
    created = {layer for layer, name in files.items() if (ws.root / name).exists()}
    assert created == {top}
    assert not ws.db_path.exists()


# ---------------------------------------------------------------- bad values


def _snapshot(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if "__pycache__" not in p.parts and ".pytest_cache" not in p.parts
    }


BAD_ENV = [
    ("MIGRATION_TIMEOUT", "abc"),
    ("MIGRATION_TIMEOUT", "-5"),
    ("LOCK_TIMEOUT", "-1"),
    ("BACKUP", "maybe"),
    ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "LOUD"),
    ("BACKUP_RETENTION_DAYS", "x"),
    ("DB_URL", "postgresql://user:pw@127.0.0.1:notaport/db"),
]


def _assert_refused_cleanly(ws, result, before: set[str], *names: str) -> None:
    assert result.returncode == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "Traceback" not in result.output
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    assert result.stdout == ""
    assert not (ws.root / ".task_orchestrator").exists()
    assert not list(ws.root.rglob("*.db"))
    assert _snapshot(ws.root) == before


@pytest.mark.parametrize(("var", "value"), BAD_ENV, ids=[f"{k}={v}" for k, v in BAD_ENV])
def test_bad_environment_value_exits_2_naming_the_variable(ws, var: str, value: str) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    before = _snapshot(ws.root)
    result = ws.cli("--models", ref, env={PREFIX + var: value})
    _assert_refused_cleanly(ws, result, before, PREFIX + var)


def test_unknown_key_in_config_file_exits_2_naming_the_key(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    cfg = write_toml(ws.root / "settings.toml", {"lock_name": "x", "colour": "blue"})
    before = _snapshot(ws.root)
    result = ws.cli("--models", ref, "--config", str(cfg))
    _assert_refused_cleanly(ws, result, before, "colour", str(cfg))


# The same refusals in-process: the message names the flag, variable or key and its file.


def _config_error(overrides: dict[str, Any], environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(overrides, environ=environ)
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_flag_value_names_the_flag() -> None:
    assert "--migration-timeout" in _config_error({"migration_timeout": "abc"}, {})


def test_bad_value_in_config_file_names_the_key_and_file(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "settings.toml", {"backup": "maybe"})
    message = _config_error({}, {env_name("config_file"): str(cfg)})
    assert "backup" in message and str(cfg) in message


def test_bad_value_in_pyproject_names_the_key_and_file(tmp_path: Path) -> None:
    write_pyproject(tmp_path, {"lock_timeout": -1})
    message = _config_error({}, {})
    assert "lock_timeout" in message and "pyproject.toml" in message


def test_unknown_key_in_pyproject_names_the_key(tmp_path: Path) -> None:
    write_pyproject(tmp_path, {"lock_timeot": 5})
    message = _config_error({}, {})
    assert "lock_timeot" in message and "pyproject.toml" in message


def test_missing_config_file_by_environment_names_the_variable(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    message = _config_error({}, {env_name("config_file"): missing})
    assert env_name("config_file") in message and missing in message


def test_missing_config_file_by_flag_exits_2(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    before = _snapshot(ws.root)
    result = ws.cli("--models", ref, "--config", "no_such_settings.toml")
    _assert_refused_cleanly(ws, result, before, "--config", "no_such_settings.toml")


def test_config_file_that_is_not_toml_exits_2(ws) -> None:
    ref = ws.write_models("m1", MODELS_V1)
    cfg = ws.root / "settings.toml"
    cfg.write_text("this is [not toml\nlock_timeout: 5\n", encoding="utf-8")
    before = _snapshot(ws.root)
    result = ws.cli("--models", ref, "--config", str(cfg))
    _assert_refused_cleanly(ws, result, before, str(cfg))


def test_a_nearly_right_variable_name_is_warned_about_and_the_servers_own_are_not(ws) -> None:
    from orchestrator_migrate.config.settings import misspelt_variables

    environ = {
        env_name("migration_timeout") + "_MS": "1",
        env_name("lock_timout"): "5",
        "MCP_TASK_ORCHESTRATOR_SERVER_PORT": "8080",  # the server's own: quiet
        env_name("lock_timeout"): "10",  # a setting: quiet
    }
    warnings = misspelt_variables(environ)
    assert len(warnings) == 2
    assert any(
        "MIGRATION_TIMEOUT_MS" in w and "MCP_TASK_ORCHESTRATOR_MIGRATION_TIMEOUT?" in w
        for w in warnings
    )
    assert any("LOCK_TIMOUT" in w and "MCP_TASK_ORCHESTRATOR_LOCK_TIMEOUT?" in w for w in warnings)

    done = ws.cli("--models", "nowhere:md", "check", env={env_name("backup_dirs"): "x"})
    assert "MCP_TASK_ORCHESTRATOR_BACKUP_DIRS is not a setting" in done.stderr
    assert "did you mean MCP_TASK_ORCHESTRATOR_BACKUP_DIR?" in done.stderr
