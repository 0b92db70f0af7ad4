"""Start-up benchmarks, as ratios measured in one run (see benchmarks/RESULTS.md).

    .venv/bin/python benchmarks/bench_startup.py [--racers 16] [--repeat 3]

1. Up-to-date database: wall time for 16 processes started at the same moment (imports done
   before the start signal) against one process; and against 16 processes that compare the schema
   in full on every start (`check`, which is what an autogenerate comparison at each start costs).
2. Lock hand-off: time from one holder's release to the next waiter's acquire, our file lock
   (2 ms poll) against filelock's default 50 ms poll.
3. In-process quick check on an up-to-date database (the seed promised ~100 ms).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RACER = ROOT / "tests" / "racer.py"
MODELS = """
import sqlalchemy as sa
md = sa.MetaData()
for n in range(12):
    sa.Table(f"t{n}", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.String(50), index=True), sa.Column("qty", sa.Integer))
"""


def env_for(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_TASK_ORCHESTRATOR_")}
    env["PYTHONPATH"] = str(base)
    env["MCP_TASK_ORCHESTRATOR_BASE_DIR"] = str(base)
    env["MCP_TASK_ORCHESTRATOR_MODELS"] = "bench_models:md"
    env["MCP_TASK_ORCHESTRATOR_LOG_LEVEL"] = "WARNING"
    return env


def race(base: Path, count: int, args: list[str]) -> float:
    """Seconds from the start signal until all count processes have exited."""
    go = base / f"go-{time.monotonic_ns()}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(RACER), str(go), *args],
            env=env_for(base),
            cwd=base,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    time.sleep(2.0 + 0.15 * count)  # every racer imports and waits for the signal
    started = time.perf_counter()
    go.touch()
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode not in (0, 1):
            raise SystemExit(f"racer failed: {err.decode()[-500:]}")
    return time.perf_counter() - started


HANDOFF = textwrap.dedent(
    """
    import sys, time
    from filelock import FileLock
    path, poll, rounds, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    lock = FileLock(path, thread_local=False)
    with open(out, "a") as log:
        for _ in range(rounds):
            lock.acquire(timeout=60, poll_interval=poll)
            log.write(f"A {time.time()}\\n"); log.flush()
            time.sleep(0.01)
            log.write(f"R {time.time()}\\n"); log.flush()
            lock.release()
    """
)


def handoff_ms(base: Path, poll: float, waiters: int = 4, rounds: int = 15) -> float:
    """Median ms between a release and the next acquire by another waiter."""
    log = base / f"handoff-{poll}.log"
    lock = base / f"handoff-{poll}.lock"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HANDOFF, str(lock), str(poll), str(rounds), str(log)]
        )
        for _ in range(waiters)
    ]
    for proc in procs:
        proc.wait()
    events = sorted(
        (float(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines())
    )
    gaps = [
        (t2 - t1) * 1000
        for (t1, k1), (t2, k2) in itertools.pairwise(events)
        if k1 == "R" and k2 == "A"
    ]
    return statistics.median(gaps)


def quick_check_ms(base: Path) -> float:
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(base)!r})
        import orchestrator_migrate as om
        from bench_models import md
        om.migrate(metadata=md, base_dir={str(base)!r})  # warm: imports, first connection
        best = min(
            (lambda t: (om.migrate(metadata=md, base_dir={str(base)!r}),
                        time.perf_counter() - t)[1])(time.perf_counter())
            for _ in range(20)
        )
        print(best * 1000)
        """
    )
    env = env_for(base)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--racers", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "bench_models.py").write_text(MODELS)
        subprocess.run(
            [sys.executable, "-m", "orchestrator_migrate"],
            env=env_for(base),
            cwd=base,
            check=True,
            capture_output=True,
        )
        one = statistics.median(race(base, 1, []) for _ in range(args.repeat))
        many = statistics.median(race(base, args.racers, []) for _ in range(args.repeat))
        full = statistics.median(race(base, args.racers, ["check"]) for _ in range(args.repeat))
        ours = handoff_ms(base, 0.002)
        default = handoff_ms(base, 0.05)
        quick = quick_check_ms(base)
    print(f"cores: {os.cpu_count()}")
    print(f"1 process, up to date:                       {one * 1000:8.1f} ms")
    print(
        f"{args.racers} processes at once, up to date (fast path): {many * 1000:8.1f} ms"
        f"  ratio {many / one:.2f}x one process"
    )
    print(
        f"{args.racers} processes at once, full comparison each:    {full * 1000:8.1f} ms"
        f"  ratio {full / many:.2f}x the fast path"
    )
    ideal = args.racers * one / (os.cpu_count() or 1)
    print(
        f"  CPU-bound ideal, racers x one / cores:    {ideal * 1000:8.1f} ms"
        f"  measured/ideal {many / ideal:.2f}"
    )
    print(f"lock hand-off, our 2 ms poll:                {ours:8.1f} ms")
    print(
        f"lock hand-off, filelock default 50 ms poll:  {default:8.1f} ms"
        f"  ratio {default / ours:.1f}x ours"
    )
    print(f"in-process quick check, up to date (best):   {quick:8.1f} ms")


if __name__ == "__main__":
    main()
