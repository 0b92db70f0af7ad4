"""Export the pending plan as an Alembic revision file, so that a team can move from automatic to
reviewed migrations without retyping anything.

upgrade() runs each operation's exact statements (those `plan --sql` shows and a run executes),
one commented block per operation; downgrade() runs their inverse, newest first: the statements
each operation records to undo it, or, where the backend records none (SQLite), the statements
rollback by SQL builds from the touched tables' definitions as they are now. Nothing is written
to the database; the revision's down_revision is the head of the revisions already in DIR.
"""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from loguru import logger
from sqlalchemy import text
from sqlalchemy.engine import Connection, Dialect

from ..apply.runner import execute
from ..backends.base import Undo
from ..config.filters import OWN_TABLES
from ..config.settings import Settings
from ..context import Run, prepare_run
from ..model.changes import KINDS, ChangeKind
from ..model.entries import HistoryEntry
from ..model.errors import ConfigError, MigrationFailed, RefusedChange
from ..model.plan import Operation, Plan
from ..version import __version__

SLUG_LENGTH = 40  # Alembic's default truncate_slug_length


@dataclass(frozen=True)
class Step:
    """One commented block of upgrade() or downgrade(): its statements, or None when there
    is no inverse to run (the reviewer writes it)."""

    title: str
    statements: tuple[str, ...] | None
    autocommit: bool = False  # runs outside the revision's transaction (committed first)


@dataclass(frozen=True)
class Inverse:
    """downgrade()'s blocks, the operations nothing can undo, and whether a block rebuilds
    tables from their definitions."""

    steps: tuple[Step, ...] = ()
    missing: tuple[str, ...] = ()
    rebuilds: bool = False


@dataclass(frozen=True)
class Revision:
    """What the file holds, before it is written as Python."""

    revision: str
    down_revision: str | None
    message: str
    created: datetime
    database: str  # its URL for humans
    kind: str  # its backend's name
    notes: tuple[str, ...]
    upgrade: tuple[Step, ...]
    inverse: Inverse


def export_alembic(settings: Settings, directory: Path, message: str | None) -> Path | None:
    """Write the pending plan as an Alembic revision in directory; returns its path, or None
    when the database already matches the models (then nothing is written)."""
    directory = Path(directory)
    down_revision = head_revision(directory)  # a bad DIR fails before the database is read
    run = prepare_run(settings)
    plan, inverse, dialect = _plan_and_inverse(run)
    if plan.empty:
        return None
    upgrade = _upgrade(plan)
    revision = Revision(
        revision=_new_id(directory),
        down_revision=down_revision,
        message=message or "orchestrator-migrate plan",
        created=run.clock(),
        database=run.url_for_humans,
        kind=run.backend.name,
        notes=_notes(run, plan, upgrade, inverse),
        upgrade=upgrade,
        inverse=inverse,
    )
    source = render(revision, dialect)
    path = _write(directory, f"{revision.revision}_{slug(revision.message)}.py", source)
    if inverse.missing:
        logger.warning(
            "The downgrade() of {} raises NotImplementedError, no inverse for: {}; write it by"
            " hand where it says NO INVERSE",
            path,
            "; ".join(inverse.missing),
        )
    logger.info("Wrote Alembic revision {} ({} operations)", path, len(plan.operations))
    return path


def head_revision(directory: Path) -> str | None:
    """The single head of the Alembic revision files in directory (None when there are none);
    ConfigError when directory is no directory of revisions or has several heads."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"export-alembic: {directory} is not a directory")
    if not directory.exists():
        return None
    if (directory / "env.py").is_file() and (directory / "versions").is_dir():
        raise ConfigError(
            f"export-alembic: {directory} is an Alembic environment; pass its versions"
            f" directory, {directory / 'versions'}"
        )
    parents: dict[str, tuple[str, ...]] = {}
    for path in sorted(directory.glob("*.py")):
        found = _identifiers(path)
        if found is not None:
            parents[found[0]] = found[1]
    referenced = {parent for downs in parents.values() for parent in downs}
    heads = sorted(set(parents) - referenced)
    if len(heads) > 1:
        raise ConfigError(
            f"export-alembic: the revisions in {directory} have several heads"
            f" ({', '.join(heads)}); merge them first (alembic merge heads)"
        )
    return heads[0] if heads else None


def _identifiers(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """A revision file's revision and down revisions, read without importing it; None when
    the file assigns no revision (not a revision file)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"export-alembic: cannot read revision file {path}: {exc}") from None
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                raise ConfigError(f"export-alembic: {path}: {target.id} is not a literal") from None
    revision, down = values.get("revision"), values.get("down_revision")
    if not isinstance(revision, str):
        return None
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, list | tuple):  # a merge revision
        return revision, tuple(str(d) for d in down)
    return revision, ()


def _plan_and_inverse(run: Run) -> tuple[Plan, Inverse, Dialect]:
    """The plan of a dry run (refused when a run would be), and its inverse computed on the
    database as it is, which is where the upgrade starts."""
    engine = run.backend.create_engine(read_only=True)
    try:
        with engine.connect().execution_options(read_only=True) as conn, conn.begin():
            before = run.backend.fingerprint(conn, run.settings.ignore_tables)
        result = execute(run, dry_run=True)
        plan = result.plan
        if result.refusals:
            raise RefusedChange(
                "export-alembic refused, nothing written: a run would refuse it: "
                + "; ".join(r.message for r in result.refusals),
                result.refusals,
            )
        ours = sorted({c.table for c in plan.changes} & OWN_TABLES)
        if ours:  # never: the comparison leaves them out
            raise MigrationFailed(f"export-alembic: the plan touches our own tables {ours}")
        if plan.empty:
            return plan, Inverse(), engine.dialect
        with engine.connect().execution_options(read_only=True) as conn, conn.begin():
            if run.backend.fingerprint(conn, run.settings.ignore_tables) != before:
                raise MigrationFailed(
                    "export-alembic: the schema changed while the plan was made; nothing"
                    " written, try again"
                )
            return plan, _downgrade(run, conn, plan), engine.dialect
    finally:
        engine.dispose()


def _upgrade(plan: Plan) -> tuple[Step, ...]:
    """One block per operation; those the plan commits ahead of the rest (a new PostgreSQL
    enum value) outside the revision's transaction, as a run does."""
    steps: list[Step] = []
    ahead = True
    for number, operation in enumerate(plan.operations, 1):
        ahead = ahead and operation.commit_first
        steps.append(Step(_title(number, plan, operation), operation.sql, autocommit=ahead))
    return tuple(steps)


def _downgrade(run: Run, conn: Connection, plan: Plan) -> Inverse:
    """The inverse of the plan, newest operation first: each operation's recorded undo; for
    those that record none but rollback by SQL can undo, one last block the backend builds
    from the tables' definitions now; and the operations nothing can undo."""
    steps: list[Step] = []
    from_definitions: list[Operation] = []
    missing: list[str] = []
    for number, operation in reversed(list(enumerate(plan.operations, 1))):
        title = "undo " + _title(number, plan, operation)
        if operation.undo is not None:
            steps.append(Step(title, operation.undo))
        elif _rebuildable(operation):
            from_definitions.insert(0, operation)
        else:
            why = _no_inverse(operation)
            steps.append(Step(f"{title}: NO INVERSE ({why}), write it here", None))
            missing.append(f"{operation.description} ({why})")
    if not from_definitions:
        return Inverse(tuple(steps), tuple(missing))
    try:
        block = _from_definitions(run, conn, from_definitions)
    except RefusedChange as exc:  # a backend that records undo refuses what has none
        described = [f"{op.description} ({exc})" for op in from_definitions]
        steps.append(Step(f"{'; '.join(described)}: NO INVERSE, write it here", None))
        return Inverse(tuple(steps), (*missing, *described))
    return Inverse((*steps, block), tuple(missing), rebuilds=True)


def _no_inverse(operation: Operation) -> str:
    """Why an operation has no inverse here."""
    if operation.destructive:
        return "only a backup holds what it removed"
    if any(change.kind is ChangeKind.RENAME_COLUMN for change in operation.changes):
        return "the tables' definitions it would be rebuilt from name the column as before"
    return "inverse SQL cannot undo it"


def _rebuildable(operation: Operation) -> bool:
    """Whether rollback by SQL undoes an operation that records no undo, from the tables'
    definitions as they are now."""
    kinds = {change.kind for change in operation.changes}
    return operation.reversible and all(KINDS[kind].sql_reversible for kind in kinds)


def _from_definitions(run: Run, conn: Connection, operations: list[Operation]) -> Step:
    """The backend's rollback by SQL of these operations as if a run had applied them: the
    tables they create dropped, the others put back as their definitions are now."""
    created = sorted(
        {c.table for op in operations for c in op.changes if c.kind is ChangeKind.ADD_TABLE}
    )
    touched = sorted({op.table for op in operations} - set(created))
    entry = HistoryEntry(
        started_at="",
        finished_at="",
        outcome="applied",
        operations=[op.to_dict() for op in operations],
        sql=[statement for op in operations for statement in op.sql],
        models_fingerprint="",
        fingerprint_before="",
        fingerprint_after=None,
        backup_id=None,
        duration_ms=0,
        host="",
        pid=0,
        version=__version__,
        schema_before=run.backend.snapshot(conn, touched),
    )
    statements = run.backend.reverse_sql(conn, entry)
    parts = [f"drop {', '.join(created)}"] if created else []
    parts += [f"put back {', '.join(touched)} as defined when exported"] if touched else []
    return Step("; ".join(parts), tuple(statements))


def _title(number: int, plan: Plan, operation: Operation) -> str:
    return (
        f"{number}/{len(plan.operations)} {operation.description}"
        f" ({operation.kind}; {operation.safety.value})"
    )


def _notes(run: Run, plan: Plan, upgrade: tuple[Step, ...], inverse: Inverse) -> tuple[str, ...]:
    """What a reviewer must know beyond the statements."""
    notes: list[str] = []
    if run.backend.undo is Undo.BACKUP:
        notes.append(
            "This database commits every DDL statement on its own: a revision that fails"
            " part-way stays half applied (Alembic cannot roll it back). Take a backup first;"
            " orchestrator-migrate takes one before every run here."
        )
    if any(step.autocommit for step in upgrade):
        notes.append(
            "The first steps commit ahead of the rest (autocommit_block), as a run commits"
            " them: a later failure does not undo them."
        )
    if inverse.rebuilds or any(op.kind == "rebuild_table" for op in plan.operations):
        notes.append(
            "Some steps rebuild a table (a copy created, the rows copied, the old table"
            " dropped, the copy renamed): run them with foreign-key enforcement off on"
            " Alembic's connection, as orchestrator-migrate does, or dropping the old table"
            " fires the ON DELETE actions of the rows that reference it. The downgrade puts"
            " the tables back as they were defined when this revision was exported."
        )
    if inverse.missing:
        notes.append(
            "downgrade() raises NotImplementedError: no inverse for "
            + "; ".join(inverse.missing)
            + ". Write it by hand where it says NO INVERSE."
        )
    if plan.retained:
        notes.append(
            "Kept with their data, not in the models (orchestrator-migrate retires them; drop"
            " them in a later revision once no release uses them): "
            + "; ".join(plan.retained_descriptions)
        )
    return tuple(notes)


def render(revision: Revision, dialect: Dialect) -> str:
    """The revision file as Alembic writes one, with our upgrade() and downgrade()."""
    header = [
        revision.message,
        "",
        f"Revision ID: {revision.revision}",
        f"Revises: {revision.down_revision or ''}",
        f"Create Date: {revision.created.isoformat(sep=' ')}",
        "",
        f"Generated by orchestrator-migrate {__version__} from {revision.database} (password"
        " redacted). upgrade() runs exactly the statements `orchestrator-migrate run` would run"
        f" on this {revision.kind} database; applied to a database in the state this one had, it"
        " gives the same schema.",
    ]
    for note in revision.notes:
        header += ["", note]
    docstring = "\n".join(part.rstrip() for line in header for part in _wrap(line, 96))
    docstring = docstring.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = [
        f'"""{docstring}\n"""',
        "",
        "from typing import Sequence, Union",
        "",
        "import sqlalchemy as sa",
        "from alembic import op",
        "",
        "# revision identifiers, used by Alembic.",
        f"revision: str = {_literal(revision.revision)}",
        "down_revision: Union[str, Sequence[str], None] = "
        + (_literal(revision.down_revision) if revision.down_revision else "None"),
        "branch_labels: Union[str, Sequence[str], None] = None",
        "depends_on: Union[str, Sequence[str], None] = None",
        "",
        "",
        "def upgrade() -> None:",
        *_body(revision.upgrade, dialect),
        "",
        "",
        "def downgrade() -> None:",
        *_refuse_missing(revision.inverse.missing),
        *_body(revision.inverse.steps, dialect),
        "",
    ]
    source = "\n".join(lines)
    ast.parse(source)  # a bug here must never write a file Alembic cannot import
    return source


def _refuse_missing(missing: tuple[str, ...]) -> list[str]:
    """downgrade() raises before any statement when an operation has no inverse."""
    if not missing:
        return []
    message = (
        f"no inverse for: {'; '.join(missing)}. Write it where it says NO INVERSE and remove"
        " this raise"
    )
    parts = _wrap(message, 84)
    quoted = [_literal(part + " ") for part in parts[:-1]] + [_literal(parts[-1])]
    return [
        "    # orchestrator-migrate has no inverse for some steps (NO INVERSE below).",
        "    raise NotImplementedError(",
        *(f"        {part}" for part in quoted),
        "    )",
        "",
    ]


def _body(steps: Sequence[Step], dialect: Dialect) -> list[str]:
    """The blocks of a function, each its comment and its op.execute() calls."""
    lines: list[str] = []
    runs = False  # whether any line executes (comments alone are no function body)
    for step in steps:
        if lines:
            lines.append("")
        lines += [f"    # {line}" for line in _wrap(step.title, 94)]
        indent = "    "
        if step.autocommit:
            lines.append("    with op.get_context().autocommit_block():")
            indent = "        "
        if step.statements is not None and not step.statements:
            lines.append(f"{indent}# (no statement of its own: a neighbouring step carries it)")
        for statement in step.statements or ():
            lines += _execute(statement, dialect, indent)
            runs = True
        if step.autocommit and not step.statements:
            lines.append(f"{indent}pass")
    return lines if runs else [*lines, "    pass"]


def _wrap(line: str, width: int) -> list[str]:
    """A line of words cut into lines of at most width characters (longer words whole); any
    line break or tab in it becomes a space (a comment must stay a comment)."""
    lines: list[str] = []
    current = ""
    for word in line.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current]


def _execute(statement: str, dialect: Dialect, indent: str) -> list[str]:
    """op.execute(sa.text(...)) of a statement, as lines of Python."""
    parts = [_literal(part) for part in text_source(statement, dialect).splitlines(keepends=True)]
    one_line = f"{indent}op.execute(sa.text({parts[0]}))"
    if len(parts) == 1 and len(one_line) <= 100:
        return [one_line]
    inner = indent + "        "
    return [
        f"{indent}op.execute(",
        f"{indent}    sa.text(",
        *(f"{inner}{part}" for part in parts),
        f"{indent}    )",
        f"{indent})",
    ]


# A colon text() takes for a bind parameter (":name"), and a colon after a backslash that
# text() would drop ("\:"): each gets a backslash, which text() removes again.
_ESCAPE = re.compile(r"(?<![:\w$\\])(?=:[\w$]+(?![:\w$]))|(?<=\\)(?=:[\w$]*(?![:\w$]))")


def text_source(statement: str, dialect: Dialect) -> str:
    """The argument of sa.text() that compiles on dialect to exactly statement: its
    bind-parameter colons escaped, and its percent signs as SQL writes them where the driver
    takes them doubled (as a run sends them). RefusedChange when there is none."""
    for candidate in (statement, statement.replace("%%", "%")):
        source = _ESCAPE.sub(r"\\", candidate)
        if str(text(source).compile(dialect=dialect)) == statement:
            return source
    raise RefusedChange(
        f"export-alembic refused, nothing written: no sa.text() compiles to {statement[:80]!r}"
    )


def _literal(value: str) -> str:
    """A Python string literal of value, in double quotes unless that needs more escapes."""
    quoted = repr(value)
    if quoted.startswith("'") and '"' not in value:  # then value has no quote at all
        quoted = f'"{quoted[1:-1]}"'
    return quoted


def slug(message: str) -> str:
    """The file-name part Alembic makes of a message."""
    found = "_".join(re.findall(r"\w+", message)).lower()
    if len(found) > SLUG_LENGTH:
        found = found[:SLUG_LENGTH].rsplit("_", 1)[0] + "_"
    return found or "revision"


def _new_id(directory: Path) -> str:
    """A fresh revision id, as Alembic makes them, that no file in directory starts with."""
    while True:
        candidate = uuid.uuid4().hex[-12:]
        if not directory.is_dir() or not any(directory.glob(f"{candidate}*")):
            return candidate


def _write(directory: Path, name: str, source: str) -> Path:
    """Create directory if needed and write the file, never over an existing one."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"export-alembic: cannot create directory {directory}: {exc}") from None
    path = directory / name
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(source)
    except FileExistsError:
        raise ConfigError(f"export-alembic: {path} exists; nothing written") from None
    except OSError as exc:
        raise ConfigError(f"export-alembic: cannot write {path}: {exc}") from None
    return path
