"""task_server: an example server migrated by orchestrator_migrate at every start."""
