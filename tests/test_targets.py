"""Targets: --models references, merging, declarative bases, the entry-point group."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import pytest

from orchestrator_migrate import TargetError, check
from orchestrator_migrate.config.targets import ENTRY_POINT_GROUP, load_reference

PREFIX = "MCP_TASK_ORCHESTRATOR_"

TASKS = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("tasks", md, sa.Column("id", sa.Integer, primary_key=True))
"""

PROJECTS = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("projects", md, sa.Column("id", sa.Integer, primary_key=True))
"""

TASKS_AGAIN = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("tasks", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("x", sa.Text))
"""

DECLARATIVE = """
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Feature(Base):
    __tablename__ = "features"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))


md = Base.metadata
"""

NOT_METADATA = """
md = {"tasks": "not a MetaData"}
"""

BROKEN = """
raise RuntimeError("models are broken")
"""


def _tables(ws) -> set[str]:
    rows = ws.sql("SELECT name FROM sqlite_master WHERE type='table'")
    return {name for (name,) in rows if not name.startswith("orchestrator_migrate")}


def _assert_exit_2_touching_nothing(ws, result, *names: str) -> None:
    assert result.returncode == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    assert not ws.db_path.exists()
    assert not (ws.root / ".task_orchestrator").exists()


def test_models_repeatable_merges_the_targets(ws) -> None:
    tasks = ws.write_models("tasks_models", TASKS)
    projects = ws.write_models("projects_models", PROJECTS)
    result = ws.cli("--models", tasks, "--models", projects)
    assert result.returncode == 0, result.output
    assert _tables(ws) == {"tasks", "projects"}


def test_models_environment_is_comma_separated(ws) -> None:
    tasks = ws.write_models("tasks_models", TASKS)
    projects = ws.write_models("projects_models", PROJECTS)
    result = ws.cli(env={PREFIX + "MODELS": f"{tasks},{projects}"})
    assert result.returncode == 0, result.output
    assert _tables(ws) == {"tasks", "projects"}


@pytest.fixture
def models_importable(ws, monkeypatch: pytest.MonkeyPatch):
    """The workspace's models folder on sys.path for in-process calls; forgotten afterwards."""
    monkeypatch.syspath_prepend(str(ws.models_dir))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if str(ws.models_dir) in (getattr(sys.modules[name], "__file__", None) or ""):
            del sys.modules[name]


def test_declarative_base_works_like_a_metadata(ws, models_importable) -> None:
    ws.write_models("declarative_models", DECLARATIVE)
    base = ws.cli("--models", "declarative_models:Base")
    assert base.returncode == 0, base.output
    assert _tables(ws) == {"features"}
    # the same models given as their MetaData are the same schema: nothing to do
    same = check(db_url=ws.url, base_dir=ws.root, models=["declarative_models:md"])
    assert same.migration_needed is False


def test_two_targets_defining_one_table_exit_2_naming_both(ws) -> None:
    tasks = ws.write_models("tasks_models", TASKS)
    again = ws.write_models("other_models", TASKS_AGAIN)
    result = ws.cli("--models", tasks, "--models", again)
    _assert_exit_2_touching_nothing(ws, result, "tasks", tasks, again)


BAD_REFERENCES = {
    "missing-module": ("no_such_models_module:md", None, "no_such_models_module"),
    "missing-attribute": ("tasks_models:nothing_here", TASKS, "nothing_here"),
    "not-metadata": ("not_metadata_models:md", NOT_METADATA, "MetaData"),
    "no-colon": ("tasks_models.md", TASKS, "MODULE:ATTR"),
}
MORE_BAD_REFERENCES = {
    "import-error": ("broken_models:md", BROKEN, "models are broken"),
    "empty-attribute": ("tasks_models:", TASKS, "MODULE:ATTR"),
    "empty-module": (":md", None, "MODULE:ATTR"),
    "missing-nested-attribute": ("tasks_models:md.nope", TASKS, "md.nope"),
}


def _write_module_of(ws, reference: str, source: str | None) -> None:
    if source is not None:
        ws.write_models(reference.split(":")[0].split(".")[0], source)


@pytest.mark.parametrize("case", sorted(BAD_REFERENCES))
def test_bad_reference_exits_2_naming_it(ws, case: str) -> None:
    reference, source, detail = BAD_REFERENCES[case]
    _write_module_of(ws, reference, source)
    result = ws.cli("--models", reference)
    _assert_exit_2_touching_nothing(ws, result, reference, detail)


@pytest.mark.parametrize("case", sorted(MORE_BAD_REFERENCES))
def test_more_bad_references_name_the_reference(ws, models_importable, case: str) -> None:
    reference, source, detail = MORE_BAD_REFERENCES[case]
    _write_module_of(ws, reference, source)
    with pytest.raises(TargetError) as excinfo:
        load_reference(reference)
    message = str(excinfo.value)
    assert reference in message and detail in message, message
    assert "\n" not in message


def test_no_models_at_all_exits_2_naming_the_entry_point_group(ws) -> None:
    installed = list(entry_points(group=ENTRY_POINT_GROUP))
    result = ws.cli()
    if installed:
        pytest.skip(f"entry points installed in {ENTRY_POINT_GROUP}: {installed}")
    _assert_exit_2_touching_nothing(ws, result, "orchestrator_migrate.models", "--models")


@pytest.mark.usefixtures("api_env")
def test_tables_in_a_schema_of_their_own_are_refused_not_skipped(ws, any_db):
    """SQLite and MariaDB have no schemas of their own (PostgreSQL does: tests/test_schemas.py):
    a table with schema= is refused with its name, and nothing changes."""
    import sqlalchemy as sa

    from orchestrator_migrate import ConfigError, migrate

    md = sa.MetaData()
    sa.Table("plain", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("jobs", md, sa.Column("id", sa.Integer, primary_key=True), schema="app")
    if any_db.kind == "postgresql":
        return
    with pytest.raises(ConfigError, match=r"schema of their own \(app\.jobs\)") as refused:
        migrate(db_url=any_db.url, metadata=md, base_dir=str(ws.root))
    assert refused.value.exit_code == 2
    if any_db.kind == "sqlite":
        assert not ws.db_path.exists() or "plain" not in any_db.tables()
    else:
        assert "plain" not in any_db.tables()
