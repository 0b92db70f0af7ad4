"""A plan as the body of a pull request: the operations with their safety class and row counts,
the SQL folded below, and a Mermaid ER diagram of the tables the plan touches, added, changed,
retired and dropped marked apart. It only reads: one read-only connection counts the rows and
reflects what the database keeps beyond the models.

The diagram keeps to the long-documented core of erDiagram (entities with attribute blocks,
PK/FK keys, quoted comments, relationships with quoted labels, plain-word names): code-review
sites render with Mermaid releases that lag behind, and one statement an older parser rejects
(`classDef` and `:::` in an erDiagram came with Mermaid 11's new ER renderer) turns the whole
picture into an error. So a table's mark is in its columns' comments and in the list under the
diagram, not a colour.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    MetaData,
    Table,
    UniqueConstraint,
    func,
    inspect,
    select,
)
from sqlalchemy import table as table_clause
from sqlalchemy.engine import Connection
from sqlalchemy.exc import CompileError, NoSuchTableError

from ..config.settings import Settings
from ..context import prepare_run
from ..model.changes import Change, ChangeKind, Safety
from ..model.names import split_key
from ..model.outcome import Outcome
from ..model.plan import Operation, Plan
from ..model.result import MigrationResult

HEADING = "## Database migration plan"

# What the plan does to a table, as the list under the diagram and its columns' comments say.
ADDED = "added"
CHANGED = "changed"
RETIRED = "retired"
DROPPED = "dropped"
REFERENCED = "referenced"
_MARK_TEXT = {
    ADDED: "added",
    CHANGED: "changed",
    RETIRED: "retired: kept with its data, not in the models",
    DROPPED: "dropped, with its data",
    REFERENCED: "referenced, unchanged",
}

# What a change does to its column, as the column's comment in the diagram says.
_COLUMN_NOTES: dict[ChangeKind, str] = {
    ChangeKind.ADD_COLUMN: ADDED,
    ChangeKind.RETIRE_COLUMN: RETIRED,
    ChangeKind.ALTER_TYPE: "type changed",
    ChangeKind.ALTER_DEFAULT: "default changed",
    ChangeKind.SET_NOT_NULL: "made NOT NULL",
    ChangeKind.DROP_NOT_NULL: "made nullable",
    ChangeKind.ALTER_COMMENT: "comment changed",
    ChangeKind.ALTER_GENERATED: "generated changed",
    ChangeKind.ADD_ENUM_VALUE: "enum values added",
    ChangeKind.REMOVE_ENUM_VALUES: "enum values removed",
}

# Words Mermaid's erDiagram grammar reads as keywords, whatever their case (Mermaid 9 to 11): as
# an entity's name, and as an attribute's type or name.
_ENTITY_KEYWORDS = frozenset(
    {"erdiagram", "style", "classdef", "class", "direction", "acctitle", "accdescr", "title"}
    | {"one", "only", "zero", "many", "to", "optionally", "u", "o", "pk", "fk", "uk"}
)
_ATTRIBUTE_KEYWORDS = frozenset({"pk", "fk", "uk"})


def plan_markdown(result: MigrationResult, settings: Settings) -> str:
    """The review-ready Markdown body for the plan in result (a dry run's); writes nothing."""
    run = prepare_run(settings)
    plan = result.plan
    lines = [HEADING, "", f"- **Database:** `{run.url_for_humans}` ({run.backend.name})"]
    if plan.empty and not plan.retained:
        return _joined([*lines, f"- **Summary:** {_nothing(result)}", *_problems(result)])
    engine = run.backend.create_engine(read_only=True)
    try:
        with engine.connect().execution_options(read_only=True) as conn:
            database = _Database(conn)
            created = {c.table for c in plan.changes if c.kind is ChangeKind.ADD_TABLE}
            rows = [_rows(op, created, database) for op in plan.operations]
            diagram = _diagram(plan, run.metadata, database)
    finally:
        engine.dispose()
    lines += [f"- **Summary:** {_summary(plan, result)}", *_problems(result)]
    lines += _operations(plan.operations, rows) if plan.operations else []
    lines += _kept(plan.retained)
    lines += _sql(plan.sql) if plan.sql else []
    lines += diagram.markdown()
    return _joined(lines)


def _joined(lines: list[str]) -> str:
    return "\n".join(lines).rstrip() + "\n"


def _nothing(result: MigrationResult) -> str:
    if result.outcome is Outcome.REFUSED:
        return "no plan: **a run now would be refused**"
    if not result.success:
        return f"no plan: the run ended {result.outcome.value}"
    if result.outcome is Outcome.AHEAD:
        return (
            "nothing to do: the database is ahead of these models (a newer release migrated"
            " it); this release keeps working on it"
        )
    return "nothing to do: the database matches the models"


def _summary(plan: Plan, result: MigrationResult) -> str:
    ops = plan.operations
    counts = [
        f"{n} {safety.value}" for safety in Safety if (n := sum(op.safety is safety for op in ops))
    ]
    text = f"{len(ops)} operation{'' if len(ops) == 1 else 's'}"
    text += f" ({', '.join(counts)})" if counts else ": nothing to apply"
    if plan.retained:
        text += f"; {len(plan.retained)} kept with their data, not in the models"
    if result.refusals or result.outcome is Outcome.REFUSED:
        text += "; **a run now would be refused**"
    return text


def _problems(result: MigrationResult) -> list[str]:
    """What a run would meet: refusals first, prominently; then a failure and warnings."""
    lines: list[str] = []
    if result.refusals or result.outcome is Outcome.REFUSED:
        lines += ["", "> **A run now would be refused** (exit 4), before changing anything:"]
        lines += [f"> - {_inline(r.message)}" for r in result.refusals]
        if not result.refusals and result.error_message:
            lines.append(f"> - {_inline(result.error_message)}")
    elif not result.success and result.error_message:
        lines += ["", f"> **{result.outcome.value}:** {_inline(result.error_message)}"]
    notes = [w for w in result.warnings if not w.startswith("kept, not in the models")]
    lines += ["", *(f"> {_inline(note)}" for note in notes)] if notes else []
    return lines


def _operations(operations: Iterable[Operation], rows: list[str]) -> list[str]:
    lines = ["", "### Operations", "", "| # | what | table | safety | reversible | rows |"]
    lines.append("|---:|---|---|---|---|---:|")
    for number, (op, count) in enumerate(zip(operations, rows, strict=True), 1):
        table = f"`{_cell(op.table)}`" if op.table else "—"
        reversible = "yes" if op.reversible else "no"
        cells = [str(number), _cell(op.description), table, op.safety.value, reversible, count]
        lines.append(f"| {' | '.join(cells)} |")
    return lines


def _kept(retained: Iterable[Change]) -> list[str]:
    items = [f"- {_inline(c.description)}: {c.safety.value}" for c in retained]
    return ["", "### Kept with their data (not in the models)", "", *items] if items else []


def _sql(statements: list[str]) -> list[str]:
    """The statements as `plan --sql` prints them, in a fence no statement can close."""
    text = "\n\n".join(statement.rstrip() + ";" for statement in statements)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    plural = "" if len(statements) == 1 else "s"
    summary = f"<details><summary>SQL ({len(statements)} statement{plural})</summary>"
    return ["", summary, "", f"{fence}sql", text, fence, "", "</details>"]


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, its pipes escaped."""
    return _inline(text).replace("|", "\\|")


def _inline(text: str) -> str:
    return " ".join(text.split())


class _Database:
    """The database as it is before the plan, read on one read-only connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.inspector = inspect(conn)
        self._counts: dict[str, int | None] = {}
        self._tables: dict[str, Table | None] = {}

    def count(self, key: str) -> int | None:
        """The rows of a table, None when the database has no such table."""
        if key not in self._counts:
            schema, name = split_key(key)
            found = None
            if self.inspector.has_table(name, schema=schema):
                query = select(func.count()).select_from(table_clause(name, schema=schema))
                found = int(self.conn.execute(query).scalar_one())
            self._counts[key] = found
        return self._counts[key]

    def table(self, key: str) -> Table | None:
        """The table as the database defines it (reflected), None when there is none."""
        if key not in self._tables:
            schema, name = split_key(key)
            try:
                found = Table(name, MetaData(), schema=schema, autoload_with=self.conn)
            except NoSuchTableError:
                found = None
            self._tables[key] = found
        return self._tables[key]

    def type_name(self, column: Column[Any]) -> str:
        """The column's type as this database spells it."""
        try:
            return str(column.type.compile(dialect=self.conn.dialect))
        except (CompileError, NotImplementedError):
            return type(column.type).__name__


def _rows(op: Operation, created: set[str], database: _Database) -> str:
    """The rows of the table an operation touches: 'new' for one the plan creates."""
    if not op.table:
        return "—"
    if op.table in created:
        return "new"
    if op.rebuilt_rows is not None:
        return f"{op.rebuilt_rows:,}"
    renamed = {c.table: str(c.name) for c in op.changes if c.kind is ChangeKind.RENAME_TABLE}
    count = database.count(op.table)
    count = database.count(renamed[op.table]) if count is None and op.table in renamed else count
    return "—" if count is None else f"{count:,}"


@dataclass(frozen=True)
class _Attribute:
    """One column of an entity: `type name [PK, FK] ["comment"]`."""

    type: str
    name: str
    keys: tuple[str, ...]
    comment: str

    def line(self) -> str:
        keys = f" {', '.join(self.keys)}" if self.keys else ""
        comment = f' "{self.comment}"' if self.comment else ""
        return f"        {self.type} {self.name}{keys}{comment}"


@dataclass(frozen=True)
class _Link:
    """A foreign key between two shown tables; dashed when it goes with retired data."""

    parent: str
    child: str
    columns: tuple[str, ...]
    optional: bool  # a NULL references nothing: zero or one parent
    unique: bool  # at most one child per parent
    retired: bool


@dataclass
class _Entity:
    key: str
    mark: str
    attributes: list[_Attribute] = field(default_factory=list)
    renamed_from: str | None = None


@dataclass
class _Diagram:
    entities: list[_Entity]
    links: list[_Link]

    def markdown(self) -> list[str]:
        if not self.entities:
            return []
        ids = _identifiers([e.key for e in self.entities])
        lines = ["", "### Tables the plan touches", "", "```mermaid", "erDiagram"]
        for entity in self.entities:
            if entity.attributes:
                lines.append(f"    {ids[entity.key]} {{")
                lines += [attribute.line() for attribute in entity.attributes]
                lines.append("    }")
            else:
                lines.append(f"    {ids[entity.key]}")
        for link in self.links:
            left = "|o" if link.optional else "||"
            right = "o|" if link.unique else "o{"
            line = ".." if link.retired else "--"
            label = _comment(", ".join(link.columns))
            lines.append(
                f'    {ids[link.parent]} {left}{line}{right} {ids[link.child]} : "{label}"'
            )
        lines += ["```", ""]
        for entity in self.entities:
            drawn = "" if ids[entity.key] == entity.key else f" (drawn as `{ids[entity.key]}`)"
            renamed = f", renamed from `{entity.renamed_from}`" if entity.renamed_from else ""
            lines.append(f"- `{entity.key}`{drawn}: {_MARK_TEXT[entity.mark]}{renamed}")
        return lines


def _diagram(plan: Plan, metadata: MetaData, database: _Database) -> _Diagram:
    """The tables the plan touches as the models will have them, with what the database keeps
    beyond the models, and the tables their foreign keys refer to."""
    changes = [*plan.changes, *plan.retained]
    renames = {str(c.name): c.table for c in changes if c.kind is ChangeKind.RENAME_TABLE}
    marks: dict[str, str] = {}
    notes: dict[tuple[str, str], list[str]] = {}
    gone: dict[str, dict[str, str]] = {}  # table -> column -> retired or dropped
    for change in changes:
        key = renames.get(change.table, change.table)
        if not key:
            continue
        if change.kind is ChangeKind.ADD_TABLE:
            marks[key] = ADDED
        elif change.kind is ChangeKind.DROP_TABLE:
            marks[key] = DROPPED if change.destructive else RETIRED
        else:
            marks.setdefault(key, CHANGED)
        if change.column is None:
            continue
        note = _COLUMN_NOTES.get(change.kind)
        if change.kind is ChangeKind.DROP_COLUMN:
            note = DROPPED if change.destructive else RETIRED
            gone.setdefault(key, {})[change.column] = note
        elif change.kind is ChangeKind.RENAME_COLUMN:
            note = f"renamed from {change.name}"
        found = notes.setdefault((key, change.column), [])
        if note is not None and note not in found:
            found.append(note)
    entities = [
        _Entity(key, mark, renamed_from=next((o for o, n in renames.items() if n == key), None))
        for key, mark in marks.items()
    ]
    links: list[_Link] = []
    for entity in entities:
        columns, constraints = _columns(entity, metadata, database, gone.get(entity.key, {}))
        entity.attributes = [
            _attribute(column, notes.get((entity.key, column.name), []), note, database)
            for column, note in columns
        ]
        links += [_link(entity.key, fk, retired, renames) for fk, retired in constraints]
    shown = {e.key for e in entities}
    for parent in dict.fromkeys(link.parent for link in links):
        if parent not in shown:
            entities.append(_referenced(parent, metadata, database))
            shown.add(parent)
    return _Diagram(entities, sorted(set(links), key=lambda k: (k.parent, k.child, k.columns)))


def _columns(
    entity: _Entity, metadata: MetaData, database: _Database, gone: dict[str, str]
) -> tuple[list[tuple[Column[Any], str]], list[tuple[ForeignKeyConstraint, bool]]]:
    """(column, its table's mark for it) and (foreign key, retired) of one entity: the model's
    columns then those the database keeps; a table the models no longer have as reflected."""
    model = metadata.tables.get(entity.key)
    if model is None:
        reflected = database.table(entity.key)
        if reflected is None:
            return [], []
        mark = entity.mark if entity.mark in (RETIRED, DROPPED) else ""
        columns = [(column, mark) for column in reflected.columns]
        return columns, [(fk, True) for fk in reflected.foreign_key_constraints]
    mark = entity.mark if entity.mark != CHANGED else ""
    found = [(column, mark) for column in model.columns]
    constraints = [(fk, False) for fk in model.foreign_key_constraints]
    reflected = database.table(entity.key) if gone else None
    if reflected is not None:
        found += [(c, gone[c.name]) for c in reflected.columns if c.name in gone]
        retired = [
            (fk, True)
            for fk in reflected.foreign_key_constraints
            if any(name in gone for name in fk.column_keys)
        ]
        constraints += retired
    return found, constraints


def _attribute(column: Column[Any], notes: list[str], mark: str, database: _Database) -> _Attribute:
    keys = ("PK",) * bool(column.primary_key) + ("FK",) * bool(column.foreign_keys)
    name = _word(column.name)
    said = [mark] if mark and mark not in notes else []
    said += notes
    said += [f"column {column.name}"] if name != column.name else []
    return _Attribute(_type_word(database.type_name(column)), name, keys, _comment("; ".join(said)))


def _link(child: str, fk: ForeignKeyConstraint, retired: bool, renames: dict[str, str]) -> _Link:
    target = fk.elements[0].target_fullname.rsplit(".", 1)[0]
    columns = list(fk.columns)
    return _Link(
        parent=renames.get(target, target),
        child=child,
        columns=tuple(c.name for c in columns),
        optional=any(c.nullable for c in columns),
        unique=_unique(fk.table, {c.name for c in columns}),
        retired=retired,
    )


def _unique(table: Table, names: set[str]) -> bool:
    """Whether these columns hold each value at most once: the key, or a UNIQUE over them."""
    keys = [{c.name for c in table.primary_key.columns}]
    keys += [{c.name} for c in table.columns if c.unique]
    keys += [
        {c.name for c in u.columns} for u in table.constraints if isinstance(u, UniqueConstraint)
    ]
    keys += [{c.name for c in i.columns} for i in table.indexes if i.unique]
    return names in keys


def _referenced(key: str, metadata: MetaData, database: _Database) -> _Entity:
    """A table a shown foreign key refers to, unchanged: drawn with its primary key only."""
    table = metadata.tables.get(key)
    table = database.table(key) if table is None else table
    entity = _Entity(key, REFERENCED)
    if table is not None:
        entity.attributes = [_attribute(c, [], "", database) for c in table.primary_key.columns]
    return entity


def _identifiers(keys: list[str]) -> dict[str, str]:
    """A Mermaid entity name for each table: the table's own name where it is one."""
    found: dict[str, str] = {}
    taken: set[str] = set()
    for key in keys:
        name = candidate = _word(key, _ENTITY_KEYWORDS)
        number = 1
        while candidate.lower() in taken:
            number += 1
            candidate = f"{name}_{number}"
        taken.add(candidate.lower())
        found[key] = candidate
    return found


def _word(text: str, keywords: frozenset[str] = _ATTRIBUTE_KEYWORDS) -> str:
    """text as a word Mermaid's erDiagram takes for an attribute's (or entity's) name."""
    word = re.sub(r"[^A-Za-z0-9_]", "_", text) or "_"
    word = word if re.match(r"[A-Za-z_]", word) else f"_{word}"
    return f"{word}_" if word.lower() in keywords else word


def _type_word(text: str) -> str:
    """A type as one attribute word: VARCHAR(50) as VARCHAR_50, NUMERIC(10, 2) as NUMERIC_10_2."""
    word = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")[:40].rstrip("_")
    return _word(word or "UNKNOWN")


def _comment(text: str) -> str:
    """text as the inside of a Mermaid string: no double quotes, one line."""
    return _inline(text.replace('"', "'"))
