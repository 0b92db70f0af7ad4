"""Settings: CLI flag > environment > config file > pyproject.toml > default, in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ..model.errors import ConfigError

ENV_PREFIX = "MCP_TASK_ORCHESTRATOR_"
PYPROJECT_TABLE = ("tool", "orchestrator_migrate")
DEFAULT_DB_RELATIVE = Path(".task_orchestrator") / "task_orchestrator.db"
DEFAULT_BACKUP_RELATIVE = Path(".task_orchestrator") / "backups"

LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return value


class Settings(BaseSettings):
    """Everything a run needs to know besides the models; see config/orchestrator_migrate.toml."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        case_sensitive=False,
        validate_default=True,
    )

    db_url: str | None = Field(
        default=None,
        repr=False,
        description="any SQLAlchemy URL; wins over db_path and base_dir",
    )
    db_path: Path | None = Field(
        default=None,
        description="SQLite database file; relative paths are under base_dir",
    )
    base_dir: Path = Field(
        default_factory=Path.cwd,
        description="base directory (default: the current directory); holds the default"
        " database .task_orchestrator/task_orchestrator.db",
    )
    auto_migration: bool = Field(
        default=True, description="true or false; false detects and reports only"
    )
    backup: bool = Field(default=True, description="true or false; back up before any change")
    backup_dir: Path | None = Field(
        default=None,
        description="backup directory; default .task_orchestrator/backups under base_dir",
    )
    backup_retention_days: int = Field(
        default=30, ge=0, description="a whole number of days >= 0; 0 keeps backups forever"
    )
    backup_warn_size_mb: int = Field(
        default=1024,
        ge=0,
        description="a whole number of MiB >= 0; warn when backups take more; 0 never warns",
    )
    migration_timeout: int = Field(
        default=15000,
        ge=0,
        description="milliseconds, a whole number >= 0; 0 means no limit",
    )
    lock_timeout: int = Field(
        default=60000,
        ge=0,
        description="milliseconds to wait for the migration lock, a whole number >= 0",
    )
    lock_name: str = Field(
        default="orchestrator_migrate",
        min_length=1,
        description="name of the migration lock on database servers",
    )
    allow_destructive: bool = Field(
        default=False, description="true or false; allow dropping tables and columns"
    )
    allow_downgrade: bool = Field(
        default=False,
        description="true or false; migrate even when the database is ahead of these models",
    )
    dry_run: bool = Field(
        default=False, description="true or false; plan and report, write nothing"
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="MODULE:ATTR references to a MetaData or declarative base, comma separated;"
        " replaces the entry points",
    )
    hooks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="MODULE:ATTR references to hook callables, comma separated; called after"
        " those of the entry-point group orchestrator_migrate.hooks",
    )
    ignore_tables: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="glob patterns of table names left out of the comparison, comma separated",
    )
    log_level: LogLevel = Field(
        default="INFO",
        description="TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR or CRITICAL",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json for one JSON object per line"
    )
    config_file: Path | None = Field(default=None, description="a TOML file of these keys")
    metrics_file: Path | None = Field(
        default=None,
        description="a file (e.g. for node-exporter's textfile collector) rewritten with"
        " Prometheus metrics after every run; relative to base_dir",
    )

    @field_validator("models", "ignore_tables", "hooks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def database_url(self) -> str:
        """The SQLAlchemy URL this run migrates."""
        if self.db_url:
            return self.db_url
        return "sqlite:///" + str(self.database_path())

    def database_path(self) -> Path:
        """The SQLite file named by db_path or the default under base_dir."""
        path = self.db_path if self.db_path is not None else DEFAULT_DB_RELATIVE
        return path if path.is_absolute() else (self.base_dir / path).absolute()

    def metrics_path(self) -> Path | None:
        """Where METRICS_FILE points, if set."""
        if self.metrics_file is None:
            return None
        path = self.metrics_file
        return path if path.is_absolute() else (self.base_dir / path).absolute()

    def backup_path(self) -> Path:
        """The directory backups are written to."""
        path = self.backup_dir if self.backup_dir is not None else DEFAULT_BACKUP_RELATIVE
        return path if path.is_absolute() else (self.base_dir / path).absolute()


def misspelt_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each MCP_TASK_ORCHESTRATOR_* variable that is not a setting but nearly is
    one (MIGRATION_TIMEOUT_MS); the server's own variables share the prefix and stay quiet."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = [k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known]
    if not unknown:
        return []
    import difflib

    found = []
    for key in sorted(unknown):
        close = difflib.get_close_matches(key.upper(), sorted(known), n=1, cutoff=0.85)
        if close:
            found.append(f"{key} is not a setting and is ignored; did you mean {close[0]}?")
    return found


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from CLI overrides, environment and config files; ConfigError names a bad one."""
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    env = dict(os.environ if environ is None else environ)
    env_lower = {k.lower(): v for k, v in env.items()}

    def env_value(field: str) -> str | None:
        return env_lower.get((ENV_PREFIX + field).lower())

    base_dir = Path(cli.get("base_dir") or env_value("base_dir") or Path.cwd())
    config_file = cli.get("config_file") or env_value("config_file")
    config_path: Path | None = None
    if config_file:
        config_path = Path(config_file)
        if not config_path.is_absolute():
            config_path = Path.cwd() / config_path
        if not config_path.is_file():
            origin = "--config" if cli.get("config_file") else ENV_PREFIX + "CONFIG_FILE"
            raise ConfigError(f"{origin}: config file {config_path} does not exist")
    pyproject = base_dir / "pyproject.toml"
    files = _read_config_files(config_path, pyproject if pyproject.is_file() else None)

    class _Bound(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [
                init_settings,
                _MappingEnvSource(settings_cls, env),
            ]
            sources.extend(InitSettingsSource(settings_cls, table) for _, table in files)
            return tuple(sources)

    try:
        bound = _Bound(**cli)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, cli, env_value, files)) from None
    return Settings.model_construct(**bound.model_dump())


def _read_config_files(
    config_path: Path | None, pyproject: Path | None
) -> list[tuple[str, dict[str, Any]]]:
    """(label, table) of each config file in precedence order; a bad TOML file is a ConfigError."""
    import tomllib

    found: list[tuple[str, dict[str, Any]]] = []
    for path, header in ((config_path, ()), (pyproject, PYPROJECT_TABLE)):
        if path is None:
            continue
        try:
            data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: cannot be read as TOML: {exc}") from None
        for key in header:
            data = data.get(key, {}) if isinstance(data, dict) else {}
        label = f"{path} [{'.'.join(header)}]" if header else str(path)
        if isinstance(data, dict) and "config_file" in data:
            raise ConfigError(
                f"{label}: key 'config_file' is not allowed in a config file; name the file"
                f" with --config or {ENV_PREFIX}CONFIG_FILE"
            )
        found.append((label, data if isinstance(data, dict) else {}))
    return found


class _MappingEnvSource(EnvSettingsSource):
    """The environment source reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items()}


def _describe(
    exc: ValidationError,
    cli: Mapping[str, Any],
    env_value: Any,
    files: list[tuple[str, dict[str, Any]]],
) -> str:
    """One line naming the variable, flag or key that is wrong and what it accepts."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        info = Settings.model_fields.get(field)
        accepts = info.description if info is not None else None
        if field in cli:
            origin, value = "--" + field.replace("_", "-"), cli[field]
        elif env_value(field) is not None:
            origin, value = ENV_PREFIX + field.upper(), env_value(field)
        else:
            origin, value = f"key {field!r}", error.get("input")
            for label, table in files:
                if field in table:
                    origin = f"{label}: key {field!r}"
                    break
        if error["type"] == "extra_forbidden":
            problems.append(f"{origin}: unknown setting")
        else:
            problems.append(f"{origin}={value!r} is invalid; expected {accepts or error['msg']}")
    return "; ".join(problems)
