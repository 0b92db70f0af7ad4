"""The PostgreSQL and MariaDB migration locks, with real servers and real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator_migrate.backends.server_locks import MySQLNamedLock, PostgresAdvisoryLock
from orchestrator_migrate.model.errors import LockTimeout

WORKER = str(Path(__file__).with_name("lock_worker.py"))
KINDS = ["postgresql", "mysql"]


@pytest.fixture(params=KINDS)
def server(request):
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    cls = PostgresAdvisoryLock if request.param == "postgresql" else MySQLNamedLock
    return request.param, url, cls


def url_text(url) -> str:
    return url.render_as_string(hide_password=False)


def start_holder(kind, url, name: str = "om") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, WORKER, kind, url_text(url), name, "hold"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_only_one_process_at_a_time_holds_the_lock(server, tmp_path):
    kind, url, _ = server
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [
        subprocess.Popen([sys.executable, WORKER, kind, url_text(url), "om", "count", str(counter)])
        for _ in range(8)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    assert counter.read_text() == "8"


def test_a_held_lock_times_out_naming_the_holder(server):
    kind, url, cls = server
    holder = start_holder(kind, url)
    lock = cls(url, "om", timeout_s=0.5)
    try:
        assert lock.current_holder() is not None
        assert lock.current_holder().pid == holder.pid
        with pytest.raises(LockTimeout) as info:
            lock.acquire()
        message = str(info.value)
        assert f"pid {holder.pid}" in message
        assert socket.gethostname() in message
    finally:
        holder.kill()
        holder.wait()
        lock.close()


def test_the_server_releases_the_lock_of_a_killed_holder(server):
    kind, url, cls = server
    holder = start_holder(kind, url)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock = cls(url, "om", timeout_s=10)
    try:
        started = time.monotonic()
        lock.acquire()
        assert time.monotonic() - started < 10
        assert lock.current_holder().pid == os.getpid()
    finally:
        lock.close()
    assert cls(url, "om", timeout_s=0).current_holder() is None


def test_different_lock_names_do_not_block_each_other(server):
    _, url, cls = server
    first, second = cls(url, "one", timeout_s=1), cls(url, "two", timeout_s=1)
    try:
        first.acquire()
        second.acquire()
    finally:
        first.close()
        second.close()


def test_locks_command_shows_the_holder_of_a_server_lock(server, ws):
    kind, url, _ = server
    env = {"MCP_TASK_ORCHESTRATOR_DB_URL": url_text(url)}
    assert ws.cli("locks", "--json", env=env).json()["held"] is False
    holder = start_holder(kind, url, name="orchestrator_migrate")
    try:
        shown = ws.cli("locks", "--json", env=env)
        text = ws.cli("locks", env=env)
    finally:
        holder.kill()
        holder.wait()
    assert shown.returncode == 0, shown.output
    assert shown.json()["held"] is True
    assert shown.json()["holder"]["pid"] == holder.pid
    assert f"pid {holder.pid}" in text.stdout
