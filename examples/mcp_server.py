"""A server already built on the MCP Python SDK (2.x) that adds orchestrator-migrate's two tools,
orchestrator_database_health and orchestrator_migration_status, next to its own.

    pip install 'orchestrator-migrate[mcp]'
    MCP_TASK_ORCHESTRATOR_MODELS=my_server.models:Base python examples/mcp_server.py

It migrates its database at start, as the seed's servers do, then serves on stdio. The settings
come from the MCP_TASK_ORCHESTRATOR_* variables and config files, read again at each tool call.
"""

from __future__ import annotations

from loguru import logger
from mcp.server.mcpserver import MCPServer

from orchestrator_migrate import initialize_database_with_migration
from orchestrator_migrate.operate.mcp_tools import add_tools

server = MCPServer("example-task-server")


@server.tool()
def count_words(text: str) -> int:
    """The server's own tool: how many words the text has."""
    return len(text.split())


add_tools(server)  # or add_tools(server, settings), or a callable returning the settings


def main() -> None:
    if not initialize_database_with_migration():
        logger.warning("Database migration failed - the tools will say why")
    server.run("stdio")  # stdout is the protocol; the logs go to stderr


if __name__ == "__main__":
    main()
