"""One run's context: settings, backend, models, recorder and clock, passed in; nothing global."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import Enum, MetaData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import CompileError
from sqlalchemy.schema import CreateIndex, CreateTable

from .backends import Backend, backend_for
from .config.settings import Settings
from .config.targets import merge, resolve
from .history.recorder import Recorder
from .history.rows import Clock, utc_now
from .model.errors import TargetError
from .model.events import Hook
from .model.plan import Plan
from .planning.planner import build_plan
from .progress import Progress
from .version import __version__


@dataclass(frozen=True)
class Run:
    """Everything one run needs, passed in; nothing global."""

    settings: Settings
    backend: Backend
    metadata: MetaData
    recorder: Recorder
    clock: Clock
    # Called with each event of a run (model/events.py); only `migrate` loads them.
    hooks: tuple[Hook, ...] = ()

    @property
    def url_for_humans(self) -> str:
        return self.backend.url.render_as_string(hide_password=True)

    def plan(self, conn: Connection) -> Plan:
        return build_plan(conn, self.metadata, self.backend, self.settings, self.recorder)


def prepare_run(
    settings: Settings,
    metadata: MetaData | None = None,
    clock: Clock = utc_now,
    progress: Progress | None = None,
) -> Run:
    """Resolve the targets and the backend for settings; the backend tells progress how long
    work goes (log lines when None)."""
    targets = resolve(settings.models, [metadata] if metadata is not None else [])
    timeout_s = settings.lock_timeout / 1000
    backend = backend_for(settings.database_url(), busy_timeout_s=timeout_s, progress=progress)
    metadata = merge(targets)
    schemas = sorted({str(t.schema) for t in metadata.tables.values() if t.schema})
    if schemas and not backend.supports_schemas:
        elsewhere = sorted(t.key for t in metadata.tables.values() if t.schema)
        raise TargetError(
            f"the models put tables in a schema of their own ({', '.join(elsewhere[:5])}), which"
            f" {backend.name} does not have; nothing was changed. Leave schema= out, or point"
            " DB_URL at that database"
        )
    backend.schemas = tuple(schemas)
    recorder = Recorder(metadata, clock, backend.reset_sequence, backend.long_text)
    return Run(settings, backend, metadata, recorder, clock)


def models_fingerprint(run: Run, engine: Engine) -> str:
    """A hash of the DDL the models compile to, so that unchanged models skip the diff."""
    digest = hashlib.sha256(f"{__version__}\0{sorted(run.settings.ignore_tables)}\n".encode())
    for table in sorted(run.metadata.sorted_tables, key=lambda t: t.key):
        try:
            digest.update(str(CreateTable(table).compile(dialect=engine.dialect)).encode())
        except CompileError:  # the plan refuses it and says why; never a skipped diff
            digest.update(f"uncompilable {table!r}".encode())
        # DDL names a native enum type without its values: they count too.
        enums = [(c.name, c.type.enums) for c in table.columns if isinstance(c.type, Enum)]
        if enums:
            digest.update(repr(enums).encode())
        # Comments are not part of every dialect's CREATE TABLE: they count too.
        comments = [table.comment, *(c.comment for c in table.columns)]
        if any(comments):
            digest.update(repr(comments).encode())
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            digest.update(str(CreateIndex(index).compile(dialect=engine.dialect)).encode())
    return digest.hexdigest()
