"""Local job engine overhead: 200 jobs of `sleep 1` with 20 slots, against plain subprocess.

Run: python3 bench/local_jobs.py [--jobs 200] [--slots 20] [--seconds 1]

Reports, side by side in one run: time from queueing to all started, total time, and the
engine's CPU per job (this process plus the short-lived bash/tmux children it waits for; the
jobs themselves run under the tmux server and are not counted). The baseline runs the same
commands with subprocess.Popen and no tmux, polling as fast as it likes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evopilot.core.config import parse_config  # noqa: E402
from evopilot.core.engine import Engine  # noqa: E402
from evopilot.core.models import parse_iso  # noqa: E402


def cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def baseline(n: int, slots: int, seconds: float) -> dict:
    t0 = time.perf_counter()
    pending = list(range(n))
    running: list[subprocess.Popen] = []
    last_start = 0.0
    while pending or running:
        while pending and len(running) < slots:
            pending.pop()
            running.append(subprocess.Popen(["bash", "-c", f"sleep {seconds}"]))
            last_start = time.perf_counter() - t0
        running = [p for p in running if p.poll() is None]
        time.sleep(0.01)
    return {"all_started": last_start, "total": time.perf_counter() - t0}


async def engine_run(n: int, slots: int, seconds: float) -> dict:
    home = Path(tempfile.mkdtemp(prefix="evp-bench-"))
    config = parse_config(f"[hosts.local]\nmax_parallel = {slots}\n")
    engine = await Engine.open(config, home)
    try:
        c0, t0 = cpu(), time.perf_counter()
        queued_at = time.time()
        ids = [(await engine.submit(f"sleep {seconds}", name="sleep")).id for _ in range(n)]
        await engine.run_forever(until_done=ids)
        total, used = time.perf_counter() - t0, cpu() - c0
        jobs = [await engine.job(i) for i in ids]
        assert all(j.status == "succeeded" for j in jobs), [j.status for j in jobs]
        last_start = max(parse_iso(j.started_at).timestamp() for j in jobs) - queued_at
        return {"all_started": last_start, "total": total, "cpu_per_job_ms": used / n * 1000}
    finally:
        await engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--slots", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args()
    os.environ["TMUX_TMPDIR"] = tempfile.mkdtemp(prefix="evp-tmux-")  # a private tmux server
    try:
        base = baseline(a.jobs, a.slots, a.seconds)
        eng = asyncio.run(engine_run(a.jobs, a.slots, a.seconds))
    finally:
        subprocess.run(["tmux", "kill-server"], stderr=subprocess.DEVNULL)
    print(f"{a.jobs} jobs of `sleep {a.seconds:g}` with {a.slots} slots")
    print(f"{'':24}{'baseline':>12}{'evopilot':>12}{'ratio':>8}")
    for key, label in [("all_started", "queue -> all started s"), ("total", "total s")]:
        print(f"{label:24}{base[key]:12.2f}{eng[key]:12.2f}{eng[key] / base[key]:8.2f}")
    print(f"engine CPU per job: {eng['cpu_per_job_ms']:.1f} ms (target < 20 ms); "
          f"total overhead ratio {eng['total'] / base['total']:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
