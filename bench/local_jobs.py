"""Local job engine overhead: 200 jobs of `sleep 1` with 20 slots, against plain subprocess.

Run: python3 bench/local_jobs.py [--jobs 200] [--slots 20] [--seconds 1]
     python3 bench/local_jobs.py --short [--jobs 1000] [--slots 2] [--seconds 0.05]
     python3 bench/local_jobs.py --bench [--jobs 300] [--slots 2] [--seconds 0.05]

Reports, side by side in one run: time from queueing to all started, total time, and the
engine's CPU per job (this process plus the short-lived bash/tmux children it waits for; the
jobs themselves run under the tmux server and are not counted). The baseline runs the same
commands with subprocess.Popen and no tmux, polling as fast as it likes.

``--short`` is the case of evolution's many short evaluations: throughput against a plain
``subprocess`` pool with as many workers as slots (targets: no failed job, at least 0.5x the
pool's jobs/s), and the time from a job's exit to the start of the job that takes its slot,
both read from the times the job wrappers record (target: median under 50 ms).

``--bench`` is the same through a project: each job is queued by its own ``run`` (as evolution
queues its evaluations), so it pays the per-run work (the dependency check from its cache, and
the check that the project's environment is current), and runs a Python benchmark that sleeps
``--seconds``. Reported: the median time of a ``run`` call, jobs/s against a pool of as many
workers running the same benchmark with the same interpreter, and the exit -> next start gap.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from concurrent.futures import ThreadPoolExecutor
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


def pool_baseline(n: int, slots: int, seconds: float) -> float:
    """Jobs/s of a plain pool of ``slots`` workers each running the command in a subprocess."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(lambda _: subprocess.run(["bash", "-c", f"sleep {seconds}"], check=True), range(n)))
    return n / (time.perf_counter() - t0)


async def engine_short(n: int, slots: int, seconds: float) -> dict:
    home = Path(tempfile.mkdtemp(prefix="evp-bench-"))
    engine = await Engine.open(parse_config(f"[hosts.local]\nmax_parallel = {slots}\n"), home)
    try:
        ids = [(await engine.submit(f"sleep {seconds}", name="short")).id for _ in range(n)]
        t0 = time.perf_counter()
        await engine.run_forever(until_done=ids)
        total = time.perf_counter() - t0
        jobs = [await engine.job(i) for i in ids]
    finally:
        await engine.close()
    return turnover(jobs, slots, total)


def turnover(jobs: list, slots: int, total: float) -> dict:
    """Throughput, failures, and the gaps from a job's exit to the start of the next in its slot."""
    failed = [j for j in jobs if j.status != "succeeded"]
    starts = sorted(parse_iso(j.started_at).timestamp() for j in jobs)
    ends = sorted(parse_iso(j.finished_at).timestamp() for j in jobs)
    # the k-th job to end frees the slot that the (slots + k)-th job to start takes
    gaps = [s - e for e, s in zip(ends, starts[slots:])]
    return {"jobs_per_s": len(jobs) / total, "failed": len(failed),
            "errors": sorted({j.error_message or j.status for j in failed}),
            "gap_median_ms": statistics.median(gaps) * 1000,
            "gap_p90_ms": statistics.quantiles(gaps, n=10)[-1] * 1000}


async def engine_bench(n: int, slots: int, seconds: float) -> dict:
    home = Path(tempfile.mkdtemp(prefix="evp-bench-"))
    root = home / "proj"
    (root / "benchmarks").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        "[project]\nname = 'p'\nversion = '0'\nrequires-python = '>=3.10'\ndependencies = []\n")
    (root / "benchmarks" / "nap.py").write_text(f"import time\ntime.sleep({seconds})\n")
    engine = await Engine.open(parse_config(f"[hosts.local]\nmax_parallel = {slots}\n"), home)
    try:
        await engine.add_project(str(root), "p")
        (first,) = await engine.run("p", ["nap.py"])  # builds the environment where there is one
        await engine.run_forever(until_done=[first.id])
        ids, calls = [], []
        t0 = time.perf_counter()
        for _ in range(n):
            c = time.perf_counter()
            ids += [j.id for j in await engine.run("p", ["nap.py"])]
            calls.append(time.perf_counter() - c)
        await engine.run_forever(until_done=ids)
        total = time.perf_counter() - t0
        jobs = [await engine.job(i) for i in ids]
        python = jobs[0].command.split()[-2]  # the job's interpreter, for the pool
    finally:
        await engine.close()
    return {**turnover(jobs, slots, total), "run_ms": statistics.median(calls) * 1000,
            "python": python, "bench": str(root / "benchmarks" / "nap.py")}


def bench_case(a: argparse.Namespace) -> None:
    eng = asyncio.run(engine_bench(a.jobs, a.slots, a.seconds))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.slots) as pool:
        list(pool.map(lambda _: subprocess.run([eng["python"], eng["bench"]], check=True), range(a.jobs)))
    pool_rate = a.jobs / (time.perf_counter() - t0)
    print(f"{a.jobs} runs of a benchmark sleeping {a.seconds:g} s with {a.slots} slots; load {os.getloadavg()[0]:.2f}")
    print(f"job interpreter: {eng['python']}")
    print(f"subprocess pool of {a.slots} (same interpreter): {pool_rate:.1f} jobs/s")
    print(f"evopilot: {eng['jobs_per_s']:.1f} jobs/s ({eng['jobs_per_s'] / pool_rate:.2f}x the pool); "
          f"failed {eng['failed']}; run() median {eng['run_ms']:.1f} ms; "
          f"exit -> next start median {eng['gap_median_ms']:.1f} ms")


def short_case(a: argparse.Namespace) -> None:
    pool = pool_baseline(a.jobs, a.slots, a.seconds)
    eng = asyncio.run(engine_short(a.jobs, a.slots, a.seconds))
    print(f"{a.jobs} jobs of `sleep {a.seconds:g}` with {a.slots} slots; load {os.getloadavg()[0]:.2f}")
    print(f"subprocess pool of {a.slots}: {pool:.1f} jobs/s")
    print(f"evopilot: {eng['jobs_per_s']:.1f} jobs/s ({eng['jobs_per_s'] / pool:.2f}x the pool, target >= 0.5x); "
          f"failed {eng['failed']} (target 0)")
    print(f"job exit -> next start: median {eng['gap_median_ms']:.1f} ms (target < 50), "
          f"p90 {eng['gap_p90_ms']:.1f} ms")
    for e in eng["errors"]:
        print(f"  error: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="the short-jobs case (defaults 1000 x 0.05 s, 2 slots)")
    ap.add_argument("--bench", action="store_true", help="benchmark runs through a project (defaults 300 x 0.05 s, 2 slots)")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--slots", type=int)
    ap.add_argument("--seconds", type=float)
    a = ap.parse_args()
    for key, long, short, bench in [("jobs", 200, 1000, 300), ("slots", 20, 2, 2), ("seconds", 1.0, 0.05, 0.05)]:
        if getattr(a, key) is None:
            setattr(a, key, bench if a.bench else short if a.short else long)
    os.environ["TMUX_TMPDIR"] = tempfile.mkdtemp(prefix="evp-tmux-")  # a private tmux server
    if a.short or a.bench:
        try:
            (bench_case if a.bench else short_case)(a)
        finally:
            subprocess.run(["tmux", "kill-server"], stderr=subprocess.DEVNULL)
        return
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
