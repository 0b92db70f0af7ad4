"""The command line: run (default), check, plan, history, locks; exit codes from errors.py."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config.settings import ENV_PREFIX, Settings, load_settings
from .model.errors import ExitCode, MigrateError, exit_code_for
from .model.result import Outcome

if TYPE_CHECKING:
    from .progress import Progress

COMMANDS = (
    "run",
    "check",
    "plan",
    "status",
    "health",
    "metrics",
    "rehearse",
    "export-alembic",
    "history",
    "locks",
    "backups",
    "rollback",
    "mcp",
)


def _common(parser: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS
    add = parser.add_argument
    add("--db-url", dest="db_url", default=s, help="SQLAlchemy database URL")
    add("--db-path", dest="db_path", default=s, type=Path, help="SQLite database file")
    add("--base-dir", dest="base_dir", default=s, type=Path, help="base directory")
    add("--config", dest="config_file", default=s, type=Path, help="TOML config file")
    add(
        "--models",
        dest="models",
        action="append",
        default=s,
        metavar="MODULE:ATTR",
        help="models to migrate to (repeatable); replaces the entry points",
    )
    add(
        "--hook",
        dest="hooks",
        action="append",
        default=s,
        metavar="MODULE:ATTR",
        help="a hook callable to call with each event of a run (repeatable)",
    )
    add(
        "--ignore-table",
        dest="ignore_tables",
        action="append",
        default=s,
        metavar="GLOB",
        help="leave matching tables out of the comparison (repeatable)",
    )
    add(
        "--backup",
        dest="backup",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="back up before any change",
    )
    add("--backup-dir", dest="backup_dir", default=s, type=Path, help="backup directory")
    add(
        "--migration-timeout",
        dest="migration_timeout",
        default=s,
        metavar="MS",
        help="time limit for applying, in milliseconds",
    )
    add(
        "--lock-timeout",
        dest="lock_timeout",
        default=s,
        metavar="MS",
        help="how long to wait for the migration lock, in milliseconds",
    )
    add(
        "--allow-destructive",
        dest="allow_destructive",
        action="store_const",
        const=True,
        default=s,
        help="drop tables and columns the models no longer have",
    )
    add(
        "--allow-downgrade",
        dest="allow_downgrade",
        action="store_const",
        const=True,
        default=s,
        help="migrate even when the database is ahead of these models (a newer release ran)",
    )
    add(
        "--dry-run",
        dest="dry_run",
        action="store_const",
        const=True,
        default=s,
        help="plan and report, write nothing",
    )
    add("--log-level", dest="log_level", default=s, help="TRACE ... CRITICAL")
    add("--log-format", dest="log_format", default=s, help="text or json")
    add(
        "--json",
        dest="json",
        action="store_true",
        default=s,
        help="print one JSON document on stdout",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; options are accepted before or after the command."""
    parser = argparse.ArgumentParser(
        prog="orchestrator-migrate",
        description="Bring a SQL database in step with its SQLAlchemy models, safely.",
    )
    from .version import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    helps = {
        "run": "migrate the database if needed (the default)",
        "check": "exit 0 when up to date, 1 when a migration is needed; writes nothing",
        "plan": "show what a run would do; writes nothing",
        "history": "show the recorded runs",
        "locks": "show who holds the migration lock",
        "backups": "list, prune or restore backups",
        "rollback": "undo the newest applied run (or every run after --to ID) from its backup",
        "status": "show the database, pending work, last run, backups and the lock; writes nothing",
        "health": "HEALTHY (exit 0), WARNING (1) or CRITICAL (2), with the reasons; for probes",
        "metrics": "print Prometheus/OpenMetrics metrics of the database's migration state",
        "rehearse": "apply the pending plan to a throwaway copy, measure and verify it",
        "export-alembic": "write the pending plan as an Alembic revision file in DIR",
        "mcp": "serve the MCP tools orchestrator_database_health and _migration_status on stdio",
    }
    for name in COMMANDS:
        cmd = sub.add_parser(name, help=helps[name], description=helps[name])
        _common(cmd)
        if name == "plan":
            cmd.add_argument("--sql", action="store_true", help="print the SQL statements")
            cmd.add_argument(
                "--format",
                dest="format",
                choices=("text", "sql", "json", "markdown"),
                default="text",
                help="markdown: a review-ready body for a pull request",
            )
        if name == "export-alembic":
            cmd.add_argument("directory", type=Path, metavar="DIR", help="where to write it")
            cmd.add_argument("--message", "-m", default=None, help="the revision's message")
        if name == "history":
            cmd.add_argument("--limit", type=int, default=20, help="newest N runs (default 20)")
        if name == "backups":
            cmd.add_argument("action", choices=("list", "prune", "restore"), help="what to do")
            cmd.add_argument("backup_id", nargs="?", help="the backup to restore")
        if name == "rollback":
            cmd.add_argument(
                "--use-backup", action="store_true", help="restore the backup taken before the run"
            )
            cmd.add_argument("--to", type=int, metavar="ID", help="undo every run after ID")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    command = args.pop("command", None) or "run"
    as_json = bool(args.pop("json", False))
    names = (
        "sql",
        "format",
        "limit",
        "action",
        "backup_id",
        "use_backup",
        "to",
        "directory",
        "message",
    )
    extra: dict[str, Any] = {k: args.pop(k) for k in names if k in args}
    raw_format = str(args.get("log_format") or os.environ.get(ENV_PREFIX + "LOG_FORMAT", ""))
    try:
        settings = load_settings(args)
    except MigrateError as exc:
        return _fail(exc, as_json, raw_format.strip().lower())

    from .logs import configure

    configure(settings.log_level, settings.log_format)
    from .config.settings import misspelt_variables

    for warning in misspelt_variables(os.environ):
        from loguru import logger

        logger.warning(warning)
    try:
        return _COMMANDS[command](settings, as_json, extra)
    except BrokenPipeError:  # `plan --sql | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitCode.OK)
    except MigrateError as exc:
        return _fail(exc, as_json, settings.log_format)
    except Exception as exc:  # unexpected: one line for humans, details at DEBUG
        from loguru import logger

        logger.opt(exception=exc).debug("Unexpected error")
        return _fail(exc, as_json, settings.log_format)


def _fail(exc: BaseException, as_json: bool, log_format: str) -> int:
    from .model.result import MigrationResult

    code = exit_code_for(exc)
    result = MigrationResult.from_error(exc)
    message = result.error_message or ""
    if as_json:
        _print_json(result.to_dict())
    if log_format == "json":
        line = {"level": "ERROR", "message": message, "exit_code": int(code)}
        print(json.dumps(line), file=sys.stderr)
    else:
        print(f"orchestrator-migrate: error: {message}", file=sys.stderr)
    return int(code)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _progress(settings: Settings) -> Progress:
    """A bar when stderr is a terminal showing text logs, log lines otherwise."""
    from .progress import LogProgress, for_stream

    return for_stream(sys.stderr) if settings.log_format == "text" else LogProgress()


def _run(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .api import migrate

    result = migrate(settings, progress=_progress(settings))
    if as_json:
        _print_json(result.to_dict())
    return int(ExitCode.OK)


def _check(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .api import check

    result = check(settings)
    if as_json:
        _print_json(result.to_dict())
    else:
        if result.migration_needed:
            print(f"Migration needed: {len(result.plan.operations)} operations")
            for op in result.plan.operations:
                print(f"  - {op.description}")
        elif result.outcome is Outcome.AHEAD:
            print("Database schema is ahead of these models (a newer release migrated it);")
            print("nothing to do: this release keeps working on it")
        else:
            print("Database schema is up to date")
        for change in result.plan.retained:
            print(f"  kept (not in the models): {change.description}")
        for refusal in result.refusals:
            print(f"  a run would be refused: {refusal.message}")
        for warning in result.warnings:
            if warning.startswith("Schema drift"):
                print(warning)
    return int(ExitCode.MIGRATION_NEEDED if result.migration_needed else ExitCode.OK)


def _plan(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .api import check

    shape = "sql" if extra.get("sql") else str(extra.get("format") or "text")
    shape = "json" if as_json else shape
    if shape == "markdown":
        return _plan_markdown(settings)
    result = check(settings)
    plan = result.plan
    if shape == "json":
        _print_json({**plan.to_dict(), "refusals": [r.to_dict() for r in result.refusals]})
    elif shape == "sql":
        for statement in plan.sql:
            print(statement.rstrip() + ";\n")
    else:
        if plan.empty:
            print("Nothing to do: the database matches the models")
        for number, op in enumerate(plan.operations, 1):
            flags = [op.safety.value] + ([] if op.reversible else ["irreversible"])
            flags += ["destructive"] if op.destructive else []
            suffix = f"  [{', '.join(flags)}]" if flags else ""
            print(f"{number}. {op.description}{suffix}")
        for change in plan.retained:
            print(f"kept (not in the models): {change.description}  [{change.safety.value}]")
        for refusal in result.refusals:
            print(f"a run would be refused: {refusal.message}")
    return int(ExitCode.OK)


def _plan_markdown(settings: Settings) -> int:
    """The review body; a plan the planner refuses is shown with its reason (and exit 4)."""
    from .api import check
    from .model.result import MigrationResult
    from .operate.markdown import plan_markdown

    try:
        result = check(settings)
    except MigrateError as exc:
        if exc.exit_code is not ExitCode.REFUSED:
            raise
        print(plan_markdown(MigrationResult.from_error(exc), settings))
        return int(exc.exit_code)
    print(plan_markdown(result, settings))
    return int(ExitCode.OK)


def _history(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .api import history

    entries = history(settings, limit=extra.get("limit"))
    if as_json:
        _print_json([e.to_dict() for e in entries])
        return int(ExitCode.OK)
    if not entries:
        print("No recorded runs")
    for e in entries:
        backup = f" backup {e.backup_id}" if e.backup_id else ""
        print(
            f"#{e.id} {e.started_at} {e.outcome} {len(e.operations)} operations"
            f" in {e.duration_ms}ms{backup} (host {e.host} pid {e.pid})"
        )
        for op in e.operations:
            print(f"    - {op['description']}")
        if e.error:
            print(f"    error: {e.error}")
    return int(ExitCode.OK)


def _locks(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .backends import lock_for

    lock = lock_for(settings.database_url(), settings.lock_timeout / 1000, settings.lock_name)
    try:
        holder = lock.current_holder()
    finally:
        lock.close()
    if as_json:
        _print_json(
            {
                "lock": lock.name,
                "held": holder is not None,
                "holder": None if holder is None else holder.__dict__,
            }
        )
    elif holder is None:
        print(f"Migration lock {lock.name} is free")
    else:
        print(f"Migration lock {lock.name} is held by {holder.describe()}")
    return int(ExitCode.OK)


def _backups(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .api import backups_list, backups_prune, restore_backup
    from .model.errors import ConfigError

    action = extra["action"]
    if action == "restore":
        if not extra.get("backup_id"):
            raise ConfigError("backups restore: name the backup, e.g. backup_20241206_143052_789")
        result = restore_backup(extra["backup_id"], settings, progress=_progress(settings))
        if as_json:
            _print_json(result.to_dict())
        return int(ExitCode.OK)
    found = backups_list(settings) if action == "list" else backups_prune(settings)
    if as_json:
        _print_json([b.to_dict() for b in found])
        return int(ExitCode.OK)
    if action == "prune":
        print(f"Removed {len(found)} backups older than {settings.backup_retention_days} days")
    elif not found:
        print(f"No backups in {settings.backup_path()}")
    for b in found:
        print(f"{b.id}  {b.created_at}  {b.size_bytes} bytes  {b.path}")
    return int(ExitCode.OK)


def _rollback(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .api import rollback

    use_backup, to = bool(extra.get("use_backup")), extra.get("to")
    result = rollback(settings, use_backup=use_backup, to=to, progress=_progress(settings))
    if as_json:
        _print_json(result.to_dict())
    return int(ExitCode.OK)


def _status(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .operate.status import status

    found = status(settings)
    if as_json:
        _print_json(found.to_dict())
    else:
        print("\n".join(found.lines()))
    return int(ExitCode.OK)


def _health(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .operate.health import health

    found = health(settings)
    if as_json:
        _print_json(found.to_dict())
    else:
        print("\n".join(found.lines()))
    return found.exit_code


def _metrics(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .operate.metrics import from_status, render
    from .operate.status import status

    sys.stdout.write(render(from_status(status(settings))))
    return int(ExitCode.OK)


def _rehearse(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .operate.rehearse import rehearse

    found = rehearse(settings)
    if as_json:
        _print_json(found.to_dict())
    else:
        print("\n".join(found.lines()))
    return found.exit_code


def _export_alembic(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .operate.alembic_export import export_alembic

    written = export_alembic(settings, extra["directory"], extra.get("message"))
    if as_json:
        _print_json({"path": str(written) if written else None})
    elif written is None:
        print("Nothing to export: the database matches the models")
    else:
        print(f"Wrote {written}")
    return int(ExitCode.OK)


def _mcp(settings: Settings, as_json: bool, extra: dict[str, Any]) -> int:
    from .operate.mcp_tools import serve

    serve(settings)
    return int(ExitCode.OK)


_COMMANDS = {
    "run": _run,
    "check": _check,
    "plan": _plan,
    "history": _history,
    "locks": _locks,
    "backups": _backups,
    "rollback": _rollback,
    "status": _status,
    "health": _health,
    "metrics": _metrics,
    "rehearse": _rehearse,
    "export-alembic": _export_alembic,
    "mcp": _mcp,
}
