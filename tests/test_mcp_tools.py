"""The MCP tools orchestrator_database_health and orchestrator_migration_status: served by
`python -m orchestrator_migrate mcp` to a real MCP client over stdio, and added to a server built on
the SDK; each result is the same data as `health --json` / `status --json` at that moment."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.server.mcpserver import MCPServer

from orchestrator_migrate import load_settings
from orchestrator_migrate.operate.mcp_tools import HEALTH_TOOL, STATUS_TOOL, add_tools

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mcp_server.py"

V1 = """
import sqlalchemy as sa
md = sa.MetaData()
projects = sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
)
"""

# v2: a new column and a new table.
V2 = """
import sqlalchemy as sa
md = sa.MetaData()
projects = sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
)
labels = sa.Table(
    "labels", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
)
"""


def _timeless(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without `checked_at` (here and in health's details): the clock moves."""
    out = {k: v for k, v in doc.items() if k != "checked_at"}
    if isinstance(out.get("details"), dict):
        out["details"] = _timeless(out["details"])
    return out


class Session:
    """A connected MCP client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, name: str) -> Any:
        """Call a tool; its structured result (checked against its text), or the error text."""
        result = await self.client.call_tool(name, {})
        (text,) = [block.text for block in result.content]
        if result.is_error:
            assert result.structured_content is None
            return text
        # The SDK sends the same document as text too, for clients without structured content.
        assert json.loads(text) == result.structured_content
        return result.structured_content


async def _over_stdio(ws, env: dict[str, str], script, *args: str) -> str:
    """Run `python [ARGS]` as an MCP server and `await script(session)`; returns its stderr."""
    params = StdioServerParameters(
        command=sys.executable, args=list(args), env=ws.env(env), cwd=str(ws.root)
    )
    stray: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):  # a line on stdout that is not JSON-RPC
            stray.append(message)

    errlog = ws.root / "server-stderr.log"
    try:
        with errlog.open("w") as sink:
            transport = stdio_client(params, errlog=sink)
            async with Client(transport, message_handler=on_message) as client:
                await script(Session(client))
        assert stray == [], stray
    except Exception as exc:
        exc.add_note("server stderr:\n" + errlog.read_text())
        raise
    return errlog.read_text()


async def _cli_json(ws, env: dict[str, str], *args: str) -> dict[str, Any]:
    """`orchestrator-migrate ARGS --json`, off the event loop."""
    done = await anyio.to_thread.run_sync(lambda: ws.cli(*args, "--json", env=env))
    return done.json()


def test_both_tools_are_listed_and_give_the_json_documents(ws, any_db):
    v1, v2 = ws.write_models("v1", V1), ws.write_models("v2", V2)
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": any_db.url}
    assert ws.cli("--models", v1, env=env).returncode == 0
    any_db.sql("INSERT INTO projects (id, name) VALUES (1, 'alpha')")
    env_v2 = {**env, "MCP_TASK_ORCHESTRATOR_MODELS": v2}
    seen: dict[str, Any] = {}

    async def script(session: Session) -> None:
        listed = {tool.name: tool for tool in (await session.client.list_tools()).tools}
        seen["tools"] = listed
        seen["pending"] = await session.call(HEALTH_TOOL), await session.call(STATUS_TOOL)
        seen["cli pending"] = (
            await _cli_json(ws, env_v2, "health"),
            await _cli_json(ws, env_v2, "status"),
        )
        # The same server, after a migration: each call reads the database again.
        migrated = await anyio.to_thread.run_sync(lambda: ws.cli(env=env_v2))
        assert migrated.returncode == 0, migrated.output
        seen["migrated"] = await session.call(HEALTH_TOOL), await session.call(STATUS_TOOL)
        seen["cli migrated"] = (
            await _cli_json(ws, env_v2, "health"),
            await _cli_json(ws, env_v2, "status"),
        )

    anyio.run(_over_stdio, ws, env_v2, script, "-m", "orchestrator_migrate", "mcp")

    tools = seen["tools"]
    assert set(tools) == {HEALTH_TOOL, STATUS_TOOL}
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert tool.input_schema["properties"] == {} and not tool.input_schema.get("required")
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
        assert "--json" in (tool.description or "")
    health_schema = tools[HEALTH_TOOL].output_schema
    assert health_schema["properties"]["status"]["enum"] == ["HEALTHY", "WARNING", "CRITICAL"]
    assert set(health_schema["required"]) == {"status", "exit_code", "reasons", "notes", "details"}

    health, status = seen["pending"]
    cli_health, cli_status = seen["cli pending"]
    assert _timeless(health) == _timeless(cli_health)
    assert _timeless(status) == _timeless(cli_status)
    assert health["status"] == "WARNING" and "pending" in [r["code"] for r in health["reasons"]]
    assert status["state"] == "pending" and status["backend"] == any_db.kind
    assert {p["table"] for p in status["pending"]} == {"projects", "labels"}
    assert status["checked_at"] and health["details"]["checked_at"]

    health, status = seen["migrated"]
    cli_health, cli_status = seen["cli migrated"]
    assert _timeless(health) == _timeless(cli_health)
    assert _timeless(status) == _timeless(cli_status)
    assert (health["status"], health["reasons"]) == ("HEALTHY", [])
    assert status["state"] == "up_to_date" and status["last_run"]["outcome"] == "applied"


def test_an_unreadable_database_is_critical_and_status_is_a_tool_error(ws):
    ws.db_path.parent.mkdir(parents=True)
    garbage = "this is not a database\n" * 100
    ws.db_path.write_text(garbage)
    env = {"MCP_TASK_ORCHESTRATOR_MODELS": ws.write_models("v1", V1)}
    seen: dict[str, Any] = {}

    async def script(session: Session) -> None:
        seen["status"] = await session.call(STATUS_TOOL)
        seen["health"] = await session.call(HEALTH_TOOL)  # the server is still serving

    stderr = anyio.run(_over_stdio, ws, env, script, "-m", "orchestrator_migrate", "mcp")

    cli_health = ws.cli("health", "--json", env=env)
    assert cli_health.returncode == 2
    assert seen["health"] == cli_health.json()
    assert seen["health"]["status"] == "CRITICAL" and seen["health"]["details"] is None
    assert [r["code"] for r in seen["health"]["reasons"]] == ["unreachable"]

    cli_status = ws.cli("status", "--json", env=env)
    assert cli_status.returncode != 0
    message = cli_status.json()["error_message"]
    assert message and isinstance(seen["status"], str)
    assert seen["status"] == f"Error executing tool {STATUS_TOOL}: {message}"
    assert "\n" not in seen["status"]
    assert f"{STATUS_TOOL} failed: {message}" in stderr  # logged on stderr, not on stdout
    assert ws.db_path.read_text() == garbage


def test_add_tools_puts_both_on_a_server_built_on_the_sdk(ws, api_env, monkeypatch):
    v1, v2 = ws.write_models("v1", V1), ws.write_models("v2", V2)
    monkeypatch.syspath_prepend(str(ws.models_dir))
    assert ws.cli("--models", v1).returncode == 0
    asked: list[bool] = []

    def settings():
        asked.append(threading.current_thread() is threading.main_thread())
        return load_settings({"base_dir": ws.root, "models": [v2]}, environ={})

    server = MCPServer("host")

    @server.tool()
    def ping() -> str:
        """The host's own tool."""
        return "pong"

    add_tools(server, settings)

    async def calls() -> tuple[list[str], Any, Any]:
        async with Client(server) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            session = Session(client)
            return names, await session.call(HEALTH_TOOL), await session.call(STATUS_TOOL)

    names, health, status = anyio.run(calls)

    assert names == ["ping", HEALTH_TOOL, STATUS_TOOL]
    # The settings are resolved at each call, in a worker thread: the event loop runs on.
    assert asked == [False, False]
    assert _timeless(health) == _timeless(ws.cli("--models", v2, "health", "--json").json())
    assert _timeless(status) == _timeless(ws.cli("--models", v2, "status", "--json").json())
    assert status["state"] == "pending"


def test_add_tools_without_settings_reads_the_environment_at_each_call(ws, api_env, monkeypatch):
    v1, v2 = ws.write_models("v1", V1), ws.write_models("v2", V2)
    monkeypatch.syspath_prepend(str(ws.models_dir))
    assert ws.cli("--models", v1).returncode == 0
    server = MCPServer("host")
    add_tools(server)

    async def states() -> list[str]:
        found = []
        async with Client(server) as client:
            session = Session(client)
            for models in (v1, v2):
                monkeypatch.setenv("MCP_TASK_ORCHESTRATOR_MODELS", models)
                found.append((await session.call(STATUS_TOOL))["state"])
        return found

    assert anyio.run(states) == ["up_to_date", "pending"]


def test_the_example_server_migrates_and_serves_its_tools_and_ours(ws):
    env = {"MCP_TASK_ORCHESTRATOR_MODELS": ws.write_models("v2", V2)}
    seen: dict[str, Any] = {}

    async def script(session: Session) -> None:
        seen["names"] = {tool.name for tool in (await session.client.list_tools()).tools}
        seen["health"] = await session.call(HEALTH_TOOL)
        seen["status"] = await session.call(STATUS_TOOL)

    anyio.run(_over_stdio, ws, env, script, str(EXAMPLE))

    assert seen["names"] == {"count_words", HEALTH_TOOL, STATUS_TOOL}
    assert (seen["health"]["status"], seen["status"]["state"]) == ("HEALTHY", "up_to_date")
    assert _timeless(seen["status"]) == _timeless(ws.cli("status", "--json", env=env).json())


def test_without_the_sdk_mcp_is_a_usage_error_naming_the_extra(ws):
    code = (
        "import sys; sys.modules['mcp'] = None\n"  # as if it were not installed
        "import orchestrator_migrate.operate.mcp_tools\n"
        "from orchestrator_migrate.cli import main\n"
        "sys.exit(main(['mcp']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ws.root, env=ws.env(), capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'orchestrator-migrate[mcp]'" in done.stderr
    assert done.stdout == ""


def test_importing_the_module_does_not_import_the_sdk():
    code = "import sys, orchestrator_migrate.operate.mcp_tools; print('mcp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
