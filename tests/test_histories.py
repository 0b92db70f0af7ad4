"""Real projects' model histories, release after release, on SQLite, PostgreSQL and MariaDB.

Each test takes one history (tests/histories/) through all its releases on one database, in one
mode: `retire` (the default: what the models drop is kept with its data) or `destructive`
(ALLOW_DESTRUCTIVE=true at every start). After each release's migration:

- the run succeeded;
- every row and value written by the earlier releases is still there (in retire mode also in the
  retired tables and columns; in destructive mode the values of what the models still have), and
  a column added to a table with rows holds its default in those rows;
- `check` finds nothing left to do;
- the schema equals what `create_all` of that release makes on an empty database of the same
  kind (tables and their comments, columns with their type, nullability, server default,
  autoincrement and comment, a PostgreSQL enum's values in order, primary keys, indexes, unique
  constraints, foreign keys, CHECK constraints by text, with the names the models give them),
  apart from what is retired by design in retire mode;
- the release's code can insert rows into every one of its tables; they must survive too.

A release that meets a known package bug on one kind of database (Version.known_bugs) is an
expected failure there, as long as it fails only in the way described; the releases after it are
not run on that database.
"""

from __future__ import annotations

import contextlib
import decimal
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, _scratch_database
from histories import (
    ANY,
    History,
    KnownBug,
    Seeder,
    blog,
    existing_row_value,
    server_default_value,
    shop,
    tracker,
)
from sqlalchemy.pool import NullPool

from orchestrator_migrate import MigrateError, check, migrate

HISTORIES = [blog.HISTORY, tracker.HISTORY, shop.HISTORY]
SHOWN = 12  # differences shown per kind of problem

pytestmark = [
    pytest.mark.filterwarnings("ignore:Dialect sqlite.*Decimal"),
    pytest.mark.usefixtures("api_env"),
]


def _engine(url: str | sa.URL) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool)


# --- the rows every release wrote, and what they must hold now ---------------------------------


class Ledger:
    """Every row inserted so far, keyed by table and primary key, with the value of each column."""

    def __init__(self, destructive: bool) -> None:
        self.destructive = destructive
        self.rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        self.columns: dict[str, dict[str, sa.Column[Any]]] = {}  # last definition of each
        self.pks: dict[str, list[str]] = {}

    def advance(self, md: sa.MetaData) -> None:
        """The models moved to md: added columns fill the rows already there; in destructive
        mode what the models dropped is expected to be gone."""
        for table in md.sorted_tables:
            known = self.columns.setdefault(table.name, {})
            rows = self.rows.setdefault(table.name, {})
            for column in table.columns:
                old = column.info.get("renamed_from")
                if column.name not in known and old in known:
                    # info={"renamed_from": ...}: the values move with the column
                    known[column.name] = known.pop(old)
                    for row in rows.values():
                        row[column.name] = row.pop(old, None)
                if column.name not in known:
                    fill = existing_row_value(column)
                    for row in rows.values():
                        row[column.name] = fill
                known[column.name] = column
            pk = [c.name for c in table.primary_key]
            if self.pks.get(table.name, pk) != pk:
                # a column joined the key (or left it): the rows are found by the new key
                self.rows[table.name] = {tuple(r[p] for p in pk): r for r in rows.values()}
            self.pks[table.name] = pk
        if self.destructive:
            for name in list(self.columns):
                if name not in md.tables:
                    del self.columns[name], self.rows[name], self.pks[name]
                    continue
                for column in list(self.columns[name]):
                    if column not in md.tables[name].c:
                        del self.columns[name][column]
                        for row in self.rows[name].values():
                            row.pop(column, None)

    def record(self, table: str, key: tuple[Any, ...], row: dict[str, Any]) -> None:
        """A row inserted through the models; retired columns hold their server default."""
        full = dict(row)
        for name, column in self.columns.get(table, {}).items():
            if name not in full:
                full[name] = server_default_value(column)
        self.rows.setdefault(table, {})[key] = full

    def verify(self, conn: sa.Connection) -> list[str]:
        """What is missing or different; tables and columns that are gone entirely are left to
        the schema comparison."""
        problems: list[str] = []
        insp = sa.inspect(conn)
        present_tables = set(insp.get_table_names())
        for table, columns in self.columns.items():
            expected = self.rows.get(table, {})
            if table not in present_tables:
                continue
            present = {c["name"] for c in insp.get_columns(table)}
            names = [n for n in columns if n in present]
            pk = self.pks[table]
            if not all(p in present for p in pk):
                problems.append(f"{table}: primary key column(s) {pk} missing")
                continue
            reader = sa.Table(table, sa.MetaData(), *(sa.Column(n, columns[n].type) for n in names))
            try:
                found = {
                    tuple(r[p] for p in pk): dict(r)
                    for r in conn.execute(sa.select(reader)).mappings()
                }
            except Exception as exc:
                problems.append(f"{table}: reading the rows failed: {exc}")
                continue
            missing = [k for k in expected if k not in found]
            extra = [k for k in found if k not in expected]
            if missing:
                problems.append(
                    f"{table}: {len(missing)} of {len(expected)} rows lost, e.g. {pk} ="
                    f" {missing[:5]}"
                )
            if extra:
                problems.append(f"{table}: {len(extra)} unexpected rows, e.g. {extra[:5]}")
            wrong = []
            for key, row in expected.items():
                actual = found.get(key)
                if actual is None:
                    continue
                for name in names:
                    if not _same(row.get(name), actual[name]):
                        wrong.append(
                            f"{table}.{name} of {key}: {actual[name]!r}, expected {row[name]!r}"
                        )
            problems += wrong[:SHOWN]
            if len(wrong) > SHOWN:
                problems.append(f"{table}: {len(wrong) - SHOWN} more values differ")
        return problems


def _same(expected: Any, actual: Any) -> bool:
    if expected is ANY:
        return True
    if isinstance(expected, decimal.Decimal) or isinstance(actual, decimal.Decimal):
        try:
            return decimal.Decimal(str(expected)) == decimal.Decimal(str(actual))
        except decimal.InvalidOperation:
            return False
    if isinstance(expected, bool) and isinstance(actual, int):
        return int(expected) == actual
    return bool(expected == actual)


# --- the reference: the same release's create_all on an empty database of the same kind -------


class Reference:
    """An empty database of the same kind; build(md) gives the URL of md's create_all on it."""

    def __init__(self, kind: str, tmp_path: Path, url: sa.URL | None) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.url = url
        self.count = 0

    def build(self, md: sa.MetaData) -> str | sa.URL:
        self.count += 1
        if self.kind == "sqlite":
            url: str | sa.URL = f"sqlite:///{self.tmp_path / f'reference_{self.count}.db'}"
        else:
            assert self.url is not None
            url = self.url
        engine = _engine(url)
        try:
            with engine.begin() as conn:
                if self.kind == "postgresql":
                    conn.exec_driver_sql("DROP SCHEMA public CASCADE")
                    conn.exec_driver_sql("CREATE SCHEMA public")
                elif self.kind == "mysql":
                    conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
                    for table in sa.inspect(conn).get_table_names():
                        conn.exec_driver_sql(f"DROP TABLE `{table}`")
                    conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
            md.create_all(engine)
        finally:
            engine.dispose()
        return url


@contextlib.contextmanager
def reference_database(kind: str, tmp_path: Path) -> Iterator[Reference]:
    if kind == "sqlite":
        yield Reference(kind, tmp_path, None)
        return
    admin = PG_ADMIN_URL if kind == "postgresql" else MYSQL_ADMIN_URL
    with contextlib.contextmanager(_scratch_database)(admin, kind) as url:
        yield Reference(kind, tmp_path, url)


# --- a normalised reflection -------------------------------------------------------------------

_SQLITE_TEXT = ("CHAR", "CLOB", "TEXT", "DATE", "TIME", "JSON", "UUID", "ENUM")
_SQLITE_REAL = ("REAL", "FLOA", "DOUB")


def _sqlite_family(declared: str) -> str:
    """SQLite stores by affinity; the README promises that e.g. VARCHAR(50) = VARCHAR(200) = TEXT,
    BOOLEAN = INTEGER = BIGINT and DATETIME = TEXT there, so those spellings compare equal."""
    decl = declared.upper()
    if "INT" in decl or decl.startswith("BOOL"):
        return "integer"
    if any(word in decl for word in _SQLITE_TEXT):
        return "text"
    if not decl or "BLOB" in decl:
        return "blob"
    if any(word in decl for word in _SQLITE_REAL):
        return "real"
    return "numeric"


def _model_names(md: sa.MetaData) -> set[str]:
    """The names the models give constraints and indexes (explicitly or by naming convention);
    other names are the database's own choice and are not compared."""
    names: set[str] = set()
    for table in md.tables.values():
        for constraint in table.constraints:
            if isinstance(constraint.name, str):
                names.add(str(constraint.name))
        for index in table.indexes:
            if isinstance(index.name, str):
                names.add(str(index.name))
    return names


def _type_text(type_: Any, dialect: sa.Dialect, kind: str) -> str:
    try:
        text = " ".join(str(type_.compile(dialect=dialect)).split())
    except Exception:
        text = repr(type_)
    if kind == "postgresql" and isinstance(type_, sa.Enum):
        text += f" {list(type_.enums)}"  # a native enum compiles to its name: its values in order
    return _sqlite_family(text) if kind == "sqlite" else text


def _default_text(default: Any) -> str | None:
    return None if default is None else " ".join(str(default).split())


def normalised_schema(url: str | sa.URL, kind: str, names: set[str]) -> dict[str, dict[str, Any]]:
    """{table: {columns, pk, indexes, uniques, fks}} without this tool's own tables."""

    def name(value: Any) -> str | None:
        return value if value in names else None

    engine = _engine(url)
    schema: dict[str, dict[str, Any]] = {}
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            for table in insp.get_table_names():
                if table.startswith("orchestrator_migrate"):
                    continue
                columns = {
                    c["name"]: {
                        "type": _type_text(c["type"], conn.dialect, kind),
                        "nullable": bool(c["nullable"]),
                        "default": _default_text(c.get("default")),
                        "autoincrement": bool(c.get("autoincrement", False)),
                        "comment": c.get("comment"),
                    }
                    for c in insp.get_columns(table)
                }
                pk = insp.get_pk_constraint(table)
                # Counters, not sets: the same index or constraint twice is a difference.
                indexes = Counter(
                    (name(i["name"]), tuple(i["column_names"]), bool(i["unique"]))
                    for i in insp.get_indexes(table)
                    if not i.get("duplicates_constraint")
                )
                uniques = Counter(
                    (name(u["name"]), tuple(u["column_names"]))
                    for u in insp.get_unique_constraints(table)
                )
                fks = Counter(
                    (
                        name(f["name"]),
                        tuple(f["constrained_columns"]),
                        f["referred_table"],
                        tuple(f["referred_columns"]),
                        ((f.get("options") or {}).get("ondelete") or "NO ACTION").upper(),
                    )
                    for f in insp.get_foreign_keys(table)
                )
                checks = Counter(
                    (name(c["name"]), " ".join(str(c["sqltext"]).split()))
                    for c in insp.get_check_constraints(table)
                )
                comment = None
                with contextlib.suppress(NotImplementedError):  # SQLite keeps none
                    comment = insp.get_table_comment(table)["text"]
                schema[table] = {
                    "comment": comment,
                    "checks": checks,
                    "columns": columns,
                    "pk": (name(pk.get("name")), tuple(pk.get("constrained_columns") or ())),
                    "indexes": indexes,
                    "uniques": uniques,
                    "fks": fks,
                }
    finally:
        engine.dispose()
    return schema


def _times(count: int) -> str:
    return f" ({count} times)" if count > 1 else ""


def schema_differences(
    actual: dict[str, dict[str, Any]],
    reference: dict[str, dict[str, Any]],
    retired_tables: set[str],
    retired_columns: dict[str, set[str]],
) -> list[str]:
    """How the migrated schema differs from the reference, apart from what is retired."""
    problems: list[str] = []
    for table in sorted(set(reference) - set(actual)):
        problems.append(f"table {table} is missing")
    for table in sorted(set(actual) - set(reference) - retired_tables):
        problems.append(f"table {table} is there but not in the models (it should be dropped)")
    for table in sorted(retired_tables - set(actual)):
        problems.append(f"retired table {table} was dropped without ALLOW_DESTRUCTIVE")
    for table in sorted(set(reference) & set(actual)):
        ref, act = reference[table], actual[table]
        retired = retired_columns.get(table, set())
        for column in sorted(set(ref["columns"]) - set(act["columns"])):
            problems.append(f"column {table}.{column} is missing")
        for column in sorted(set(act["columns"]) - set(ref["columns"]) - retired):
            problems.append(f"column {table}.{column} is there but not in the models")
        for column in sorted(retired - set(act["columns"])):
            problems.append(
                f"retired column {table}.{column} was dropped without ALLOW_DESTRUCTIVE"
            )
        for column in sorted(set(ref["columns"]) & set(act["columns"])):
            want, got = ref["columns"][column], act["columns"][column]
            for key in want:
                if want[key] != got[key]:
                    problems.append(
                        f"column {table}.{column}: {key} {got[key]!r}, expected {want[key]!r}"
                    )
        if ref["pk"] != act["pk"]:
            problems.append(f"primary key of {table}: {act['pk']}, expected {ref['pk']}")
        if ref["comment"] != act["comment"]:
            problems.append(f"comment of {table}: {act['comment']!r}, expected {ref['comment']!r}")
        for item, count in sorted((ref["checks"] - act["checks"]).items(), key=repr):
            problems.append(f"{table}: check (name, text) {item} is missing" + _times(count))
        for item, count in sorted((act["checks"] - ref["checks"]).items(), key=repr):
            problems.append(
                f"{table}: check (name, text) {item} is there, not in the models" + _times(count)
            )
        for kind, label in (
            ("indexes", "index (name, columns, unique)"),
            ("uniques", "unique constraint (name, columns)"),
            ("fks", "foreign key (name, columns, table, columns, on delete)"),
        ):

            def live(items: Counter[Any], retired: set[str] = retired) -> Counter[Any]:
                # Constraints over a retired column are retired with it.
                return Counter({i: n for i, n in items.items() if not set(i[1]) & retired})

            want, got = live(ref[kind]), live(act[kind])
            for item, count in sorted((want - got).items(), key=repr):
                problems.append(f"{table}: {label} {item} is missing" + _times(count))
            for item, count in sorted((got - want).items(), key=repr):
                extra = "once more than the models say" if item in want else "not in the models"
                problems.append(f"{table}: {label} {item} is there, {extra}" + _times(count))
    return problems


# --- the test ----------------------------------------------------------------------------------


def _renamed_from(table: sa.Table) -> set[str]:
    """The old names of the columns a table renames with info={"renamed_from": ...}."""
    return {c.info["renamed_from"] for c in table.c if c.info.get("renamed_from")}


def _fail(where: str, problems: list[str], known: KnownBug | None = None) -> None:
    if known is not None and all(known.shows in problem for problem in problems):
        pytest.xfail(f"{where}: known package bug: {known.reason}")
    shown = problems[:40]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    pytest.fail(f"{where}:\n  - " + "\n  - ".join(shown) + more, pytrace=False)


def _plan_text(plan: Any) -> str:
    if plan is None:
        return ""
    sql = getattr(plan, "sql", [])
    if not sql:
        return ""
    shown = [" ".join(statement.split())[:300] for statement in sql[:30]]
    return "\n    planned SQL:\n      " + "\n      ".join(shown)


@pytest.mark.parametrize("mode", ["retire", "destructive"])
@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.name)
def test_history(history: History, mode: str, any_db, ws, tmp_path: Path) -> None:
    destructive = mode == "destructive"
    settings = {
        "db_url": any_db.url,
        "base_dir": str(ws.root),
        "allow_destructive": destructive,
    }
    ledger = Ledger(destructive)
    ever_tables: set[str] = set()
    ever_columns: dict[str, set[str]] = {}
    previous = "an empty database"
    pending: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def keep(table: str, key: tuple[Any, ...], row: dict[str, Any]) -> None:
        pending.append((table, key, row))

    with reference_database(any_db.kind, tmp_path) as reference:
        for number, version in enumerate(history.versions, start=1):
            md = version.models()
            known = version.known_bugs.get(any_db.kind)
            where = (
                f"[{history.name} history, {any_db.kind}, {mode} mode] {previous} -> {version.name}"
            )
            result = None
            planned = check(metadata=md, **settings)  # what `plan` shows must be what runs
            try:
                result = migrate(metadata=md, **settings)
            except MigrateError as exc:
                error = (
                    f"migrate raised {type(exc).__name__} (exit {int(exc.exit_code)}): {exc}"
                    + _plan_text(getattr(exc, "plan", None))
                )
            except Exception as exc:  # a crash, not a typed refusal or failure
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                error = (
                    f"migrate crashed with {type(exc).__name__}: {exc}"
                    f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
                )
            if result is None:
                _fail(where, [error], known)
            elif not result.success:
                _fail(
                    where,
                    [f"migrate did not succeed: {result.outcome}: {result.error_message}"],
                    known,
                )

            problems: list[str] = []
            if result.plan.sql != planned.plan.sql:
                problems.append(
                    "the run executed other SQL than the plan showed:"
                    f" planned {planned.plan.sql}, ran {result.plan.sql}"
                )
            if planned.refusals:
                problems.append(
                    f"the plan predicted refusals the run did not meet: {planned.refusals}"
                )
            ledger.advance(md)
            engine = _engine(any_db.url)
            try:
                with engine.connect() as conn:
                    problems += [f"data: {p}" for p in ledger.verify(conn)]
            finally:
                engine.dispose()

            try:
                checked = check(metadata=md, **settings)
            except Exception as exc:
                checked = None
                problems.append(f"check after the run raised {type(exc).__name__}: {exc}")
            if checked is not None and checked.migration_needed:
                left = [op.description for op in checked.plan.operations]
                problems.append(
                    "check after the run still finds work: "
                    + "; ".join(left)
                    + _plan_text(checked.plan)
                )

            retired_tables = set() if destructive else ever_tables - set(md.tables)
            retired_columns = (
                {}
                if destructive
                else {
                    t: cols - set(md.tables[t].c.keys()) - _renamed_from(md.tables[t])
                    for t, cols in ever_columns.items()
                    if t in md.tables
                }
            )
            names = _model_names(md)
            expected = normalised_schema(reference.build(md), any_db.kind, names)
            actual = normalised_schema(any_db.url, any_db.kind, names)
            problems += [
                f"schema: {p}"
                for p in schema_differences(actual, expected, retired_tables, retired_columns)
            ]

            # The release's code writes rows into every one of its tables.
            pending.clear()
            engine = _engine(any_db.url)
            try:
                with engine.begin() as conn:
                    version.seed(Seeder(conn, md, f"v{number}", keep))
            except AssertionError as exc:
                problems.append(f"insert: {exc}")
            else:
                for row in pending:
                    ledger.record(*row)
                missed = set(md.tables) - {table for table, _, _ in pending}
                assert not missed, f"{version.name}: the seed writes no row into {missed}"
                with engine.connect() as conn:
                    problems += [f"data after insert: {p}" for p in ledger.verify(conn)]
            finally:
                engine.dispose()

            if problems:
                _fail(where, problems, known)
            if known is not None:
                _fail(where, [f"the known bug no longer shows, remove it: {known.reason}"])
            ever_tables |= set(md.tables)
            for table in md.tables.values():
                columns = ever_columns.setdefault(table.name, set())
                columns.update(table.c.keys())
                # a renamed column lives on under its new name
                columns -= _renamed_from(table)
            previous = version.name
