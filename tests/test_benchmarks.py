"""The benchmark command works end to end at a small size and reports every figure beside its
alternative. No timing is asserted: only that each figure was measured."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"

PER_SIZE = {
    "run_vs_floor",
    "run_vs_alembic_upgrade",
    "check_vs_alembic_check",
    "quick_vs_compare",
    "check_inproc_vs_compare",
    "first_vs_create_all",
    "first_vs_alembic_upgrade",
    "racers_vs_ideal",
}
SQLITE_ONLY = {
    "backup_vs_cp",
    "backup_copy_vs_cp",
    "backup_vs_api",
    "rebuild_vs_hand",
    "rebuild_memory",
    "lock_handoff",
}


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_benchmark_command_reports_every_figure_beside_its_alternative() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--current-interpreter",
            *("--sizes", "10", "--repeat", "1", "--backends", "sqlite"),
            *("--racers", "2", "--loops", "1", "--backup-rows", "2000", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["failures"] == []

    rows = doc["rows"]
    assert {r["key"] for r in rows if r["tables"] == 10} == PER_SIZE
    assert {r["key"] for r in rows if r["tables"] is None} == SQLITE_ONLY
    assert len(rows) == len(PER_SIZE) + len(SQLITE_ONLY)
    for row in rows:
        assert row["backend"] == "sqlite"
        assert row["ours"] > 0, row
        assert row["theirs"] > 0, row
        assert row["measurement"] and row["alternative"], row
        if row["key"] == "rebuild_memory":
            assert row["unit"] == "MiB" and row["ratio"] >= 0, row  # peak is never under before
        else:
            assert row["ratio"] > 0, row
    racers = next(r for r in rows if r["key"] == "racers_vs_ideal")
    assert racers["extra"]["one_ms"] > 0

    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["ram_gib"] > 0
    for name in ("python", "sqlite", "sqlalchemy", "alembic", "orchestrator-migrate"):
        assert machine["versions"][name], name

    bench = _bench_module()
    text = bench.results_md(doc, [bench.Row.from_dict(r) for r in rows])
    assert "## Reading them" in text
    for row in rows:
        assert row["measurement"].strip() in text and row["alternative"] in text
