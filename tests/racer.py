"""Run the CLI once a start file appears, so that many processes begin at the same moment.

Usage: python tests/racer.py GO_FILE CLI_ARGS...  (imports happen before the wait)
"""

import sys
import time
from pathlib import Path

import sqlalchemy.dialects.sqlite  # noqa: F401  (import everything before the race)

import orchestrator_migrate.cli as cli

go = Path(sys.argv[1])
deadline = time.monotonic() + 120
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("racer: start file never appeared")
    time.sleep(0.001)
sys.exit(cli.main(sys.argv[2:]))
