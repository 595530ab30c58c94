"""Snapshots of every tab at 80x24 and 120x40 (pytest-textual-snapshot).

Deterministic: a database seeded with fixed rows and times, a frozen clock for elapsed times,
and no job loop (``engine_loop=False``: nothing is started, reconciled or connected).
Update the baselines with ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evopilot.core import locations
from evopilot.core.config import Config, HostConfig
from evopilot.core.engine import Engine

NOW = datetime(2025, 3, 14, 10, 6, 40, tzinfo=UTC)


def _t(hms: str) -> str:
    return f"2025-03-14T{hms}.000+00:00"


PROJECTS = [
    (1, "solver", "/home/user/work/solver", "3.12"),
    (2, "ml", "/home/user/work/ml", "3.11"),
]
BENCHMARKS = [
    (1, 1, "bench_exact.py", "benchmarks/bench_exact.py"),
    (2, 1, "bench_greedy.py", "benchmarks/bench_greedy.py"),
    (3, 2, "benchmark_train.py", "benchmark_train.py"),
]
# id, project, benchmark, host, status, exit, progress, started, finished, error
JOBS = [
    (1, 1, "bench_exact.py", "local", "succeeded", 0, (50, 50), "10:00:00", "10:02:05", None),
    (2, 1, "bench_greedy.py", "local", "failed", 1, (12, 50), "10:00:01", "10:00:31",
     "Traceback (most recent call last):\nValueError: capacity must be positive"),
    (3, 2, "benchmark_train.py", "local", "killed", None, (3, 10), "10:01:00", "10:03:00", None),
    (4, 1, "bench_greedy.py", "local", "queued", None, (0, 0), None, None, None),
    (5, 2, "benchmark_train.py", "local", "queued", None, (0, 0), None, None, None),
    (6, 1, "bench_exact.py", "local", "running", None, (12, 50), "10:05:00", None, None),
]
METRICS = [(1, "objective", 12.5), (1, "runtime", 3.2)]


def seed(home: Path, log_dir: Path) -> None:
    """Create the schema with the engine, then write fixed rows with plain sqlite3."""

    async def create() -> None:
        engine = await Engine.open(Config(), home)
        await engine.close()

    asyncio.run(create())
    db = sqlite3.connect(locations.db_path(home))
    with db:
        db.executemany("INSERT INTO projects(id, name, path, python_version, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", [(*p, _t("09:00:00"), _t("09:00:00")) for p in PROJECTS])
        db.executemany("INSERT INTO benchmarks(id, project_id, name, path, created_at) VALUES (?, ?, ?, ?, ?)",
                       [(*b, _t("09:00:00")) for b in BENCHMARKS])
        for jid, pid, bench, host, status, code, (cur, total), started, finished, error in JOBS:
            log = None
            if started:
                d = log_dir / str(jid)
                d.mkdir(parents=True, exist_ok=True)
                log = d / "log"
                log.write_text("".join(f"[{i}/{total}] gap={100 / i:.3f}\n" for i in range(1, cur + 1))
                               + (error + "\n" if error else ""))
            db.execute(
                "INSERT INTO jobs(id, project_id, kind, name, benchmark_path, args, command, "
                "workdir, host, status, priority, seq, exit_code, progress_current, progress_total, "
                "error_message, log_path, created_at, started_at, finished_at, updated_at) "
                "VALUES (?, ?, 'benchmark', ?, ?, '[]', 'python3 x.py', '/tmp', ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (jid, pid, bench, f"benchmarks/{bench}", host, status, jid, code, cur, total, error,
                 str(log) if log else None, _t("09:59:00"), _t(started) if started else None,
                 _t(finished) if finished else None, _t("10:06:00")),
            )
        db.executemany("INSERT INTO metrics(job_id, name, value, created_at) VALUES (?, ?, ?, ?)",
                       [(*m, _t("10:02:05")) for m in METRICS])
    db.close()


@pytest.fixture(autouse=True)
def fixed_load(monkeypatch):
    """The local host's load differs between machines and moments: a fixed one (with a GPU)."""
    from evopilot.core.hosts import probe

    load = probe.Load(1.5, 8, 32_000_000, 20_000_000, (probe.Gpu(87, 10240, 24576),))
    monkeypatch.setattr(probe, "local_load", lambda: load)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    """One seeded home for every snapshot (the app only reads it: no job loop)."""
    root = tmp_path_factory.mktemp("snapshots")
    seed(root / "home", root / "logs")
    return root / "home"


def make_app(home: Path):
    from evopilot.tui.app import EvopilotApp

    # Fixed slots: the default is the CPU count, which differs between machines.
    config = Config(hosts={"local": HostConfig(max_parallel=4)})
    return EvopilotApp(config, home, clock=lambda: NOW, engine_loop=False)


async def _settle(pilot) -> None:
    app = pilot.app
    for _ in range(500):
        if app.ready.is_set() and app.jobs.table.loaded:
            break
        await pilot.pause(0.02)
    await app.workers.wait_for_complete()


def _on_tab(key: str):
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press(key)
        await pilot.app.workers.wait_for_complete()

    return run_before


TABS = {"projects": "1", "tasks": "2", "jobs": "3", "archive": "4", "hosts": "5"}


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("tab", list(TABS))
def test_tab_snapshot(snap_compare, seeded, tab, size):
    assert snap_compare(make_app(seeded), terminal_size=size, run_before=_on_tab(TABS[tab]))


def test_help_snapshot(snap_compare, seeded):
    async def run_before(pilot) -> None:
        await _on_tab("3")(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(seeded), terminal_size=(80, 24), run_before=run_before)


def test_seed_is_what_the_snapshots_show(tmp_path):
    """Guard: the fixed rows are readable through the engine (so a schema change fails here
    with a clear message rather than as a picture diff)."""
    home = tmp_path / "home"
    seed(home, tmp_path / "logs")

    async def read():
        engine = await Engine.open(Config(), home)
        try:
            return await engine.jobs(reconcile=False), await engine.list_projects()
        finally:
            await engine.close()

    jobs, projects = asyncio.run(read())
    assert [j.status.value for j in jobs] == [j[4] for j in JOBS]
    assert jobs[0].metrics == {"objective": 12.5, "runtime": 3.2}
    assert [p.name for p in projects] == ["ml", "solver"] or [p.name for p in projects] == ["solver", "ml"]
    assert json.loads(json.dumps(jobs[1].public()))["error_message"].endswith("positive")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_job_detail_snapshot(snap_compare, seeded, size):
    """d: every detail of the selected job instead of its log."""
    async def run_before(pilot) -> None:
        await _on_tab("3")(pilot)
        await pilot.press("down", "down", "down", "down", "down", "d")  # job 1: succeeded, metrics
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(make_app(seeded), terminal_size=size, run_before=run_before)


def test_filter_hiding_every_job_snapshot(snap_compare, seeded):
    async def run_before(pilot) -> None:
        await _on_tab("3")(pilot)
        await pilot.press("slash", *"nothing-matches", "enter")
        for _ in range(100):
            if pilot.app.jobs.table.count == 0:
                break
            await pilot.pause(0.02)
        await pilot.app.workers.wait_for_complete()

    assert snap_compare(make_app(seeded), terminal_size=(80, 24), run_before=run_before)


def test_empty_projects_snapshot(snap_compare, tmp_path):
    async def run_before(pilot) -> None:
        await _settle(pilot)

    assert snap_compare(make_app(tmp_path / "home"), terminal_size=(80, 24), run_before=run_before)
