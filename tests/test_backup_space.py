"""A backup that cannot be written refuses the run before anything changes."""

from __future__ import annotations

import resource
import subprocess
import sys

V1 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("docs", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.Text))
"""
V2 = """
import sqlalchemy as sa
md = sa.MetaData()
sa.Table("docs", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.Text),
         sa.Column("title", sa.String(80)))
"""


def test_a_full_disk_for_the_backup_refuses_with_exit_4_and_changes_nothing(ws):
    assert ws.cli("--models", ws.write_models("v1", V1)).returncode == 0
    ws.script(
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 2000)"
        " INSERT INTO docs (body) SELECT hex(randomblob(500)) FROM r;"
    )
    size = ws.db_path.stat().st_size
    assert size > 1_000_000
    before = ws.dump()
    limit = size // 2  # the database itself is only read; its copy cannot be written whole

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator_migrate", "--models", ws.write_models("v2", V2)],
        cwd=ws.root,
        env=ws.env(),
        capture_output=True,
        text=True,
        preexec_fn=small_files,
        timeout=120,
    )
    assert proc.returncode == 4, proc.stderr
    assert "cannot write a backup" in proc.stderr
    assert ws.dump() == before
    assert ws.backups() == []
    leftovers = list(ws.backup_dir.glob(".*.tmp")) if ws.backup_dir.exists() else []
    assert leftovers == []
    # With room for the backup, the same run goes through.
    assert ws.cli("--models", ws.write_models("v2", V2)).returncode == 0
    assert len(ws.backups()) == 1
