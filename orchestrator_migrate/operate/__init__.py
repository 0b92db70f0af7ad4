"""What operators call around the pipeline: status, health, metrics, the MCP tools, rehearsal,
the review and export of a plan."""
