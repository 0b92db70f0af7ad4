"""The MCP tools `orchestrator_database_health` and `orchestrator_migration_status`, on the official
`mcp` SDK 2.x (the optional extra `orchestrator-migrate[mcp]`).

`add_tools` puts both on a server already built on the SDK; `serve` is `orchestrator-migrate mcp`.
Each result is exactly the `health --json` / `status --json` document. The SDK is imported only
when one of the two is called, so the package itself never needs it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from loguru import logger
from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict  # pydantic needs this one below Python 3.12

from ..config.settings import Settings, load_settings
from ..model.errors import ConfigError
from ..model.result import MigrationResult
from ..version import __version__
from .health import health
from .status import status

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from sqlalchemy import MetaData

SERVER_NAME = "orchestrator-migrate"
HEALTH_TOOL = "orchestrator_database_health"
STATUS_TOOL = "orchestrator_migration_status"
INSTALL_HINT = "pip install 'orchestrator-migrate[mcp]'"

SettingsSource = Settings | Callable[[], Settings] | None
"""Fixed settings, a callable returning them at each call, or None: the environment and config
files, read at each call."""

HEALTH_DESCRIPTION = """\
Judge the migration state of this server's SQL database, as a readiness probe would. Reads the
database afresh and writes nothing; a database problem is never a tool error (one out of reach
is CRITICAL), only a bad setting is. Returns the `orchestrator-migrate health --json` document:
`status` is HEALTHY, WARNING or CRITICAL (`exit_code` 0, 1 or 2); `reasons` lists each finding,
most serious first, with `level`, a short `code` (e.g. unreachable, integrity, interrupted,
failed, pending, drift, lock_held) and a `message`; `notes` are informational (e.g. no run
recorded yet, or a newer release migrated the database); `details` is the full migration status
document, or null when the database could not be read."""

STATUS_DESCRIPTION = """\
Report what an operator asks of this server's SQL database around a deploy. Compares the
database with the server's SQLAlchemy models as a dry run: reads only, writes nothing. Returns
the `orchestrator-migrate status --json` document: `state` (fresh, up_to_date, pending or ahead),
`up_to_date`, the `pending` operations (description, kind, table, safety, destructive,
reversible) and `pending_count`, `refusals` (data a run would refuse), `retired` and `foreign`
objects kept with their data, schema `drift`, `last_run` (outcome, times, duration, backup_id,
error), `interrupted`, `backups` (count, bytes, oldest, newest, over_limit), the migration `lock`
(held, holder, held_for_s), `integrity` problems, `notes` and `checked_at`. A database that
cannot be read is a tool error with one line saying why and what to fix."""

INSTRUCTIONS = (
    f"Read-only views of a SQL database kept in step with its models by orchestrator-migrate:"
    f" {HEALTH_TOOL} for a HEALTHY/WARNING/CRITICAL verdict with reasons,"
    f" {STATUS_TOOL} for pending operations, the last run, backups and the lock."
)


# extra="allow": a field health adds later reaches the client instead of being dropped.
@with_config(ConfigDict(extra="allow"))
class ReasonDoc(TypedDict):
    """One finding of `health`."""

    level: Literal["HEALTHY", "WARNING", "CRITICAL"]
    code: str
    message: str


@with_config(ConfigDict(extra="allow"))
class HealthDoc(TypedDict):
    """`health --json`; typed so that the tool's output schema tells an agent its shape."""

    status: Literal["HEALTHY", "WARNING", "CRITICAL"]
    exit_code: int
    reasons: list[ReasonDoc]
    notes: list[str]
    details: dict[str, Any] | None


def add_tools(
    server: MCPServer[Any],
    settings_or_factory: SettingsSource = None,
    *,
    metadata: MetaData | None = None,
) -> None:
    """Register both tools on server; each call resolves the settings and reads the database again.

    metadata: the models to compare with, instead of the settings' `models` or entry points.
    """
    sdk = _sdk()
    resolve = _resolver(settings_or_factory)

    async def database_health() -> HealthDoc:
        found = await _off_the_loop(sdk, HEALTH_TOOL, lambda: health(resolve(), metadata).to_dict())
        return cast(HealthDoc, found)  # and the SDK validates it against HealthDoc

    async def migration_status() -> dict[str, Any]:
        return await _off_the_loop(sdk, STATUS_TOOL, lambda: status(resolve(), metadata).to_dict())

    read_only = sdk.types.ToolAnnotations(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )
    server.add_tool(
        database_health,
        name=HEALTH_TOOL,
        title="Database migration health",
        description=HEALTH_DESCRIPTION,
        annotations=read_only,
        structured_output=True,
    )
    server.add_tool(
        migration_status,
        name=STATUS_TOOL,
        title="Database migration status",
        description=STATUS_DESCRIPTION,
        annotations=read_only,
        structured_output=True,
    )


def serve(settings: SettingsSource = None) -> None:
    """Serve both tools over stdio until the client closes stdin (`orchestrator-migrate mcp`).

    stdout carries the protocol only: logs go to stderr, and the SDK points file descriptor 1 at
    stderr while it serves, so a stray print cannot corrupt a message.
    """
    sdk = _sdk()
    level = settings.log_level if isinstance(settings, Settings) else "INFO"
    server = sdk.MCPServer(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=_sdk_level(level),
    )
    add_tools(server, settings)
    server.run("stdio")


SdkLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _sdk_level(level: str) -> SdkLevel:
    """The level of Python's logging, which the SDK sets up on stderr for every library: at INFO,
    Alembic would narrate each comparison there, so it is WARNING unless LOG_LEVEL asks for DEBUG
    (or TRACE), or for less."""
    if level in ("TRACE", "DEBUG"):
        return "DEBUG"
    return "ERROR" if level == "ERROR" else "CRITICAL" if level == "CRITICAL" else "WARNING"


class _Sdk:
    """The parts of the SDK used here, imported on first use."""

    def __init__(self) -> None:
        import anyio.to_thread
        import mcp.types
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError

        self.to_thread = anyio.to_thread
        self.types = mcp.types
        self.MCPServer = MCPServer
        self.ToolError = ToolError


def _sdk() -> _Sdk:
    try:
        return _Sdk()
    except ImportError as exc:  # not installed, or mcp 1.x (no mcp.server.mcpserver)
        raise ConfigError(
            f"the MCP tools need the official MCP Python SDK 2.x ({exc}); install it with"
            f" {INSTALL_HINT}"
        ) from exc


def _resolver(source: SettingsSource) -> Callable[[], Settings]:
    if source is None:
        return load_settings
    if isinstance(source, Settings):
        return lambda: source
    return source


async def _off_the_loop(sdk: _Sdk, name: str, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a blocking read in a worker thread; its document as `--json` prints it, or a tool
    error (isError) with the one line the CLI would print."""
    try:
        found = await sdk.to_thread.run_sync(read)
    except Exception as exc:  # a MigrateError, or an unexpected one: the CLI's line either way
        message = MigrationResult.from_error(exc).error_message or type(exc).__name__
        logger.info("MCP tool {} failed: {}", name, message)
        logger.opt(exception=exc).debug("Details of the failure of {}", name)
        raise sdk.ToolError(message) from exc
    # The same conversion `--json` applies (default=str), so both give exactly the same data.
    return cast(dict[str, Any], json.loads(json.dumps(found, default=str)))
