"""The task server: migrate the database at start-up, then do a little work in it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import orchestrator_migrate

from . import models, models_v2


def selected_models() -> ModuleType:
    """The models module chosen by TASK_SERVER_MODELS (v1 unless it says v2)."""
    return models_v2 if os.environ.get("TASK_SERVER_MODELS", "v1").lower() == "v2" else models


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server: migrate, then add and list tasks as asked."""
    parser = argparse.ArgumentParser(prog="task-server", description=__doc__)
    parser.add_argument("--add-task", metavar="TITLE", help="add a task to the project")
    parser.add_argument("--project", default="inbox", help="project of --add-task (inbox)")
    parser.add_argument("--list", action="store_true", help="list the tasks")
    args = parser.parse_args(argv)

    m = selected_models()
    # Passing the metadata explicitly makes the server independent of the entry points,
    # which only exist when the package is installed.
    if not orchestrator_migrate.initialize_database_with_migration(metadata=m.Base.metadata):
        print("task-server: the database could not be migrated; not starting", file=sys.stderr)
        return 1

    engine = create_engine(orchestrator_migrate.load_settings().database_url())
    try:
        with Session(engine) as session:
            if args.add_task:
                project = session.scalar(select(m.Project).filter_by(name=args.project))
                if project is None:
                    project = m.Project(name=args.project)
                    session.add(project)
                    session.flush()  # assigns project.id
                session.add(m.Task(project_id=project.id, title=args.add_task))
                session.commit()
                print(f"added task {args.add_task!r} to project {args.project!r}")
            if args.list:
                rows = session.execute(
                    select(m.Task, m.Project.name).join(m.Project).order_by(m.Task.id)
                )
                for task, project_name in rows:
                    # Version 2 tasks have a priority; version 1 tasks do not.
                    priority = getattr(task, "priority", None)
                    extra = "" if priority is None else f" priority={priority}"
                    print(f"{task.id}\t{project_name}\t{task.status}\t{task.title}{extra}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
