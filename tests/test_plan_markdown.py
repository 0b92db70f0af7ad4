"""`plan --format markdown`: the body of a pull request, on SQLite, PostgreSQL and MariaDB. The
operations table agrees with `plan --json` and the rows in the database, the folded SQL is
`plan --sql`, and the Mermaid erDiagram is parsed here (every line against the grammar subset
the renderer emits) and, where the real Mermaid parser is installed (the `mermaid-parser-py`
package ships it as JavaScript; node runs it), by Mermaid itself. The command writes nothing."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from orchestrator_migrate.config.settings import load_settings
from orchestrator_migrate.model.errors import RefusedChange
from orchestrator_migrate.model.result import MigrationResult
from orchestrator_migrate.operate.markdown import plan_markdown

PREFIX = "MCP_TASK_ORCHESTRATOR_"

V1 = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "users", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("nickname", sa.String(30)),
)
sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(80)),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id")),
    sa.Column("legacy_code", sa.String(10)),
)
sa.Table(
    "audit_log", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")),
    sa.Column("note", sa.String(40)),
)
"""

# A table with a foreign key to an old one, a column added, a column and a table gone (retired:
# kept with their data).
V2 = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "users", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("nickname", sa.String(30)),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)
sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(80)),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id")),
)
sa.Table(
    "tokens", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("value", sa.String(64)),
)
"""

# NOT NULL without a default or a fill on a table with rows: the pre-check refuses it.
REFUSED = (
    V1
    + """
md.tables["users"].append_column(sa.Column("email", sa.String(120), nullable=False))
"""
)


def models(source: str) -> sa.MetaData:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return namespace["md"]


def type_word(text: str) -> str:
    """How the diagram spells a type: VARCHAR(50) as VARCHAR_50."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")


# ----------------------------------------------------------------------------- the body, parsed


@dataclass
class Body:
    text: str
    operations: list[dict[str, str]]
    sql: str | None
    sql_count: int | None
    mermaid: str | None
    legend: dict[str, tuple[str, str]]  # table -> (entity name, mark text)


def cell(text: str) -> str:
    return text.strip().replace("\\|", "|")


def parse_body(text: str) -> Body:
    lines = text.splitlines()
    assert lines[0] == "## Database migration plan"
    operations: list[dict[str, str]] = []
    if "### Operations" in lines:
        start = lines.index("### Operations") + 2
        header = [cell(c) for c in lines[start].strip("|").split(" | ")]
        assert header == ["#", "what", "table", "safety", "reversible", "rows"]
        assert lines[start + 1] == "|---:|---|---|---|---|---:|"
        for line in lines[start + 2 :]:
            if not line.startswith("|"):
                break
            cells = [cell(c) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            operations.append(dict(zip(header, cells, strict=True)))
    sql = count = None
    folded = re.search(
        r"<details><summary>SQL \((\d+) statements?\)</summary>\n\n(`{3,})sql\n(.*?)\n\2\n\n"
        r"</details>",
        text,
        re.S,
    )
    if folded:
        count, sql = int(folded.group(1)), folded.group(3)
    block = re.search(r"```mermaid\n(.*?)\n```\n", text, re.S)
    legend: dict[str, tuple[str, str]] = {}
    if block:
        for line in text[block.end() :].splitlines():
            found = re.fullmatch(r"- `([^`]+)`(?: \(drawn as `([^`]+)`\))?: (.+)", line)
            if found:
                legend[found.group(1)] = (found.group(2) or found.group(1), found.group(3))
    return Body(text, operations, sql, count, block.group(1) if block else None, legend)


# ------------------------------------------------------- the erDiagram subset, parsed strictly

WORD = r"[A-Za-z_][A-Za-z0-9_]*"
KEYS = r"(?:PK|FK|UK)(?:, (?:PK|FK|UK))*"
LINE_PATTERNS = {
    "open": re.compile(rf"    (?P<name>{WORD}) \{{"),
    "bare": re.compile(rf"    (?P<name>{WORD})"),
    "attribute": re.compile(
        rf"        (?P<type>{WORD}) (?P<name>{WORD})(?: (?P<keys>{KEYS}))?"
        r'(?: "(?P<comment>[^"\n]*)")?'
    ),
    "close": re.compile(r"    \}"),
    "relationship": re.compile(
        rf"    (?P<a>{WORD}) (?P<left>\|o|\|\||\}}o|\}}\|)(?P<line>--|\.\.)"
        rf'(?P<right>o\||\|\||o\{{|\|\{{) (?P<b>{WORD}) : "(?P<label>[^"\n]*)"'
    ),
}
# Words Mermaid reads as keywords where a name stands (any case).
ENTITY_KEYWORDS = {"erdiagram", "style", "classdef", "class", "one", "many", "to", "u"}
ATTRIBUTE_KEYWORDS = {"pk", "fk", "uk"}


@dataclass
class Attribute:
    type: str
    name: str
    keys: list[str]
    comment: str


@dataclass
class Diagram:
    entities: dict[str, list[Attribute]] = field(default_factory=dict)
    relationships: list[dict[str, str]] = field(default_factory=list)


def parse_er(text: str) -> Diagram:
    """The erDiagram subset the renderer emits; every line must be of it, in order."""
    lines = text.split("\n")
    assert lines[0] == "erDiagram"
    diagram = Diagram()
    current: list[Attribute] | None = None
    for line in lines[1:]:
        if current is not None:
            if LINE_PATTERNS["close"].fullmatch(line):
                current = None
                continue
            found = LINE_PATTERNS["attribute"].fullmatch(line)
            assert found, f"not an attribute line: {line!r}"
            assert found["type"].lower() not in ATTRIBUTE_KEYWORDS, line
            assert found["name"].lower() not in ATTRIBUTE_KEYWORDS, line
            keys = found["keys"].split(", ") if found["keys"] else []
            current.append(Attribute(found["type"], found["name"], keys, found["comment"] or ""))
            continue
        for kind in ("open", "relationship", "bare"):
            found = LINE_PATTERNS[kind].fullmatch(line)
            if found:
                break
        else:
            raise AssertionError(f"not an erDiagram line: {line!r}")
        if kind == "relationship":
            diagram.relationships.append(found.groupdict())
            for name in (found["a"], found["b"]):
                assert name in diagram.entities, f"{name} is related before it is declared"
            continue
        name = found["name"]
        assert name.lower() not in ENTITY_KEYWORDS, line
        assert name not in diagram.entities, f"{name} declared twice"
        diagram.entities[name] = []
        if kind == "open":
            current = diagram.entities[name]
    assert current is None, "an entity block is not closed"
    return diagram


# ---------------------------------------------------------- Mermaid's own parser, if installed

RUNNER = """
const parse = require(process.argv[2]);
const texts = JSON.parse(require("fs").readFileSync(0, "utf8"));
(async () => {
  const out = [];
  for (const text of texts) {
    try {
      const found = JSON.parse(await parse(text));
      out.push({ok: true, type: found.graph_type, db: found.graph_data});
    } catch (error) {
      out.push({ok: false, error: String((error && error.message) || error)});
    }
  }
  process.stdout.write(JSON.stringify(out));
})();
"""


def mermaid_bundle() -> Path | None:
    """Mermaid's parser as shipped by mermaid-parser-py (a CommonJS bundle), with node."""
    try:
        dist = importlib.metadata.distribution("mermaid-parser-py")
    except importlib.metadata.PackageNotFoundError:
        return None
    bundle = Path(str(dist.locate_file("mermaid_parser/js/parser.bundle.js")))
    return bundle if bundle.is_file() and shutil.which("node") else None


def mermaid_parse(tmp_path: Path, *texts: str) -> list[dict[str, Any]] | None:
    """What Mermaid itself makes of each diagram; None when its parser is not installed."""
    bundle = mermaid_bundle()
    if bundle is None:
        return None
    runner = tmp_path / "mermaid_runner.cjs"
    runner.write_text(RUNNER)
    done = subprocess.run(
        ["node", str(runner), str(bundle)],
        input=json.dumps(list(texts)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return list(json.loads(done.stdout))


def assert_mermaid_agrees(tmp_path: Path, text: str, diagram: Diagram) -> None:
    """Mermaid parses the block as an ER diagram with the same entities, attributes and
    relationships as the strict parser here."""
    found = mermaid_parse(tmp_path, text)
    if found is None:
        return
    [result] = found
    assert result["ok"], result.get("error")
    assert result["type"] == "er"
    entities = result["db"]["entities"]
    assert set(entities) == set(diagram.entities)
    for name, attributes in diagram.entities.items():
        theirs = [
            (a["type"], a["name"], a["keys"], a["comment"]) for a in entities[name]["attributes"]
        ]
        assert theirs == [(a.type, a.name, a.keys, a.comment) for a in attributes]
    by_id = {e["id"]: name for name, e in entities.items()}
    cardinality = {"||": "ONLY_ONE", "|o": "ZERO_OR_ONE", "o|": "ZERO_OR_ONE"}
    cardinality |= {"o{": "ZERO_OR_MORE", "|{": "ONE_OR_MORE", "}o": "ZERO_OR_MORE"}
    theirs = sorted(
        (
            by_id[r["entityA"]],
            by_id[r["entityB"]],
            r["roleA"],
            r["relSpec"]["cardB"],  # Mermaid names the left end's marker cardB
            r["relSpec"]["cardA"],
            r["relSpec"]["relType"],
        )
        for r in result["db"]["relationships"]
    )
    ours = sorted(
        (
            r["a"],
            r["b"],
            r["label"],
            cardinality[r["left"]],
            cardinality[r["right"]],
            "IDENTIFYING" if r["line"] == "--" else "NON_IDENTIFYING",
        )
        for r in diagram.relationships
    )
    assert theirs == ours


def test_the_mermaid_parser_here_rejects_what_mermaid_rejects(tmp_path):
    # The strict parser and Mermaid agree on a few lines that must fail.
    bad = [
        "erDiagram\n    class {\n        INTEGER id PK\n    }",
        "erDiagram\n    t {\n        VARCHAR(20) name\n        INTEGER id PK(\n    }",
        "erDiagram\n    t {\n        INTEGER PK PK\n    }",
        'erDiagram\n    t {\n        INTEGER id PK "say "hi""\n    }',
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            parse_er(text)
    found = mermaid_parse(tmp_path, *bad)
    if found is None:
        pytest.skip("Mermaid's parser (pip install mermaid-parser-py, and node) is not installed")
    assert [r["ok"] for r in found] == [False] * len(bad)


# -------------------------------------------------------------------- the database, dumped


def dump(url: str) -> list[Any]:
    """Every table (ours too), its definition and its rows, for before/after equality."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            found: list[Any] = []
            for name in sorted(inspector.get_table_names()):
                columns = [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in inspector.get_columns(name)
                ]
                keys = [
                    repr(inspector.get_pk_constraint(name)),
                    sorted(repr(fk) for fk in inspector.get_foreign_keys(name)),
                    sorted(repr(ix) for ix in inspector.get_indexes(name)),
                ]
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                rows = sorted(repr(tuple(row)) for row in conn.execute(sa.select(table)))
                found.append((name, columns, keys, rows))
            return found
    finally:
        engine.dispose()


def reflected(db, *tables: str) -> sa.MetaData:
    engine = db.engine()
    try:
        found = sa.MetaData()
        for table in tables:
            sa.Table(table, found, autoload_with=engine)
        return found
    finally:
        engine.dispose()


def url_with_password(db) -> str:
    """The test URL, with a password where the server ignores it (PostgreSQL trusts)."""
    if db.kind != "postgresql":
        return db.url
    url = sa.engine.make_url(db.url).set(password="s3cret-pw")
    return url.render_as_string(hide_password=False)


def seeded(ws, db) -> dict[str, str]:
    """v1 applied, with rows: 3 users, 2 projects (one with a legacy code), 1 audit row."""
    env = {PREFIX + "DB_URL": url_with_password(db)}
    first = ws.cli("--models", ws.write_models("md_v1", V1), env=env)
    assert first.returncode == 0, first.output
    db.sql(
        "INSERT INTO users (id, name) VALUES (1, 'ada'), (2, 'bob'), (3, 'cy')",
        "INSERT INTO projects (id, title, owner_id, legacy_code) VALUES"
        " (1, 'p1', 1, 'L-1'), (2, 'p2', NULL, NULL)",
        "INSERT INTO audit_log (id, user_id, note) VALUES (1, 2, 'joined')",
    )
    return env


def plan_outputs(ws, env: dict[str, str], ref: str) -> tuple[str, dict[str, Any], str]:
    shown = ws.cli("plan", "--format", "markdown", "--models", ref, env=env)
    assert shown.returncode == 0, shown.output
    as_json = ws.cli("plan", "--json", "--models", ref, env=env)
    as_sql = ws.cli("plan", "--sql", "--models", ref, env=env)
    assert as_json.returncode == as_sql.returncode == 0
    return shown.stdout, as_json.json(), as_sql.stdout


# ----------------------------------------------------------------------------------- the tests


def test_markdown_body_of_a_plan_that_adds_a_table_and_a_column_and_retires_others(
    ws, any_db, tmp_path
):
    env = seeded(ws, any_db)
    before = dump(any_db.url)
    file_before = ws.db_path.read_bytes() if any_db.kind == "sqlite" else b""
    text, planned, sql = plan_outputs(ws, env, ws.write_models("md_v2", V2))
    assert dump(any_db.url) == before, "plan --format markdown changed the database"
    if any_db.kind == "sqlite":
        assert ws.db_path.read_bytes() == file_before
    body = parse_body(text)

    # The database, its password redacted, and the backend.
    database = next(line for line in text.splitlines() if line.startswith("- **Database:**"))
    assert "s3cret-pw" not in text
    assert database.endswith(f"({any_db.kind})")
    if any_db.kind == "postgresql":
        assert ":***@" in database

    # One row per operation, as plan --json has them, with the rows of the table it touches.
    operations = planned["operations"]
    assert len(body.operations) == len(operations) > 0
    created = {op["table"] for op in operations if op["kind"] == "add_table"}
    assert created == {"tokens"}
    rows = {"users": "3", "projects": "2"}
    for number, (row, op) in enumerate(zip(body.operations, operations, strict=True), 1):
        assert row["#"] == str(number)
        assert row["what"] == " ".join(op["description"].split())
        assert row["table"] == f"`{op['table']}`"
        assert row["safety"] == op["safety"]
        assert row["reversible"] == ("yes" if op["reversible"] else "no")
        assert row["rows"] == ("new" if op["table"] in created else rows[op["table"]])
    assert {op["table"] for op in operations} >= {"tokens", "users"}

    # The summary counts the safety classes; what is kept is listed with its count.
    summary = next(line for line in text.splitlines() if line.startswith("- **Summary:**"))
    safeties = [op["safety"] for op in operations]
    for safety in set(safeties):
        assert f"{safeties.count(safety)} {safety}" in summary
    assert f"{len(operations)} operation" in summary
    kept = {(c["table"], c["column"]): c for c in planned["retained"]}
    assert set(kept) == {("projects", "legacy_code"), ("audit_log", None)}
    for change in kept.values():
        assert change["safety"] == "retiring"
        assert f"- {change['description']}: retiring" in text
    assert "refused" not in text

    # The SQL folded below is exactly what plan --sql prints.
    assert body.sql == sql.strip()
    assert body.sql_count == sum(len(op["sql"]) for op in operations)

    # The diagram: the touched tables, their columns as the models have them, the kept one.
    assert body.mermaid is not None
    diagram = parse_er(body.mermaid)
    assert_mermaid_agrees(tmp_path, body.mermaid, diagram)
    assert {table: mark for table, (_, mark) in body.legend.items()} == {
        "tokens": "added",
        "users": "changed",
        "projects": "changed",
        "audit_log": "retired: kept with its data, not in the models",
    }
    assert all(name == table for table, (name, _) in body.legend.items())
    dialect = any_db.engine().dialect

    def attribute(column: Any, comment: str = "") -> tuple[str, str, list[str], str]:
        keys = ["PK"] * bool(column.primary_key) + ["FK"] * bool(column.foreign_keys)
        return (type_word(column.type.compile(dialect=dialect)), column.name, keys, comment)

    # As the models have them; what the database keeps, as it has it (reflected).
    v2 = models(V2)
    kept_columns = reflected(any_db, "projects", "audit_log")
    comments = {("users", "active"): "added", ("projects", "legacy_code"): "retired"}
    expected = {
        table: [attribute(c, comments.get((table, c.name), "")) for c in v2.tables[table].columns]
        for table in ("users", "projects")
    }
    expected["tokens"] = [attribute(c, "added") for c in v2.tables["tokens"].columns]
    expected["projects"].append(attribute(kept_columns.tables["projects"].c.legacy_code, "retired"))
    expected["audit_log"] = [
        attribute(c, "retired") for c in kept_columns.tables["audit_log"].columns
    ]
    assert {
        table: [(a.type, a.name, a.keys, a.comment) for a in attributes]
        for table, attributes in diagram.entities.items()
    } == expected
    relationships = {
        (r["a"], r["b"], r["label"]): r["left"] + r["line"] + r["right"]
        for r in diagram.relationships
    }
    assert relationships == {
        ("users", "tokens", "user_id"): "||--o{",  # NOT NULL: exactly one user
        ("users", "projects", "owner_id"): "|o--o{",  # nullable: zero or one
        ("users", "audit_log", "user_id"): "|o..o{",  # retired: dashed
    }


def test_with_allow_destructive_what_is_dropped_is_marked_dropped(ws, any_db, tmp_path):
    env = seeded(ws, any_db)
    before = dump(any_db.url)
    ref = ws.write_models("md_v2", V2)
    shown = ws.cli("plan", "--format", "markdown", "--allow-destructive", "--models", ref, env=env)
    assert shown.returncode == 0, shown.output
    planned = ws.cli("plan", "--json", "--allow-destructive", "--models", ref, env=env).json()
    assert dump(any_db.url) == before
    body = parse_body(shown.stdout)
    assert not planned["retained"]
    rows = {"users": "3", "projects": "2", "audit_log": "1", "tokens": "new"}
    destructive = 0
    for row, op in zip(body.operations, planned["operations"], strict=True):
        assert (row["safety"], row["rows"]) == (op["safety"], rows[op["table"]])
        destructive += op["safety"] == "destructive"
    assert destructive >= 2  # the column and the table
    assert f"{destructive} destructive" in shown.stdout
    assert body.legend["audit_log"] == ("audit_log", "dropped, with its data")
    assert body.mermaid is not None
    diagram = parse_er(body.mermaid)
    assert_mermaid_agrees(tmp_path, body.mermaid, diagram)
    assert {a.comment for a in diagram.entities["audit_log"]} == {"dropped"}
    [legacy] = [a for a in diagram.entities["projects"] if a.name == "legacy_code"]
    assert legacy.comment == "dropped"
    lines = {(r["a"], r["b"]): r["line"] for r in diagram.relationships}
    assert lines[("users", "audit_log")] == ".."


def test_nothing_to_do_says_the_database_matches_the_models(ws, any_db):
    env = seeded(ws, any_db)
    before = dump(any_db.url)
    shown = ws.cli("plan", "--format", "markdown", "--models", "md_v1:md", env=env)
    assert shown.returncode == 0, shown.output
    assert dump(any_db.url) == before
    lines = shown.stdout.splitlines()
    assert lines[0] == "## Database migration plan"
    assert "- **Summary:** nothing to do: the database matches the models" in lines
    assert "###" not in shown.stdout and "```" not in shown.stdout
    assert len(lines) <= 5


def test_a_refused_plan_says_so_above_its_operations(ws, any_db, tmp_path):
    env = seeded(ws, any_db)
    before = dump(any_db.url)
    text, planned, sql = plan_outputs(ws, env, ws.write_models("md_refused", REFUSED))
    assert dump(any_db.url) == before
    [refusal] = planned["refusals"]
    assert refusal["table"] == "users" and refusal["column"] == "email"
    assert refusal["count"] == 3
    lines = text.splitlines()
    warning = lines.index("> **A run now would be refused** (exit 4), before changing anything:")
    assert lines[warning + 1] == f"> - {' '.join(refusal['message'].split())}"
    assert warning < lines.index("### Operations"), "the refusal comes before the operations"
    summary = next(line for line in lines if line.startswith("- **Summary:**"))
    assert "**a run now would be refused**" in summary
    body = parse_body(text)
    [row] = [r for r in body.operations if "email" in r["what"]]
    assert row["safety"] == "data-dependent" and row["rows"] == "3"
    assert body.sql == sql.strip()
    assert body.mermaid is not None
    diagram = parse_er(body.mermaid)
    assert_mermaid_agrees(tmp_path, body.mermaid, diagram)
    email = [a for a in diagram.entities["users"] if a.name == "email"]
    assert [a.comment for a in email] == ["added"]


def test_a_run_refused_while_planning_renders_its_reason(ws, api_env, monkeypatch):
    # What `plan --format markdown` can print when the planner itself refuses (the CLI prints
    # only the error today): the reason, prominently, and no "nothing to do".
    ws.write_models("md_v1", V1)
    monkeypatch.syspath_prepend(str(ws.models_dir))
    monkeypatch.delitem(sys.modules, "md_v1", raising=False)
    settings = load_settings({"db_url": ws.url, "models": ["md_v1:md"]}, environ={})
    error = RefusedChange("migration refused, nothing changed: users.a | is gone")
    text = plan_markdown(MigrationResult.from_error(error), settings)
    lines = text.splitlines()
    assert "- **Summary:** no plan: **a run now would be refused**" in lines
    assert "> **A run now would be refused** (exit 4), before changing anything:" in lines
    assert "> - migration refused, nothing changed: users.a | is gone" in lines
    assert "nothing to do" not in text


PEOPLE = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "people", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40)),
)
sa.Table(
    "pets", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner", sa.Integer, sa.ForeignKey("people.id")),
)
"""

PERSONS = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "persons", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40)),
    info={"renamed_from": "people"},
)
sa.Table(
    "pets", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("persons.id"), info={"renamed_from": "owner"}),
)
"""


def test_renames_are_drawn_under_the_new_names_and_counted_under_the_old(ws, tmp_path):
    env = {PREFIX + "DB_URL": ws.url}
    assert ws.cli("--models", ws.write_models("md_people", PEOPLE), env=env).returncode == 0
    ws.script(
        "INSERT INTO people (id, name) VALUES (1, 'ann'), (2, 'ben');"
        "INSERT INTO pets (id, owner) VALUES (1, 1), (2, 1), (3, 2), (4, NULL);"
    )
    before = ws.dump()
    text, planned, sql = plan_outputs(ws, env, ws.write_models("md_persons", PERSONS))
    assert ws.dump() == before
    body = parse_body(text)
    rows = {"people": "2", "persons": "2", "pets": "4"}
    for row, op in zip(body.operations, planned["operations"], strict=True):
        assert (row["safety"], row["rows"]) == (op["safety"], rows[op["table"]])
    assert "persons" in [op["table"] for op in planned["operations"]]
    assert body.sql == sql.strip()
    assert body.mermaid is not None
    diagram = parse_er(body.mermaid)
    assert_mermaid_agrees(tmp_path, body.mermaid, diagram)
    assert body.legend == {
        "persons": ("persons", "changed, renamed from `people`"),
        "pets": ("pets", "changed"),
    }
    assert [(a.name, a.comment) for a in diagram.entities["pets"]] == [
        ("id", ""),
        ("owner_id", "renamed from owner"),
    ]
    assert [(r["a"], r["b"], r["label"]) for r in diagram.relationships] == [
        ("persons", "pets", "owner_id")
    ]


AWKWARD = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table(
    "class", md,
    sa.Column("PK", sa.Integer, primary_key=True),
    sa.Column("first name", sa.String(20)),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("title", sa.Text),
)
sa.Table(
    "my-table v2", md,
    # One row per class row at most: its key is the foreign key. (A UNIQUE beside the foreign
    # key would make CREATE TABLE's constraint order differ from one process to the next.)
    sa.Column("class_pk", sa.Integer, sa.ForeignKey("class.PK"), primary_key=True),
    sa.Column("note", sa.String(20)),
)
sa.Table("Many", md, sa.Column("id", sa.Integer, primary_key=True))
sa.Table("many_", md, sa.Column("id", sa.Integer, primary_key=True))
"""


def test_names_mermaid_cannot_take_are_drawn_under_names_it_can(ws, tmp_path):
    # A first run on an empty database: every table is new, and their names are awkward.
    ref = ws.write_models("md_awkward", AWKWARD)
    text, planned, sql = plan_outputs(ws, {PREFIX + "DB_URL": ws.url}, ref)
    assert not ws.db_path.exists(), "plan created the database file"
    body = parse_body(text)
    assert [row["rows"] for row in body.operations] == ["new"] * len(planned["operations"])
    assert body.sql == sql.strip()
    assert body.mermaid is not None
    diagram = parse_er(body.mermaid)
    assert_mermaid_agrees(tmp_path, body.mermaid, diagram)
    assert body.legend == {
        "class": ("class_", "added"),
        "my-table v2": ("my_table_v2", "added"),
        "Many": ("Many_", "added"),
        "many_": ("many__2", "added"),
    }
    assert set(diagram.entities) == {"class_", "my_table_v2", "Many_", "many__2"}
    attributes = {a.name: a for a in diagram.entities["class_"]}
    assert attributes["PK_"].keys == ["PK"]
    assert attributes["PK_"].comment == "added; column PK"
    assert attributes["first_name"].comment == "added; column first name"
    assert attributes["price"].type == "NUMERIC_10_2"
    assert attributes["title"].comment == "added"
    [link] = diagram.relationships
    assert (link["a"], link["b"], link["label"]) == ("class_", "my_table_v2", "class_pk")
    assert link["left"] + link["right"] == "||o|"  # its key: exactly one class, zero or one row


IN_A_SCHEMA = """
import sqlalchemy as sa

md = sa.MetaData()
sa.Table("users", md, sa.Column("id", sa.Integer, primary_key=True))
sa.Table(
    "daily", md,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
    schema="reports",
)
"""


def test_a_table_in_a_schema_of_its_own_is_drawn_as_one_word(ws, pg_url, tmp_path):
    url = pg_url.render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA reports")
    engine.dispose()
    env = {PREFIX + "DB_URL": url}
    text, planned, sql = plan_outputs(ws, env, ws.write_models("md_schema", IN_A_SCHEMA))
    assert {op["table"] for op in planned["operations"]} == {"users", "reports.daily"}
    body = parse_body(text)
    assert [row["rows"] for row in body.operations] == ["new"] * len(planned["operations"])
    assert body.sql == sql.strip()
    assert body.legend == {
        "users": ("users", "added"),
        "reports.daily": ("reports_daily", "added"),
    }
    assert body.mermaid is not None
    diagram = parse_er(body.mermaid)
    assert_mermaid_agrees(tmp_path, body.mermaid, diagram)
    assert [(a.type, a.name, a.keys) for a in diagram.entities["reports_daily"]] == [
        ("DATE", "day", ["PK"]),
        ("INTEGER", "user_id", ["PK", "FK"]),
    ]
    [link] = diagram.relationships
    assert (link["a"], link["b"], link["left"] + link["line"] + link["right"]) == (
        "users",
        "reports_daily",
        "||--o{",
    )
