"""The child processes of bench.py, run with the interpreter being measured; never imported.

    python bench_child.py KIND ARGS...   (prints one JSON object on stdout)

Only the standard library is imported at the top: each kind imports what it measures, so that a
racer has imported exactly the CLI and the dialect before its start signal.
"""

import json
import os
import sys
import time


def _rss_mib() -> float:
    """This process's resident size now."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mib() -> float:
    """This process's peak resident size so far (getrusage maxrss)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def inproc(url_ours: str, url_alembic: str, models: str, loops: str) -> dict[str, float]:
    """Median ms of the package's up-to-date migrate() (the look a start takes), its check(),
    and Alembic's compare_metadata on a database Alembic keeps; alternated, after a warm-up."""
    import importlib
    import statistics

    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from loguru import logger

    import orchestrator_migrate as om

    logger.remove()  # a server's own loguru set-up, at INFO
    logger.add(sys.stderr, level="INFO")
    md = importlib.import_module(models).md
    engine = sa.create_engine(url_alembic)

    def quick() -> None:
        result = om.migrate(metadata=md, db_url=url_ours)
        if result.outcome != "up_to_date":
            raise SystemExit(f"migrate() did not find the database up to date: {result.outcome}")

    def check() -> None:
        if om.check(metadata=md, db_url=url_ours).migration_needed:
            raise SystemExit("check() found a migration needed")

    def compare() -> None:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), md)
        if diffs:
            raise SystemExit(f"compare_metadata found differences: {diffs[:3]}")

    runs = {"quick": quick, "check": check, "compare": compare}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for name in runs:
        runs[name]()  # warm-up: imports, caches, the first connection
    names = list(runs)
    for i in range(int(loops)):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            started = time.perf_counter()
            runs[name]()
            samples[name].append((time.perf_counter() - started) * 1000)
    engine.dispose()
    return {name: statistics.median(values) for name, values in samples.items()}


def backup_ours(url: str, directory: str) -> dict[str, float]:
    """A backup as a run takes it (backup/files.py create: the backend's copy, fsync, check,
    link, fsync of the directory), under the run's write transaction; and the copy's share."""
    from datetime import UTC, datetime
    from pathlib import Path

    from orchestrator_migrate.backends import backend_for
    from orchestrator_migrate.backup import files

    backend = backend_for(url)
    copying: list[float] = []
    copy_to = backend.backup_to

    def timed_copy(conn: object, destination: Path) -> None:
        started = time.perf_counter()
        copy_to(conn, destination)
        copying.append(time.perf_counter() - started)

    backend.backup_to = timed_copy  # type: ignore[method-assign]
    engine = backend.create_engine()
    with engine.connect() as conn:
        conn.begin()  # BEGIN IMMEDIATE, as under the migration lock
        started = time.perf_counter()
        info = files.create(backend, conn, Path(directory), datetime.now(UTC))
        seconds = time.perf_counter() - started
        conn.rollback()
    engine.dispose()
    return {"seconds": seconds, "copy_seconds": sum(copying), "bytes": info.size_bytes}


def backup_cp(source: str, destination: str) -> dict[str, float]:
    """shutil.copyfile, then fsync of the copy."""
    import shutil

    started = time.perf_counter()
    shutil.copyfile(source, destination)
    _fsync(destination)
    return {"seconds": time.perf_counter() - started}


def backup_api(source: str, destination: str) -> dict[str, float]:
    """The sqlite3 backup API in one step, then fsync of the copy."""
    import sqlite3

    started = time.perf_counter()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(destination)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    _fsync(destination)
    return {"seconds": time.perf_counter() - started}


def rebuild_ours(url: str, models: str) -> dict[str, float | str]:
    """The package's run to models that force a rebuild, backup off and no time limit."""
    import importlib

    import orchestrator_migrate as om

    md = importlib.import_module(models).md
    before = _rss_mib()
    started = time.perf_counter()
    result = om.migrate(metadata=md, db_url=url, backup=False, migration_timeout=0)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "outcome": str(result.outcome),
        "operations": len(result.plan.operations),
        "before_mib": before,
        "peak_mib": _peak_mib(),
    }


REBUILD_SQL = (
    "CREATE TABLE big_new (id INTEGER NOT NULL, payload TEXT, n INTEGER DEFAULT '0' NOT NULL,"
    " PRIMARY KEY (id))",
    "INSERT INTO big_new (id, payload, n) SELECT id, payload, n FROM big",
    "DROP TABLE big",
    "ALTER TABLE big_new RENAME TO big",
)


def rebuild_hand(path: str) -> dict[str, float]:
    """The same change written by hand: CREATE; INSERT ... SELECT; DROP; RENAME in one
    transaction."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    before = _rss_mib()
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    for statement in REBUILD_SQL:
        conn.execute(statement)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return {"seconds": seconds, "before_mib": before, "peak_mib": _peak_mib()}


def racer(ready_fd: str, go_fd: str, dialect: str, *cli_args: str) -> None:
    """Import the CLI and the dialect, say so, wait for the start signal, run the CLI."""
    import importlib

    importlib.import_module(f"sqlalchemy.dialects.{dialect}")
    import orchestrator_migrate.cli as cli

    os.write(int(ready_fd), b"r")
    os.read(int(go_fd), 1)
    sys.exit(cli.main(list(cli_args)))


def lock_rounds(kind: str, db_path: str, rounds: str, log_path: str) -> None:
    """Take and give back a lock rounds times, logging each acquire (A) and release (R):
    the package's own migration lock, or filelock with its default 50 ms poll."""
    if kind == "ours":
        from orchestrator_migrate.backends import backend_for

        lock = backend_for(f"sqlite:///{db_path}").lock(60.0, "orchestrator_migrate")
        acquire, release = lock.acquire, lock.release
    else:
        from filelock import FileLock

        plain = FileLock(db_path + ".filelock", thread_local=False)
        acquire, release = (lambda: plain.acquire(timeout=60)), plain.release
    with open(log_path, "a") as log:
        for _ in range(int(rounds)):
            acquire()
            log.write(f"A {time.time()}\n")
            log.flush()
            time.sleep(0.01)
            log.write(f"R {time.time()}\n")
            log.flush()
            release()


KINDS = {
    "inproc": inproc,
    "backup-ours": backup_ours,
    "backup-cp": backup_cp,
    "backup-api": backup_api,
    "rebuild-ours": rebuild_ours,
    "rebuild-hand": rebuild_hand,
    "racer": racer,
    "lock": lock_rounds,
}

if __name__ == "__main__":
    found = KINDS[sys.argv[1]](*sys.argv[2:])
    if found is not None:
        print(json.dumps(found))
