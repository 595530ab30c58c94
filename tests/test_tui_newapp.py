"""What a new user reaches for in the app (issue 10): other processes' changes seen, the run
dialog's options, a job's detail, finding and comparing jobs, hosts' load, the key bar that fits,
empty states that say the truth. Real engine, real tmux, real CLI subprocesses; Pilot drives the
app (waits on conditions, no fixed sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from evopilot.core.config import Config, EngineConfig, HostConfig
from evopilot.core.engine import Engine
from evopilot.tui.app import EvopilotApp
from tests.conftest import evopilot_cmd
from tests.test_tui import BENCH_QUICK, SIZE, job_row, started, static_text, table_text, until

BENCH_ARGS = '''\
import json, os, sys
print("args:", sys.argv[1:], flush=True)
with open(os.environ["EVOPILOT_RESULTS"], "w") as f:
    json.dump({"objective": {"value": float(sys.argv[1]) if len(sys.argv) > 1 else 1.0,
                             "unit": "pts", "higher_is_better": True},
               "runtime": {"value": 0.5, "unit": "s", "higher_is_better": False}}, f)
'''


async def evopilot(home: Path, *args: str) -> str:
    """The real CLI, in a process of its own (another process than the app's). Awaited: a
    blocking call would freeze the app's event loop, maybe inside one of its transactions,
    and the CLI would wait for the database lock."""
    def run() -> subprocess.CompletedProcess:
        return subprocess.run(evopilot_cmd(*args), capture_output=True, text=True, timeout=60,
                              env={**os.environ, "EVOPILOT_HOME": str(home)})

    res = await asyncio.to_thread(run)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
def project(ready_project) -> Path:
    """Its environment built: these tests count its benchmarks' jobs, not a setup job."""
    return ready_project({"benchmarks/bench_quick.py": BENCH_QUICK,
                          "benchmarks/bench_args.py": BENCH_ARGS})


@pytest.mark.slow
async def test_changes_by_the_cli_show_in_the_open_app(project, home):
    """With the app open at the default poll interval, `evopilot queue pause` and `evopilot run`
    in another process show within a tick, without any action in the app."""
    await evopilot(home, "project", "add", project)
    app = EvopilotApp(Config(), home)  # default poll_interval
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.action_show_tab("jobs")
        assert "queue: running" in static_text(app, "#jobs-status")

        await evopilot(home, "queue", "pause")
        await until(pilot, lambda: "queue: PAUSED" in static_text(app, "#jobs-status"), timeout=5,
                    what="the pause by the CLI")
        out = await evopilot(home, "run", "proj", "bench_quick.py", "--json")
        job_id = int(out.split('"id":')[1].split(",")[0])
        await until(pilot, lambda: "queued" in job_row(app, job_id), timeout=5,
                    what="the job queued by the CLI")
        assert app.jobs.table.current.id == job_id  # the cursor is on the new job

        await evopilot(home, "cancel", str(job_id))
        await until(pilot, lambda: "cancelled" in job_row(app, job_id), timeout=5,
                    what="the job cancelled by the CLI")
        await evopilot(home, "queue", "resume")
        await until(pilot, lambda: "queue: running" in static_text(app, "#jobs-status"), timeout=5,
                    what="the resume by the CLI")

        # a project added by the CLI shows in the Projects tab while it is shown
        other = project.parent / "other"
        (other / "benchmarks").mkdir(parents=True)
        (other / "benchmarks" / "bench_o.py").write_text("print('hi')\n")
        app.action_show_tab("projects")
        await evopilot(home, "project", "add", other)
        await until(pilot, lambda: "other" in [p.name for p in app.projects.projects], timeout=5,
                    what="the project added by the CLI")


async def test_changed_is_one_pragma_and_false_for_own_writes(home):
    """``Engine.changed`` sees another connection's commit, not this connection's own."""
    import sqlite3

    from evopilot.core import locations

    async with await Engine.open(Config(), home) as engine:
        assert not await engine.changed()  # the baseline
        await engine.set_queue_paused(True)  # own write
        assert not await engine.changed()
        other = sqlite3.connect(locations.db_path(home))
        other.execute("UPDATE meta SET value = '0' WHERE key = 'queue_paused'")
        other.commit()
        other.close()
        assert await engine.changed()
        assert not await engine.changed()


def bar_text(app) -> str:
    from evopilot.tui.widgets.key_bar import KeyBar

    bar = app.query_one(KeyBar)
    return str(bar.render())


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_key_bar_fits_by_rank_and_keeps_help_and_quit(home, size):
    from evopilot.tui.widgets.key_bar import KeyBar

    app = EvopilotApp(Config(), home, engine_loop=False)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        for tab in ("projects", "jobs", "hosts", "archive"):
            app.action_show_tab(tab)
            await pilot.pause()
            bar = app.query_one(KeyBar)
            shown = bar.shown
            text = str(bar.render())
            assert ("?", "Help") in shown and ("q", "Quit") in shown, (tab, shown)
            assert " q  Quit " in text and "…" not in text, (tab, text)
            assert len(text) <= size[0], (tab, text)
            if size[0] == 80 and tab == "jobs":
                assert len(shown) < len(bar.items)  # some keys left out, whole
                assert ("/", "Find") in shown and ("l", "Log") in shown, shown


async def test_help_wraps_at_words_and_escape_leaves_the_log(home):
    from evopilot.tui.screens.help import HelpScreen
    from evopilot.tui.widgets.log_view import LogLines

    app = EvopilotApp(Config(), home, engine_loop=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        table = app.screen.query_one("#help-table")
        lines = []
        for _ in range(60):  # every row, page by page
            lines += [table.render_line(y).text for y in range(table.size.height)]
            await pilot.press("pagedown")
        words = set(" ".join(lines).split())
        for long in ("SIGKILL)", "(tools,", "benchmarks)", "SSH)"):
            assert long in words, f"{long!r} cut: no line holds it whole"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), what="help closed")

        app.action_show_tab("jobs")
        await pilot.press("l")
        assert isinstance(app.focused, LogLines)
        await pilot.press("escape")
        assert app.focused is app.jobs.table


async def seed(home: Path, project: Path) -> list[int]:
    """Three finished jobs of the project (two succeeded, one failed), run for real."""
    from evopilot.core.config import LOCAL  # noqa: F401

    async with await Engine.open(fast_config(), home) as engine:
        await engine.add_project(project)
        ids = []
        for value in ("3", "7"):
            (job,) = await engine.run("proj", ["bench_args.py"], args=[value])
            ids.append(job.id)
        (job,) = await engine.run("proj", ["bench_quick.py"], priority=5, timeout=60)
        ids.append(job.id)
        await engine.run_forever(until_done=ids)
        retry = await engine.retry(ids[0])
        await engine.run_forever(until_done=[retry.id])
        return ids + [retry.id]


async def on_seeded_jobs(pilot) -> None:
    """The app open on the Jobs tab with the four seeded jobs in the table."""
    app = await started(pilot)
    app.action_show_tab("jobs")
    await until(pilot, lambda: app.jobs.table.count == 4, what="four jobs")


def fast_config(**kw) -> Config:
    return Config(engine=EngineConfig(poll_interval=0.1, kill_grace=0.5),
                  hosts={"local": HostConfig(max_parallel=4)}, **kw)


@pytest.mark.slow
async def test_find_sort_and_a_filter_that_hides_every_job_says_so(project, home):
    ids = await seed(home, project)
    app = EvopilotApp(fast_config(), home, engine_loop=False)
    async with app.run_test(size=SIZE) as pilot:
        await on_seeded_jobs(pilot)
        await pilot.press("slash")
        assert app.focused.id == "jobs-find"
        await pilot.press(*"quick")
        await until(pilot, lambda: app.jobs.table.count == 1, what="one job found")
        assert job_row(app, ids[2]) and "find: 'quick'" in static_text(app, "#jobs-status")
        await pilot.press("enter")
        assert app.focused is app.jobs.table and app.jobs.text_filter == "quick"

        await pilot.press("slash", *"zzz-nothing", "enter")
        await until(pilot, lambda: app.jobs.table.count == 0, what="no job found")
        assert "no job matches the filter" in table_text(app) and "queue benchmarks" not in table_text(app)
        await pilot.press("escape")  # clears every filter
        await until(pilot, lambda: app.jobs.table.count == 4, what="every job again")
        assert app.jobs.text_filter == "" and "find:" not in static_text(app, "#jobs-status")

        await pilot.press("o")  # sort by project: ties newest first
        await pilot.press("o")  # by benchmark: bench_args (2), then bench_quick
        await until(pilot, lambda: "sort: benchmark" in static_text(app, "#jobs-status"), what="sorted")
        await until(pilot, lambda: [j.id for j in app.jobs.table.rows] == [ids[3], ids[1], ids[0], ids[2]],
                    what="rows by benchmark")


async def test_empty_projects_tab_names_the_demo(home):
    app = EvopilotApp(Config(), home, engine_loop=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        tree = app.projects.tree
        assert "evopilot demo" in " ".join(str(n.label) for n in tree.root.children)


@pytest.mark.slow
async def test_detail_view_of_the_selected_job(project, home):
    ids = await seed(home, project)
    app = EvopilotApp(fast_config(), home, engine_loop=False)
    async with app.run_test(size=SIZE) as pilot:
        await on_seeded_jobs(pilot)
        full = lambda: static_text(app, "#job-full")  # noqa: E731
        await pilot.press("d")
        assert app.jobs.has_class("detail") and not app.jobs.log_view.display
        # the newest: the retry of the first run (args 3)
        await until(pilot, lambda: f"retry of  job {ids[0]}" in full(), what="the retry's detail")
        job = await app.engine.job(ids[3])
        for text in (f"job {ids[3]} · bench_args.py", "command   ", "args      3", "host      local",
                     f"workdir   {project}", f"job dir   {job.job_dir}", f"tmux      {job.tmux_session}",
                     "times     queued 20", "started 20", "exit      0",
                     "objective = 3 pts (higher is better)", "runtime = 0.5 s (lower is better)"):
            assert text in full(), (text, full())
        # three runs of bench_args (3, 7, 3): the objective's history as a sparkline
        assert "▁█▁  last 3 runs, 3..7" in full(), full()
        await pilot.press("down")  # bench_quick: priority 5, timeout 60
        await until(pilot, lambda: f"job {ids[2]} · bench_quick.py" in full(), what="the next job")
        assert "host      local · priority 5 · timeout 1:00" in full(), full()
        await pilot.press("d")
        assert app.jobs.log_view.display


@pytest.mark.slow
async def test_run_dialog_takes_args_priority_timeout_host_and_add_project_the_python(project, home):
    from evopilot.tui.screens.dialogs import AddProjectDialog, RunDialog

    app = EvopilotApp(fast_config(), home)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AddProjectDialog), what="the add dialog")
        app.screen.query_one("#path").value = str(project)
        app.screen.query_one("#python").value = "3.11"
        await pilot.press("enter")
        await until(pilot, lambda: app.projects.projects, what="the project")
        assert (await app.engine.project("proj")).python_version == "3.11"

        tree = app.projects.tree
        bench = next(n for n in tree.root.children[0].children if "bench_args" in str(n.label))
        tree.move_cursor(bench)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RunDialog), what="the run dialog")
        dialog = app.screen
        dialog.query_one("#args").value = "7 'two words'"
        dialog.query_one("#priority").value = "x"
        await pilot.press("enter")
        assert "priority: not an integer" in static_text(app, "#error")  # stays open
        dialog.query_one("#priority").value = "3"
        dialog.query_one("#timeout").value = "30"
        dialog.query_one("#host").value = "nowhere"
        await pilot.press("enter")
        await until(pilot, lambda: "unknown host 'nowhere'" in static_text(app, "#error"), what="inline error")
        assert not await app.engine.jobs(reconcile=False)  # nothing queued
        dialog.query_one("#host").value = "local"
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, RunDialog), what="the dialog to close")
        await until(pilot, lambda: app.jobs.table.count == 1, what="the job")
        (job,) = await app.engine.jobs(reconcile=False)
        assert job.args == ["7", "two words"] and job.priority == 3 and job.timeout_s == 30
        assert job.host == "local"


async def test_hosts_show_load_paused_queue_and_no_free_slots_when_unreachable(home):
    import socket

    with socket.socket() as s:  # a port nobody listens on: the host cannot be reached
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Config(hosts={"local": HostConfig(max_parallel=4),
                           "away": HostConfig(hostname="127.0.0.1", port=port, connect_timeout=2,
                                              ssh_config="")})
    app = EvopilotApp(config, home, engine_loop=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        app.action_show_tab("hosts")
        assert "queue: running" in static_text(app, "#hosts-head")
        rows = lambda: {r["name"]: r for r in app.hosts.rows}  # noqa: E731
        assert rows()["local"]["load"]["cpus"] and rows()["away"]["free_slots"] == 4
        table = app.hosts.table
        local = table.get_row("local")
        assert local[5].endswith(f"/{os.cpu_count()}") and local[6].endswith("%")  # LOAD, MEM

        table.move_cursor(row=[r["name"] for r in app.hosts.rows].index("away"))
        await pilot.press("r")  # connect: refused
        await until(pilot, lambda: app.hosts.errors.get("away"), what="the failed connect")
        await app.hosts._read()
        assert rows()["away"]["free_slots"] == 0 and table.get_row("away")[4] == "0"

        # a pause by another process shows here too
        await evopilot(home, "queue", "pause")
        await until(pilot, lambda: "queue: PAUSED" in static_text(app, "#hosts-head"), timeout=5,
                    what="the paused queue in Hosts")


@pytest.mark.slow
async def test_ssh_host_load_comes_in_the_monitors_round_trip(sshd, home):
    """A monitor tick of an SSH host with a running job makes the same round trips as before
    (probe, read ranges) and brings the host's load with the probe."""
    from evopilot.core.jobs.scheduler import Scheduler  # noqa: F401 - the tick under test

    config = Config(engine=EngineConfig(poll_interval=0.1),
                    hosts={"h1": sshd.host_config(ssh_config=sshd.ssh_config)})
    async with await Engine.open(config, home) as engine:
        job = await engine.submit("sleep 30", host="h1")
        await until_running(engine, job.id)
        (row,) = [r for r in await engine.hosts() if r["name"] == "h1"]
        host = await engine.host("h1")
        host.load = None
        calls = []
        real = host.run

        async def counted(script, *a, **kw):
            calls.append(script.splitlines()[0][:40])
            return await real(script, *a, **kw)

        host.run = counted
        await engine.tick_host("h1", dispatch_jobs=False)
        assert len(calls) <= 2, calls  # the probe, and new log bytes if any: nothing more
        (row,) = [r for r in await engine.hosts() if r["name"] == "h1"]
        assert row["load"]["cpus"] and row["load"]["mem_used_pct"] is not None, row
        await engine.kill(job.id)


@pytest.mark.slow
async def test_an_idle_ssh_host_shows_its_load_once_connected_and_a_staying_loop_keeps_it_fresh(
        sshd, home, monkeypatch):
    """No job ever ran on the host: connecting it (`hosts --connect`, the Hosts tab's `r`)
    shows its load at once, and the app's or a worker's loop looks at it again every
    ``IDLE_EVERY`` seconds (made short here), one round trip each."""
    from evopilot.core.hosts import base
    from evopilot.core.jobs import scheduler

    config = Config(engine=EngineConfig(poll_interval=0.1),
                    hosts={"h1": sshd.host_config(ssh_config=sshd.ssh_config)})
    async with await Engine.open(config, home) as engine:
        (row,) = [r for r in await engine.hosts() if r["name"] == "h1"]
        assert row["load"] is None  # not connected: nothing known, and nothing connects for it
        row = await engine.connect_host("h1")
        assert row["load"]["cpus"] and row["load"]["mem_used_pct"] is not None, row

        host = await engine.host("h1")
        seen = host.load_at
        monkeypatch.setattr(base, "IDLE_EVERY", 0.2)
        monkeypatch.setattr(scheduler, "IDLE_EVERY", 0.2)
        loop = asyncio.create_task(engine.run_forever())
        try:
            deadline = time.monotonic() + 20
            while host.load_at == seen:
                assert time.monotonic() < deadline, "the idle host was not looked at again"
                await asyncio.sleep(0.05)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        (row,) = [r for r in await engine.hosts() if r["name"] == "h1"]
        assert row["load"]["cpus"], row


async def until_running(engine, job_id: int, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while (await engine.job(job_id)).status.value != "running":
        assert time.monotonic() < deadline, "the job did not start"
        await engine.dispatch()
        await engine.tick_host("h1")
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_mark_jobs_and_compare_their_metrics(project, home):
    from evopilot.tui.screens.compare import CompareScreen

    ids = await seed(home, project)  # objective: 3 (higher better), 7, 42.5 (no direction), 3
    app = EvopilotApp(fast_config(), home, engine_loop=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await on_seeded_jobs(pilot)
        await pilot.press("C")
        assert not isinstance(app.screen, CompareScreen)  # fewer than two marked
        table = app.jobs.table
        while table.current.id != ids[1]:
            await pilot.press("down")
        await pilot.press("m", "m")  # ids[1] (7), then ids[0] (3): m moves down
        assert table.marked == {ids[1], ids[0]}
        assert job_row(app, ids[1]).startswith("✓") and "marked: 2" in static_text(app, "#jobs-status")
        await pilot.press("C")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), what="the comparison")
        rows = app.screen.query_one("#compare-table")
        objective = [str(c) for c in rows.get_row("objective")]
        runtime = [str(c) for c in rows.get_row("runtime")]
        assert objective == ["objective (pts) higher better", "3", "7 *"]  # jobs in id order
        assert runtime == ["runtime (s) lower better", "0.5 *", "0.5 *"]  # a tie: both
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)


def test_compare_metrics_best_by_direction():
    from evopilot.core.formatting import compare_metrics
    from evopilot.core.models import Job

    def job(i, metrics, higher, units=None):
        return Job.model_construct(id=i, metrics=metrics, metric_higher_is_better=higher, metric_units=units or {})

    jobs = [job(1, {"loss": 0.3, "acc": 0.9}, {"loss": False, "acc": True}, {"loss": "nat"}),
            job(2, {"loss": 0.2, "acc": 0.8, "steps": 5}, {}),
            job(3, {"acc": 0.95, "steps": 4}, {})]
    got = {m.name: m for m in compare_metrics(jobs)}
    assert got["loss"].values == [0.3, 0.2, None] and got["loss"].best == {1} and got["loss"].unit == "nat"
    assert got["acc"].best == {2} and got["acc"].direction == "higher"
    assert got["steps"].best == set() and got["steps"].direction == ""  # no direction: no best


async def test_publish_changes_says_jobs_removed_and_projects_changed(home, make_project):
    """Rows removed by another process (a clean) and a project it added come as a StoreEvent."""
    import sqlite3

    from evopilot.core import locations
    from evopilot.core.events import JobEvent, StoreEvent

    root = make_project({"benchmarks/bench_a.py": "print(1)\n"}, name="p2")
    async with await Engine.open(Config(), home) as engine:
        job = await engine.submit("true")
        await engine.cancel(job.id)
        q = engine.subscribe()
        assert not await engine.publish_changes()  # the baseline
        other = sqlite3.connect(locations.db_path(home))
        with other:
            other.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
        assert await engine.publish_changes()
        events = [q.get_nowait() for _ in range(q.qsize())]
        assert [e for e in events if isinstance(e, StoreEvent)] == [StoreEvent(jobs_removed=True)]
        other.close()
        await evopilot(home, "project", "add", root)
        assert await engine.publish_changes()
        events = [q.get_nowait() for _ in range(q.qsize())]
        assert StoreEvent(projects=True) in events and not any(isinstance(e, JobEvent) for e in events)
        assert not await engine.publish_changes()  # nothing since


async def test_new_jobs_come_into_view_with_the_cursor_on_them(home):
    """Queued from the Projects tab (r) the new job is under the cursor in Jobs, even when the
    cursor was far down before; while the user reads an older job in Jobs, it stays put."""
    from tests.test_tui import seed_jobs

    await seed_jobs(home, 200)
    app = EvopilotApp(fast_config(), home, engine_loop=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        app.action_show_tab("jobs")
        table = app.jobs.table
        await until(pilot, lambda: table.count == 200, what="the jobs")
        await pilot.press("pagedown", "pagedown", "pagedown")  # reading job ~170
        reading = table.current.id
        job = await app.engine.submit("true", name="while reading")
        await until(pilot, lambda: table.count == 201, what="the new job counted")
        assert table.current.id == reading  # the cursor stays on the job being read

        app.action_show_tab("projects")  # as after r in Projects
        job = await app.engine.submit("true", name="queued from projects")
        await until(pilot, lambda: table.count == 202, what="the second new job counted")
        app.action_show_tab("jobs")
        await until(pilot, lambda: job_row(app, job.id).startswith("▶"), what="the new job in view")
        assert table.current.id == job.id


async def test_hosts_tab_shows_a_slurm_hosts_nodes_and_its_pending_and_running_jobs(slurm, home, tmp_path):
    """A real single-node Slurm host (``local = true``): under the table, the highlighted
    cluster's nodes by state and evopilot's jobs there, pending and running."""
    from evopilot.core.config import parse_config
    from tests.test_slurm import FOREVER, cluster_config

    config = parse_config(cluster_config(slurm, tmp_path, sbatch_options=["--hold"]))
    app = EvopilotApp(config, home)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        app.action_show_tab("hosts")
        table = app.hosts.table
        line = lambda: static_text(app, "#hosts-cluster")  # noqa: E731
        await until(pilot, lambda: "c" in app.hosts.names(), timeout=10, what="the hosts listed")
        table.move_cursor(row=app.hosts.names().index("c"))
        # no job there yet: the cluster's nodes all the same
        await until(pilot, lambda: re.fullmatch(r"c \(Slurm, partition debug\): cluster: 1 (idle|mixed)", line()),
                    timeout=30, what="the idle cluster's nodes")
        table.move_cursor(row=app.hosts.names().index("local"))
        await pilot.pause()
        assert not app.screen.query_one("#hosts-cluster").display  # not a cluster
        for name in ("runs", "waits"):  # held: one array of two, released one task at a time
            await app.engine.submit(FOREVER, name=name, host="c", workdir=str(tmp_path))

        async def slurm_ids() -> dict[str, str | None]:
            return {j.name: j.slurm_id for j in await app.engine.jobs(reconcile=False)}

        deadline = asyncio.get_running_loop().time() + 30
        while not all((await slurm_ids()).values()):
            assert asyncio.get_running_loop().time() < deadline, "the jobs were not submitted"
            await pilot.pause(0.1)
        ids = await slurm_ids()
        try:
            slurm.cmd("scontrol", "release", ids["runs"])
            table.move_cursor(row=app.hosts.names().index("c"))
            await until(pilot, lambda: "jobs: 1 running, 1 pending" in line(), timeout=30,
                        what="one job running and one pending on the cluster")
            assert app.screen.query_one("#hosts-cluster").display
            # one 16-CPU node running one 1-CPU job
            assert line() == "c (Slurm, partition debug): cluster: 1 mixed · jobs: 1 running, 1 pending"
            assert table.get_row("c")[-1] == ""  # LAST ERROR stays for errors
        finally:
            slurm.cmd("scancel", ids["runs"], ids["waits"])
        await until(pilot, lambda: "jobs:" not in line(), timeout=30, what="the jobs gone from the cluster line")
