#!/bin/sh
# Container entrypoint: bring the database in step with the models, then become the server.
#
#   entrypoint.sh SERVER-COMMAND [ARGS...]     (the image's CMD supplies the default)
#
# The pre-start step reads its settings from MCP_TASK_ORCHESTRATOR_* (see the Dockerfile). Any
# non-zero exit of it stops here with that exit code, so the server never starts on a database
# that was not migrated; `exec` makes the server PID 1 so that it receives the stop signal.
set -eu

if [ "$#" -eq 0 ]; then
    echo "entrypoint: no server command given" >&2
    exit 64
fi

echo "entrypoint: python -m orchestrator_migrate (pre-start migration)" >&2
python -m orchestrator_migrate

exec "$@"
