"""Benchmark of the CLI's start-up, not a test: whole processes, side by side in one run.

1. `evopilot jobs --json` on a database of 1,000 finished jobs (3 metrics each) beside
   `python -c pass` (the floor of any Python command). Target: at most 4x.
2. `evopilot deps PROJECT BENCH --json` (the whole process: start-up, database, analysis,
   JSON) beside the same import-graph analysis done by the `grimp` library in a process of its
   own, on the same real package (a copy of an installed one, `rich` by default, whose
   benchmark file imports it). Both cold (evopilot's analysis cache and grimp's cache empty)
   and warm (both caches filled). Target: evopilot no slower than grimp.

grimp is a bench-only dependency: `pip install grimp` in the venv.

Run: .venv/bin/python bench/cli.py [--runs 15] [--package rich] [--before OTHER/.venv/bin/evopilot]

``--before`` adds another checkout's `evopilot deps --json`, cold, to the same run (before/after
figures side by side).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CLI_ENV  # noqa: E402

BIN = Path(sys.executable).parent
EVOPILOT = [str(BIN / "evopilot")] if (BIN / "evopilot").exists() else [sys.executable, "-m", "evopilot"]

GRIMP = """
import sys
sys.path.insert(0, sys.argv[1])
import grimp
graph = grimp.build_graph(sys.argv[2], include_external_packages=True,
                          cache_dir=None if sys.argv[3] == "-" else sys.argv[3])
print(len(graph.modules))
"""


async def fill(home: Path, project: Path, n: int) -> None:
    """A database of ``n`` finished jobs with three metrics each, as a worker leaves them."""
    from evopilot.core.config import Config
    from evopilot.core.db import jobs as jobs_db
    from evopilot.core.engine import Engine
    from evopilot.core.models import Metric, now_iso

    async with await Engine.open(Config(), home) as engine:
        proj, _ = await engine.add_project(project, "p")
        async with jobs_db.transaction(engine.db):
            for i in range(n):
                job_id = await jobs_db.insert_job(
                    engine.db, project_id=proj.id, kind="benchmark", name=f"b{i % 7}.py",
                    benchmark_path=f"benchmarks/b{i % 7}.py", args=["--seed", str(i)], command="python b.py",
                    workdir=str(project), host="local", status="succeeded", exit_code=0,
                    started_at=now_iso(), finished_at=now_iso(), end_handled=1,
                    log_path=f"/tmp/none/{i}/output.log")
                await jobs_db.replace_metrics(engine.db, job_id, [
                    Metric(name="objective", value=i * 0.5), Metric(name="time", value=1.5, unit="s", higher_is_better=False),
                    Metric(name="score", value=0.9, higher_is_better=True)])


def wall(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=CLI_ENV)
    return time.perf_counter() - t


def measure(cases: dict[str, tuple[list[str], callable]], runs: int) -> dict[str, float]:
    """Median wall time of each case, runs interleaved (the machine's load hits all alike);
    each case's ``before`` runs untimed before each of its runs (clearing a cache)."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for name, (argv, before) in cases.items():  # one untimed run each: the OS's file cache
        before()
        wall(argv)
    for _ in range(runs):
        for name, (argv, before) in cases.items():
            before()
            times[name].append(wall(argv))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--package", default="rich", help="an installed pure-Python package to analyse")
    ap.add_argument("--before", help="another checkout's evopilot executable: its cold deps run beside this one")
    opts = ap.parse_args()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="evp-bench-cli-"))
    try:
        home, project = tmp / "home", tmp / "proj"
        (project / "benchmarks").mkdir(parents=True)
        asyncio.run(fill(home, project, 1000))
        env_home = ["--home", str(home)]

        # the package to analyse, copied into a project of its own with a benchmark importing it
        src = Path(__import__(opts.package).__file__).parent
        pkg_project = tmp / "pkgproj"
        shutil.copytree(src, pkg_project / opts.package, ignore=shutil.ignore_patterns("__pycache__"))
        (pkg_project / "bench.py").write_text(f"import {opts.package}\n")
        (pkg_project / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '0'\ndependencies = []\n")
        subprocess.run([*EVOPILOT, "project", "add", str(pkg_project), "--name", "pkg", *env_home],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*EVOPILOT, "bench", "add", "pkg", "bench.py", *env_home], check=True, stdout=subprocess.DEVNULL)
        modules = sum(1 for _ in (pkg_project / opts.package).rglob("*.py"))
        deps_cache = home / "cache" / "deps"
        grimp_cache = tmp / "grimp-cache"

        def nothing() -> None:
            pass

        def no_deps_cache() -> None:
            shutil.rmtree(deps_cache, ignore_errors=True)

        cases = {
            "python -c pass": ([sys.executable, "-c", "pass"], nothing),
            "evopilot jobs --json (1,000 jobs)": ([*EVOPILOT, "jobs", "--json", *env_home], nothing),
            "evopilot deps --json, cold": ([*EVOPILOT, "deps", "pkg", "bench.py", "--json", *env_home], no_deps_cache),
            "grimp build_graph, cold": ([sys.executable, "-c", GRIMP, str(pkg_project), opts.package, "-"], nothing),
            "evopilot deps --json, warm": ([*EVOPILOT, "deps", "pkg", "bench.py", "--json", *env_home], nothing),
            "grimp build_graph, warm": ([sys.executable, "-c", GRIMP, str(pkg_project), opts.package,
                                         str(grimp_cache)], nothing),
        }
        if opts.before:
            cases["before: evopilot deps --json, cold"] = (
                [opts.before, "deps", "pkg", "bench.py", "--json", *env_home], no_deps_cache)
        med = measure(cases, opts.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = med["python -c pass"]
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f}, {opts.runs} runs each (median), "
          f"package {opts.package} ({modules} modules), run {time.perf_counter() - started:.0f} s")
    rows = [
        ("python -c pass", med["python -c pass"], "1.00x", ""),
        ("evopilot jobs --json (1,000 jobs)", med["evopilot jobs --json (1,000 jobs)"],
         f"{med['evopilot jobs --json (1,000 jobs)'] / base:.2f}x of python -c pass", "target <= 4x"),
        ("evopilot deps --json, cold", med["evopilot deps --json, cold"],
         f"{med['evopilot deps --json, cold'] / med['grimp build_graph, cold']:.2f}x of grimp, cold", "target <= 1x"),
        ("grimp build_graph, cold", med["grimp build_graph, cold"], "", ""),
        ("evopilot deps --json, warm", med["evopilot deps --json, warm"],
         f"{med['evopilot deps --json, warm'] / med['grimp build_graph, warm']:.2f}x of grimp, warm", "target <= 1x"),
        ("grimp build_graph, warm", med["grimp build_graph, warm"], "", ""),
    ]
    if opts.before:
        name = "before: evopilot deps --json, cold"
        rows.insert(3, (name, med[name], f"{med[name] / med['grimp build_graph, cold']:.2f}x of grimp, cold", ""))
    width = max(len(r[0]) for r in rows)
    for name, t, ratio, target in rows:
        print(f"{name.ljust(width)}  {t * 1000:7.0f} ms  {ratio:28}  {target}")


if __name__ == "__main__":
    main()
