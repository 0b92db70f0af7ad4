"""A process that takes a server lock: `count` increments a shared file under it, `hold` keeps it.

Usage: python tests/lock_worker.py KIND URL NAME MODE [COUNTER_FILE]
"""

import sys
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from orchestrator_migrate.backends.server_locks import MySQLNamedLock, PostgresAdvisoryLock

kind, url, name, mode = sys.argv[1:5]
cls = PostgresAdvisoryLock if kind == "postgresql" else MySQLNamedLock
lock = cls(make_url(url), name, timeout_s=60)
lock.acquire()
if mode == "hold":
    print("held", flush=True)
    time.sleep(120)
else:
    counter = Path(sys.argv[5])
    value = int(counter.read_text() or "0")
    time.sleep(0.02)  # widen the window a missing lock would lose an increment in
    counter.write_text(str(value + 1))
lock.close()
