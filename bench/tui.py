"""Benchmark of the app's job table on a big database (headless Textual).

Each phase runs in its own Python process (clean RSS, no warm caches in the interpreter):

seed       Creates a temp EVOPILOT_HOME: ``Engine.open`` makes the schema, then plain sqlite3
           inserts ``--jobs`` jobs (default 100,000; statuses mixed, one metric per succeeded
           job) and one project. Reused by the other phases of the same run.
app        ``EvopilotApp(config, home)`` in ``run_test`` at 120x40: time from ``run_test`` entry
           to the first frame (``App._display``) whose job table shows the newest job (engine
           open + count + one window of rows + layout + paint), the RSS then; then ``end``
           (jump to the oldest job: a window fetched at offset ~N), a status filter (count +
           window over N rows), and an event flood: ``--flood-rate`` JobEvents/s (progress of
           the jobs in the window, plus new jobs arriving) and LogEvents for ``--flood-seconds``
           put on the app's engine subscription, with a 10 ms heartbeat timer measuring
           event-loop stalls and the frame gaps. No job loop (``engine_loop=False``): the
           database is only read.
datatable  Baseline: the same first frame for a plain ``DataTable`` given 10,000 rows read with
           ``engine.jobs(limit=10000)`` (the figure the design quotes: ~2.4 s).
load-all   Baseline without a UI: ``engine.jobs(reconcile=False)`` reading all N rows.
seen       Other processes' changes (``--seen``): the app open at the default config (poll
           interval 0.5 s, job loop on); ``--rounds`` times a real ``evopilot queue pause`` /
           ``resume`` subprocess, and a job row committed by another SQLite connection; the
           delay from that commit (the CLI's exit) to the first frame showing it. Baselines in
           the same run: the poll interval (the target is < 1 s; each change comes at a random phase of
           the app's poll), and the cost of one check
           while nothing changed (``Engine.changed``) beside reading the whole job table once.

    python3 bench/tui.py                  # all phases, summary + JSON
    python3 bench/tui.py --jobs 10000     # smaller database
    python3 bench/tui.py --seen --jobs 10000   # other processes' changes seen by the app

The log view's figures are measured by bench/tui_log.py (see bench/RESULTS.md, "tui log view").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZE = (120, 40)
STATUSES = ["succeeded"] * 6 + ["failed", "killed", "cancelled", "lost"]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# -- seed ------------------------------------------------------------------------------------


def seed(home: Path, n: int) -> dict:
    from evopilot.core import locations
    from evopilot.core.config import Config
    from evopilot.core.engine import Engine

    async def schema() -> None:
        await (await Engine.open(Config(), home)).close()

    asyncio.run(schema())
    t0 = time.perf_counter()
    db = sqlite3.connect(locations.db_path(home))
    stamp = "2025-01-01T00:00:00.000+00:00"
    end = "2025-01-01T00:03:20.000+00:00"
    with db:
        db.execute("INSERT INTO projects(id, name, path, python_version, created_at, updated_at) "
                   "VALUES (1, 'solver', '/srv/solver', '3.12', ?, ?)", (stamp, stamp))
        rows = []
        for i in range(1, n + 1):
            status = STATUSES[i % len(STATUSES)]
            rows.append((1, f"bench_{i % 13}.py", f"benchmarks/bench_{i % 13}.py", status, i,
                         0 if status == "succeeded" else (1 if status == "failed" else None),
                         50, 50 if status == "succeeded" else i % 50, stamp, stamp, end, stamp))
        db.executemany(
            "INSERT INTO jobs(project_id, kind, name, benchmark_path, args, command, workdir, "
            "host, status, seq, exit_code, progress_total, progress_current, created_at, started_at, "
            "finished_at, updated_at) VALUES (?, 'benchmark', ?, ?, '[]', 'python3 b.py', '/srv/solver', "
            "'local', ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.executemany(
            "INSERT INTO metrics(job_id, name, value, created_at) VALUES (?, 'objective', ?, ?)",
            [(i, i / 7, stamp) for i in range(1, n + 1) if STATUSES[i % len(STATUSES)] == "succeeded"])
    db.close()
    return {"phase": "seed", "jobs": n, "insert_s": round(time.perf_counter() - t0, 2),
            "db_mb": round(locations.db_path(home).stat().st_size / 1e6, 1)}


# -- app -------------------------------------------------------------------------------------


def run_app(home: Path, n: int, flood_rate: int, flood_seconds: float) -> dict:
    t_import = time.perf_counter()
    from evopilot.core.config import Config
    from evopilot.core.events import JobEvent, LogEvent
    from evopilot.core.models import Job, JobStatus
    from evopilot.tui.app import EvopilotApp
    from evopilot.tui.widgets.job_table import JobTable
    import_s = time.perf_counter() - t_import

    class BenchApp(EvopilotApp):
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            self.frames: list[float] = []
            self.want: int | None = n
            self.t_want: float | None = None
            self.t_frame1: float | None = None

        def _display(self, screen, renderable) -> None:
            super()._display(screen, renderable)
            if renderable is None:
                return
            now = time.perf_counter()
            self.frames.append(now)
            if self.t_frame1 is None:
                self.t_frame1 = now
            if self.want is not None and self.t_want is None:
                try:
                    table = self.query_one(JobTable)
                except Exception:  # noqa: BLE001 - not mounted yet
                    return
                if any(line[1:].split()[:1] == [str(self.want)] for line in table.visible_text()):
                    self.t_want = now

    out: dict = {"phase": "app", "jobs": n, "import_s": round(import_s, 2),
                 "loadavg_1min": round(os.getloadavg()[0], 2)}

    app = None

    async def until(pilot, cond, timeout=20.0) -> None:
        deadline = time.perf_counter() + timeout
        while not cond():
            if time.perf_counter() > deadline:
                t = app.query_one(JobTable)
                raise TimeoutError(f"cursor {t.cursor} scroll {t.scroll_y} rows {len(t.rows)} offset {t._offset} "
                                   f"focus {app.focused} frames {len(app.frames)} text {t.visible_text()[-2:]}")
            await pilot.pause(0.005)

    async def drive() -> None:
        nonlocal app
        rss0 = rss_mb()
        app = BenchApp(Config(), home, engine_loop=False)
        t0 = time.perf_counter()
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.t_want is not None)
            out["first_frame_ms"] = ms(app.t_frame1 - t0)
            out["first_paint_with_rows_ms"] = ms(app.t_want - t0)
            out["rss_added_mb"] = round(rss_mb() - rss0, 1)
            table = app.query_one(JobTable)
            out["rows_held"] = len(table.rows)
            out["window_fetches"] = table.fetches

            # Jump to the oldest job.
            app.want, app.t_want = 1, None
            t = time.perf_counter()
            await pilot.press("end")
            await until(pilot, lambda: app.t_want is not None)
            out["end_to_oldest_ms"] = ms(app.t_want - t)
            await pilot.press("home")
            await until(pilot, lambda: table.current is not None and table.current.id == n)

            # A status filter over all rows (failed: 1 in 10).
            fetches = table.fetches
            t = time.perf_counter()
            await pilot.press("S", "S", "S", "S", "S")  # active, running, queued, finished, failed
            await until(pilot, lambda: "status: failed" in str(app.query_one("#jobs-status").content)
                        and table.fetches > fetches and not table._fetching)
            out["five_filter_steps_ms"] = ms(time.perf_counter() - t)
            out["failed_count"] = table.count
            await pilot.press("escape")
            await until(pilot, lambda: table.count == n and not table._fetching)

            # Flood: progress events for the jobs in the window, new jobs, log events.
            window = [j for j in table.rows if j.id > n - 40]
            q = app._events
            heart: list[float] = []
            stop = asyncio.Event()

            async def heartbeat() -> None:
                while not stop.is_set():
                    heart.append(time.perf_counter())
                    await asyncio.sleep(0.01)

            hb = asyncio.create_task(heartbeat())
            frames0 = len(app.frames)
            sent = 0
            t_start = time.perf_counter()
            tick = 0.01
            per_tick = max(1, int(flood_rate * tick))
            new_id = n
            while time.perf_counter() - t_start < flood_seconds:
                for k in range(per_tick):
                    base = window[(sent + k) % len(window)]
                    job = base.model_copy(update={"status": JobStatus.RUNNING,
                                                  "progress_current": (sent + k) % 50,
                                                  "finished_at": None, "exit_code": None})
                    q.put_nowait(JobEvent(job=job, previous=JobStatus.RUNNING))
                q.put_nowait(LogEvent(job_id=window[0].id, log_path="/nonexistent/log", size=sent))
                if sent % (per_tick * 20) == 0:  # a new job every 0.2 s
                    new_id += 1
                    q.put_nowait(JobEvent(job=Job.model_validate({**window[0].model_dump(), "id": new_id}),
                                          previous=None))
                sent += per_tick
                await asyncio.sleep(tick)
            stop.set()
            await hb
            flood_s = time.perf_counter() - t_start
            frames = app.frames[frames0:]
            gaps = sorted(b - a for a, b in zip(frames, frames[1:]))
            beats = [b - a for a, b in zip(heart, heart[1:])]
            out["flood"] = {
                "job_events_per_s": round(sent / flood_s),
                "seconds": round(flood_s, 2),
                "fps": round(len(frames) / flood_s, 1),
                "max_frame_gap_ms": ms(gaps[-1]) if gaps else None,
                "p99_frame_gap_ms": ms(gaps[int(len(gaps) * 0.99)]) if gaps else None,
                "max_heartbeat_ms": ms(max(beats)) if beats else None,
                "window_fetches": table.fetches,
            }

    asyncio.run(drive())
    return out


# -- baselines ----------------------------------------------------------------------------------


def run_datatable(home: Path, rows: int) -> dict:
    from textual.app import App
    from textual.widgets import DataTable

    from evopilot.core.config import Config
    from evopilot.core.engine import Engine

    out: dict = {"phase": "datatable", "rows": rows, "loadavg_1min": round(os.getloadavg()[0], 2)}

    class Baseline(App):
        def __init__(self) -> None:
            super().__init__()
            self.t_want: float | None = None
            self.want: str | None = None

        def compose(self):
            yield DataTable()

        async def on_mount(self) -> None:
            t = time.perf_counter()
            self.engine = await Engine.open(Config(), home)
            jobs = await self.engine.jobs(limit=rows, newest_first=True, reconcile=False)
            out["fetch_ms"] = ms(time.perf_counter() - t)
            t = time.perf_counter()
            table = self.query_one(DataTable)
            table.add_columns("ID", "PROJECT", "BENCHMARK", "HOST", "STATUS", "PROGRESS", "EXIT", "METRICS")
            table.add_rows([(j.id, j.project, j.name, j.host, j.status.value,
                             f"{j.progress_current}/{j.progress_total}", j.exit_code,
                             " ".join(f"{k}={v:g}" for k, v in j.metrics.items())) for j in jobs])
            out["add_rows_ms"] = ms(time.perf_counter() - t)
            self.want = str(jobs[0].id)

        def _display(self, screen, renderable) -> None:
            super()._display(screen, renderable)
            if renderable is not None and self.want and self.t_want is None:
                self.t_want = time.perf_counter()

    async def drive() -> None:
        rss0 = rss_mb()
        app = Baseline()
        t0 = time.perf_counter()
        async with app.run_test(size=SIZE) as pilot:
            while app.t_want is None:
                await pilot.pause(0.005)
            out["first_paint_with_rows_ms"] = ms(app.t_want - t0)
            out["rss_added_mb"] = round(rss_mb() - rss0, 1)
            t = time.perf_counter()
            await pilot.press("end")
            await pilot.pause()
            out["end_ms"] = ms(time.perf_counter() - t)
            await app.engine.close()

    asyncio.run(drive())
    return out


def run_load_all(home: Path) -> dict:
    from evopilot.core.config import Config
    from evopilot.core.engine import Engine

    async def go() -> dict:
        engine = await Engine.open(Config(), home)
        rss0 = rss_mb()
        t = time.perf_counter()
        jobs = await engine.jobs(reconcile=False)
        took = time.perf_counter() - t
        await engine.close()
        return {"phase": "load-all", "rows": len(jobs), "load_ms": ms(took),
                "rss_added_mb": round(rss_mb() - rss0, 1)}

    return asyncio.run(go())


# -- driver ------------------------------------------------------------------------------------


def run_seen(home: Path, rounds: int) -> dict:
    from evopilot.core import locations
    from evopilot.core.config import Config
    from evopilot.tui.app import EvopilotApp
    from evopilot.tui.widgets.job_table import JobTable

    config = Config()
    shown: dict[str, float] = {}

    class BenchApp(EvopilotApp):
        def _display(self, screen, renderable) -> None:
            super()._display(screen, renderable)
            if renderable is None or not self.ready.is_set():
                return
            now = time.perf_counter()
            status = str(self.jobs.query_one("#jobs-status").content)
            shown.setdefault("paused" if "PAUSED" in status else "running", now)
            for line in self.query_one(JobTable).visible_text()[1:3]:
                shown.setdefault(f"job {line[1:].split()[0]}" if line.strip() else "", now)

    out: dict = {"phase": "seen", "poll_interval_s": config.engine.poll_interval,
                 "loadavg_1min": round(os.getloadavg()[0], 2)}
    env = {**os.environ, "EVOPILOT_HOME": str(home)}

    async def cli(*args: str) -> float:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "evopilot", *args, env=env,
                                                    stdout=subprocess.DEVNULL)
        assert await proc.wait() == 0
        return time.perf_counter()

    def insert_job() -> tuple[int, float]:
        db = sqlite3.connect(locations.db_path(home))
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        with db:
            (job_id,) = db.execute(
                "INSERT INTO jobs(project_id, kind, name, args, command, workdir, host, status, seq, "
                "created_at, updated_at) VALUES (1, 'benchmark', 'bench_new.py', '[]', 'true', '/srv', "
                "'local', 'cancelled', 0, ?, ?) RETURNING id", (stamp, stamp)).fetchone()
        db.close()
        return job_id, time.perf_counter()

    async def seen(pilot, key: str, t0: float, timeout: float = 10.0) -> float:
        while key not in shown:
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"{key!r} not shown after {timeout} s")
            await pilot.pause(0.005)
        return shown[key] - t0

    async def go() -> None:
        app = BenchApp(config, home)
        async with app.run_test(size=SIZE) as pilot:
            while not app.ready.is_set():
                await pilot.pause(0.01)
            app.action_show_tab("jobs")
            await pilot.pause(0.2)

            delays: dict[str, list[float]] = {"queue pause/resume by the CLI": [],
                                              "the same, from the CLI's start": [],
                                              "a job row by another connection": []}
            rng = random.Random(1)
            for i in range(rounds):
                # at a random phase of the app's poll (right after one, every delay would be a
                # whole interval)
                await asyncio.sleep(rng.uniform(0, config.engine.poll_interval))
                state = "paused" if i % 2 == 0 else "running"
                shown.pop(state, None)
                start = time.perf_counter()
                t0 = await cli("queue", "pause" if state == "paused" else "resume")
                delays["queue pause/resume by the CLI"].append(await seen(pilot, state, t0))
                delays["the same, from the CLI's start"].append(shown[state] - start)
                await asyncio.sleep(rng.uniform(0, config.engine.poll_interval))
                job_id, t0 = await asyncio.to_thread(insert_job)
                delays["a job row by another connection"].append(await seen(pilot, f"job {job_id}", t0))
            out["delays_ms"] = {k: {"median": ms(statistics.median(v)), "max": ms(max(v)), "n": len(v)}
                                for k, v in delays.items()}
            engine = app.engine
            await engine.changed()
            t = time.perf_counter()
            for _ in range(100):
                await engine.changed()
            out["check_nothing_changed_ms"] = ms((time.perf_counter() - t) / 100)
            t = time.perf_counter()
            n = len(await engine.jobs(reconcile=False))
            out["baseline_read_whole_table_ms"] = ms(time.perf_counter() - t)
            out["jobs"] = n

    asyncio.run(go())
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--datatable-rows", type=int, default=10_000)
    p.add_argument("--flood-rate", type=int, default=2000, help="JobEvents per second in the flood")
    p.add_argument("--flood-seconds", type=float, default=5.0)
    p.add_argument("--phase", choices=["seed", "app", "datatable", "load-all", "seen"])
    p.add_argument("--home", type=Path)
    p.add_argument("--runs", type=int, default=1, help="app and datatable phases repeated")
    p.add_argument("--seen", action="store_true", help="only the seen phase (after seed)")
    p.add_argument("--rounds", type=int, default=10, help="changes made in the seen phase")
    args = p.parse_args()

    if args.phase:
        assert args.home is not None
        if args.phase == "seed":
            res = seed(args.home, args.jobs)
        elif args.phase == "app":
            res = run_app(args.home, args.jobs, args.flood_rate, args.flood_seconds)
        elif args.phase == "seen":
            res = run_seen(args.home, args.rounds)
        elif args.phase == "datatable":
            res = run_datatable(args.home, args.datatable_rows)
        else:
            res = run_load_all(args.home)
        print(json.dumps(res))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="evp-bench-tui-"))
    env = {**os.environ, "EVOPILOT_HOME": str(tmp / "home"), "TMUX_TMPDIR": str(tmp)}
    results = []
    try:
        def phase(name: str) -> dict:
            cmd = [sys.executable, __file__, "--phase", name, "--home", str(tmp / "home"),
                   "--jobs", str(args.jobs), "--datatable-rows", str(args.datatable_rows),
                   "--flood-rate", str(args.flood_rate), "--flood-seconds", str(args.flood_seconds),
                   "--rounds", str(args.rounds)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                raise SystemExit(f"phase {name} failed:\n{proc.stderr}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(res)
            print(json.dumps(res), file=sys.stderr)
            return res

        phase("seed")
        if args.seen:
            res = phase("seen")
            print(f"\nother processes' changes seen by the open app, {res['jobs']:,} jobs, poll interval "
                  f"{res['poll_interval_s']} s (load {res['loadavg_1min']}):")
            for what, d in res["delays_ms"].items():
                note = ("includes the CLI's own start-up, not the app's" if "start" in what else
                        f"max / poll interval {d['max'] / 1000 / res['poll_interval_s']:.2f}; target < 1 s")
                print(f"  {what}: median {d['median']} ms, max {d['max']} ms over {d['n']} ({note})")
            ratio = res["baseline_read_whole_table_ms"] / max(res["check_nothing_changed_ms"], 1e-3)
            print(f"  one check while nothing changed: {res['check_nothing_changed_ms']} ms; reading the "
                  f"whole job table once (baseline): {res['baseline_read_whole_table_ms']} ms ({ratio:.0f}x)")
            return 0
        for _ in range(args.runs):
            phase("app")
            phase("datatable")
        phase("load-all")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    apps = [r for r in results if r["phase"] == "app"]
    tables = [r for r in results if r["phase"] == "datatable"]
    print(f"\njob table, {args.jobs:,} jobs in the database (120x40, headless):")
    for r in apps:
        f = r["flood"]
        print(f"  app: first paint with rows {r['first_paint_with_rows_ms']} ms (first frame "
              f"{r['first_frame_ms']} ms), rows held {r['rows_held']}, RSS +{r['rss_added_mb']} MB; "
              f"end -> oldest {r['end_to_oldest_ms']} ms; 5 filter steps {r['five_filter_steps_ms']} ms; "
              f"flood {f['job_events_per_s']} events/s: {f['fps']} fps, max frame gap "
              f"{f['max_frame_gap_ms']} ms, max heartbeat {f['max_heartbeat_ms']} ms "
              f"(load {r['loadavg_1min']}; import {r['import_s']} s)")
    for r in tables:
        print(f"  baseline DataTable, {r['rows']:,} rows: first paint {r['first_paint_with_rows_ms']} ms "
              f"(fetch {r['fetch_ms']} ms, add_rows {r['add_rows_ms']} ms), RSS +{r['rss_added_mb']} MB, "
              f"end {r['end_ms']} ms (load {r['loadavg_1min']})")
    for r in results:
        if r["phase"] == "load-all":
            print(f"  baseline load all {r['rows']:,} rows (no UI): {r['load_ms']} ms, RSS +{r['rss_added_mb']} MB")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
