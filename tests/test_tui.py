"""The app driven by Textual's Pilot, with a real engine on a private EVOPILOT_HOME and real tmux
(tests/conftest.py gives each test its own tmux server).

Waits are on conditions (``until``), polling with ``pilot.pause``; no fixed sleeps.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from evopilot.core import locations
from evopilot.core.config import Config, EngineConfig, HostConfig
from evopilot.core.engine import Engine
from evopilot.core.formatting import progress_bar
from evopilot.core.models import JobStatus
from evopilot.tui.app import EvopilotApp
from evopilot.tui.screens.dialogs import AddProjectDialog, ConfirmDialog, ReportDialog, RunDialog
from evopilot.tui.screens.help import HelpScreen
from evopilot.tui.widgets.job_table import JobTable, column_widths
from evopilot.tui.widgets.path_input import suggest_path

SIZE = (120, 40)

BENCH_QUICK = '''\
import json, os, time
n = 8
for i in range(1, n + 1):
    print(f"[{i}/{n}] gap={1 / i:.4f}", flush=True)
    time.sleep(0.05)
print("WARNING: step size reduced", flush=True)
with open(os.environ["EVOPILOT_RESULTS"], "w") as f:
    json.dump({"objective": 42.5, "runtime": {"value": 0.4, "unit": "s"}}, f)
'''

BENCH_LONG = '''\
import time
n = 2000
for i in range(1, n + 1):
    print(f"[{i}/{n}] iteration", flush=True)
    time.sleep(0.05)
'''


def fast_config(**kw) -> Config:
    return Config(engine=EngineConfig(poll_interval=0.1, kill_grace=0.5),
                  hosts={"local": HostConfig(max_parallel=4)}, **kw)


TIMES: list[tuple[str, float]] = []


async def until(pilot, cond, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    try:
        await _until(pilot, cond, deadline, timeout, what)
    finally:
        TIMES.append((what, time.monotonic() - t0))


async def _until(pilot, cond, deadline, timeout, what) -> None:
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)


async def started(pilot) -> EvopilotApp:
    app = pilot.app
    await until(pilot, app.ready.is_set, what="the engine to open")
    await pilot.pause()
    return app


async def type_text(pilot, text: str) -> None:
    t0 = time.monotonic()
    await pilot.press(*text)
    TIMES.append((f"typing {len(text)} chars", time.monotonic() - t0))


def static_text(app, selector: str) -> str:
    return str(app.screen.query_one(selector).content)


def table_text(app) -> str:
    return "\n".join(app.query_one(JobTable).visible_text())


def job_row(app, job_id: int) -> str:
    for line in app.query_one(JobTable).visible_text():
        parts = line[1:].split()
        if parts and parts[0] == str(job_id):
            return line
    return ""


@pytest.fixture
def project(ready_project) -> Path:
    """The project, its environment built: the app's tests count its benchmarks' jobs only."""
    return ready_project({"benchmarks/bench_quick.py": BENCH_QUICK,
                          "benchmarks/bench_long.py": BENCH_LONG})


@pytest.mark.slow
async def test_add_project_queue_watch_kill_filter_search(project, home, monkeypatch):
    monkeypatch.chdir(project.parent)  # so that the typed path is short (each key costs ~0.1 s)
    app = EvopilotApp(fast_config(), home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)

        # Add the project through the dialog: type its path, submit.
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AddProjectDialog), what="the dialog")
        await type_text(pilot, project.name)
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, AddProjectDialog), what="the dialog to close")
        await until(pilot, lambda: app.projects.projects, what="the project in the tree")
        assert [p.name for p in app.projects.projects] == ["proj"]
        labels = [str(n.label) for n in app.projects.tree.root.children[0].children]
        assert labels == ["[ ] benchmarks/bench_long.py", "[ ] benchmarks/bench_quick.py"]

        # The dependency panel analyses the highlighted benchmark.
        tree = app.projects.tree
        tree.move_cursor(tree.root.children[0].children[0])
        await until(pilot, lambda: "benchmarks/bench_long.py" in static_text(app, "#deps"),
                    what="the dependency tree")

        # Select both benchmarks (space on the project selects all of them) and queue them.
        app.projects.tree.move_cursor(app.projects.tree.root.children[0])
        await pilot.press("space")
        assert len(app.projects.selected) == 2
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RunDialog), what="the run dialog")
        await pilot.press("enter")  # no options
        await until(pilot, lambda: app.jobs.table.count == 2, what="two jobs in the table")
        await pilot.press("3")
        table = app.jobs.table
        assert table.has_focus

        long_id, quick_id = sorted(j.id for j in table.rows)  # queued in path order
        # Progress reaches its end and the metrics appear, in the row and in the detail line.
        await until(pilot, lambda: "objective=42.5" in job_row(app, quick_id), what="metrics in the table")
        row = job_row(app, quick_id)
        assert "succeeded" in row and "8/8" in row and "█" in row
        await until(pilot, lambda: "running" in job_row(app, long_id), what="the long job running")

        # The newest job is at the top; select the quick one and check the detail line and log.
        table.move_cursor(next(i for i, j in enumerate(table.rows) if j.id == quick_id))
        await until(pilot, lambda: "metrics: objective=42.5" in static_text(app, "#job-detail"),
                    what="the detail line")
        log = app.jobs.log_view
        await until(pilot, lambda: any("WARNING: step size reduced" in r for r in log.visible_text()),
                    what="the log")

        # Search the log with /.
        await pilot.press("l")
        assert log.lines_view.has_focus
        await pilot.press("slash")
        await type_text(pilot, "gap=0.25")
        await pilot.press("enter")
        await until(pilot, lambda: log.match_line is not None, what="a search match")
        assert log.match_line == 3  # "[4/8] gap=0.2500", 0-based line 3
        await pilot.press("l")
        assert table.has_focus

        # Kill the long job (with confirmation).
        table.move_cursor(next(i for i, j in enumerate(table.rows) if j.id == long_id))
        await until(pilot, lambda: app.jobs.selected and app.jobs.selected.id == long_id, what="selection")
        await until(pilot, lambda: app.jobs.selected.progress_current > 0, what="progress of the long job")
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "killed" in job_row(app, long_id), timeout=20, what="the job killed")
        assert (await app.engine.job(long_id)).status == JobStatus.KILLED

        # Filters: active jobs (none left), finished ones (both), then clear.
        await pilot.press("S")  # active
        await until(pilot, lambda: table.count == 0 and "status: active" in static_text(app, "#jobs-status"),
                    what="the active filter")
        for _ in range(3):
            await pilot.press("S")  # running, queued, finished
        await until(pilot, lambda: table.count == 2 and "status: finished" in static_text(app, "#jobs-status"),
                    what="the finished filter")
        await pilot.press("S")  # failed (failed, killed, lost)
        await until(pilot, lambda: table.count == 1, what="the failed filter")
        assert job_row(app, long_id) and not job_row(app, quick_id)
        await pilot.press("escape")
        await until(pilot, lambda: table.count == 2, what="filters cleared")
        await pilot.press("P")
        await until(pilot, lambda: "project: proj" in static_text(app, "#jobs-status"), what="project filter")
        await pilot.press("H")
        await until(pilot, lambda: "host: local" in static_text(app, "#jobs-status"), what="host filter")
        assert table.count == 2


async def test_add_project_dialog_shows_errors_inline(make_project, home, tmp_path):
    root = make_project({"benchmarks/bench_a.py": "print('hi')\n"}, name="solver")
    other = make_project({"benchmark_b.py": "print('hi')\n"}, name="other")
    app = EvopilotApp(fast_config(), home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AddProjectDialog), what="the dialog")
        dialog = app.screen

        # A path that does not exist: shown inline, the dialog stays, nothing is added.
        # (Typing is tested above; here the value is set and Enter pressed.)
        dialog.query_one("#path").value = str(tmp_path / "nowhere")
        await pilot.press("enter")
        await until(pilot, lambda: "not a directory" in static_text(app, "#error"), what="the inline error")
        assert app.screen is dialog
        assert await app.engine.list_projects() == []

        # A good path is added.
        dialog.query_one("#path").value = str(root)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is not dialog, what="the dialog to close")
        await until(pilot, lambda: len(app.projects.projects) == 1, what="the project")

        # The same name again (another directory, name given): inline error, nothing changes.
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AddProjectDialog), what="the dialog")
        dialog = app.screen
        dialog.query_one("#path").value = str(other)
        dialog.query_one("#name").value = "solver"
        dialog.query_one("#name").focus()
        await pilot.press("enter")
        await until(pilot, lambda: "already exists" in static_text(app, "#error"), what="the duplicate error")
        assert app.screen is dialog
        projects = await app.engine.list_projects()
        assert [(p.name, p.path) for p in projects] == [("solver", str(root.resolve()))]
        assert [b.path for b in await app.engine.list_benchmarks()] == ["benchmarks/bench_a.py"]

        # Escape closes the dialog without adding anything.
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is not dialog, what="the dialog to close")
        assert len(await app.engine.list_projects()) == 1


def test_path_completion(tmp_path):
    (tmp_path / "alpha" / "inner").mkdir(parents=True)
    (tmp_path / "alpine").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "afile.py").write_text("")
    base = str(tmp_path)
    assert suggest_path(base + "/alp") == base + "/alpha/"
    assert suggest_path(base + "/alpi") == base + "/alpine/"
    assert suggest_path(base + "/alpha/") == base + "/alpha/inner/"
    assert suggest_path(base + "/.h") == base + "/.hidden/"
    assert suggest_path(base + "/af") is None  # directories only
    assert suggest_path(base + "/af", dirs_only=False) == base + "/afile.py"
    assert suggest_path("alp", base=tmp_path) == "alpha/"
    assert suggest_path(base + "/zzz") is None
    assert suggest_path(base + "/missing/x") is None


async def test_path_input_tab_completes(tmp_path, home):
    (tmp_path / "workdir" / "solver").mkdir(parents=True)
    app = EvopilotApp(fast_config(), home, engine_loop=False)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AddProjectDialog), what="the dialog")
        path_input = app.screen.query_one("#path")
        path_input.value = str(tmp_path / "workdir" / "s")
        await pilot.press("o")
        await until(pilot, lambda: path_input._suggestion.endswith("solver/"), what="a suggestion")
        await pilot.press("tab")
        assert path_input.value == str(tmp_path / "workdir" / "solver") + "/"


async def seed_jobs(home: Path, n: int) -> None:
    await (await Engine.open(Config(), home)).close()  # the schema
    now = "2025-01-01T00:00:00.000+00:00"
    db = sqlite3.connect(locations.db_path(home))
    with db:
        db.executemany(
            "INSERT INTO jobs(kind, name, args, command, workdir, host, status, seq, "
            "created_at, updated_at, started_at, finished_at, exit_code) "
            "VALUES ('benchmark', ?, '[]', 'true', '/tmp', 'local', ?, ?, ?, ?, ?, ?, ?)",
            [(f"bench_{i % 7}.py", "succeeded" if i % 3 else "failed", i, now, now, now, now,
              0 if i % 3 else 1) for i in range(1, n + 1)],
        )
    db.close()


@pytest.mark.slow
async def test_job_table_is_virtual(home):
    await seed_jobs(home, 20_000)
    app = EvopilotApp(Config(), home, engine_loop=False)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        table = app.jobs.table
        await until(pilot, lambda: table.loaded and table.count == 20_000, what="the table")
        assert app.query_one("#tabs").active == "jobs"  # jobs exist: the app opens on them
        assert len(table.rows) <= 3 * max(table.page, JobTable.MIN_PAGE) + 1  # only a window
        assert job_row(app, 20_000) and "20,000 jobs" in static_text(app, "#jobs-status")
        await pilot.press("end")
        await until(pilot, lambda: job_row(app, 1) != "", what="the oldest job")
        assert table.current.id == 1
        assert len(table.rows) <= 3 * max(table.page, JobTable.MIN_PAGE) + 1
        await pilot.press("pageup")
        await until(pilot, lambda: table.current is not None and table.current.id == 1 + table.page,
                    what="a page up")
        await pilot.press("home")
        await until(pilot, lambda: table.current is not None and table.current.id == 20_000, what="home")
        await pilot.press("S", "S")  # running: none of them
        await until(pilot, lambda: table.count == 0, what="the running filter")
        assert "no job matches the filter (Esc clears it): status: running" in table_text(app)
        await pilot.press("S", "S", "S")  # queued, finished, failed: every third
        await until(pilot, lambda: table.count == 20_000 // 3, what="the failed filter")


async def test_help_lists_bindings_and_config_overrides(home):
    config = fast_config(keys={"jobs.kill": "K"})
    app = EvopilotApp(config, home, engine_loop=False)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help screen")
        table = app.screen.query_one("#help-table")
        rows = {table.get_row_at(i)[0]: table.get_row_at(i) for i in range(table.row_count)}
        assert rows["jobs.kill"][1] == "K"
        assert rows["jobs.stop"][1] == "s"
        assert rows["log.search"][1] == "/"
        assert rows["app.help"][1] == "?"
        for spec_id in ("projects.add", "projects.run", "jobs.move_front", "jobs.pause", "hosts.doctor",
                        "hosts.reconnect", "log.first_error", "log.follow"):
            assert spec_id in rows
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), what="help closed")

        # The override works: K is kill in the Jobs tab, k no longer is.
        await pilot.press("3")
        keys = {b.binding.id: k for k, b in app.screen.active_bindings.items() if b.binding.id}
        assert keys["jobs.kill"] == "K"
        # Every active binding is a command in the palette.
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Jobs: Kill" in titles and "Jobs: Move to front" in titles and "App: Help" in titles


@pytest.mark.slow
async def test_hosts_tab_and_doctor(home):
    app = EvopilotApp(fast_config(), home, engine_loop=False)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("5")
        hosts = app.hosts.table
        assert hosts.has_focus
        row = [str(c) for c in hosts.get_row_at(0)]
        assert row[:5] + row[-2:] == ["local", "connected", "0", "4", "4", "-", ""]  # LOAD, MEM between
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ReportDialog), what="the doctor report")
        await until(pilot, lambda: "tmux" in static_text(app, "#report"), timeout=20, what="doctor's checks")
        await pilot.press("escape")
        await pilot.press("r")  # local: nothing to reconnect, but it connects it
        await until(pilot, lambda: str(hosts.get_row_at(0)[1]) == "connected", what="local connected")


@pytest.mark.slow
async def test_queue_pause_and_move(project, home):
    app = EvopilotApp(fast_config(), home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("3", "p")
        await until(pilot, lambda: "queue: PAUSED" in static_text(app, "#jobs-status"), what="paused")
        assert await app.engine.queue_paused()
        await app.engine.add_project(project)
        jobs = await app.call(app.engine.run, "proj", ["bench_quick.py", "bench_quick.py", "bench_long.py"])
        table = app.jobs.table
        await until(pilot, lambda: table.count == 3, what="three queued jobs")
        assert all(j.status == JobStatus.QUEUED for j in table.rows)
        first, _, last = (j.id for j in jobs)
        table.move_cursor(0)  # the newest: the last one queued
        await until(pilot, lambda: app.jobs.selected and app.jobs.selected.id == last, what="selection")
        await pilot.press("left_curly_bracket")  # move to the front of the queue
        await until(pilot, lambda: app.jobs.selected.seq < min(j.seq for j in jobs), what="moved to front")
        await until(pilot, lambda: f"job {last}: moved front, now #1 of 3 in the queue" in
                    [str(n.message) for n in app._notifications], what="where the job went")
        await pilot.press("c")  # cancel it
        await until(pilot, lambda: "cancelled" in job_row(app, last), what="cancelled")
        await pilot.press("r")  # retry it: a new queued job with the same inputs
        await until(pilot, lambda: table.count == 4, what="the retry")
        retry = max(j.id for j in table.rows)
        assert (await app.engine.job(retry)).retry_of == last
        await pilot.press("k")  # kill a job that is not running: refused with the reason
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmDialog)
        await pilot.press("p")
        await until(pilot, lambda: "queue: running" in static_text(app, "#jobs-status"), what="resumed")
        await until(pilot, lambda: "succeeded" in job_row(app, first), what="a queued job ran")


def test_formatting_helpers():
    from evopilot.core.models import Job

    job = Job.model_validate(dict(
        id=1, project_id=None, kind="benchmark", name="b.py", benchmark_path=None, args=[],
        command="x", workdir="/", host="local", status="running", priority=0, seq=1, timeout_s=None,
        tmux_session=None, job_dir=None, pid=None, pgid=None, exit_code=None, progress_current=12,
        progress_total=50, results_path=None, error_message=None, log_path=None, log_offset=0,
        requested=None, retry_of=None, created_at="x", started_at=None, finished_at=None, updated_at="x"))
    assert progress_bar(job, 10) == "██░░░░░░░░ 12/50"
    for width in (71, 79, 119, 200):  # 71: the narrowest that fits every column
        widths = column_widths(width)
        used = 1 + sum(w + 1 for w in widths.values() if w >= 0) - 1
        assert used == width, (width, widths)
    assert column_widths(79)["metrics"] == -1 and column_widths(119)["metrics"] >= 20


async def test_a_new_tab_is_a_new_pane_and_gets_every_message(home, monkeypatch):
    """A pane added to TABS (and nothing else) is shown as a tab, loads once the engine is open
    and receives the engine's events as typed messages."""
    from textual.widgets import Static

    from evopilot.tui import app as app_module
    from evopilot.tui import messages
    from evopilot.tui.screens.pane import Pane

    class RecordingPane(Pane):
        def __init__(self) -> None:
            super().__init__(id="recording-pane")
            self.seen: list = []

        def compose(self):
            yield Static("recording")

        async def engine_ready(self) -> None:
            self.seen.append("engine_ready")

        def on_jobs_changed(self, m: messages.JobsChanged) -> None:
            self.seen += [("jobs", j.id, j.status.value) for j in m.jobs]

        def on_log_grew(self, m: messages.LogGrew) -> None:
            self.seen.append(("log", m.job_id))

        def on_host_changed(self, m: messages.HostChanged) -> None:
            self.seen.append(("host", m.host, m.state))

        def on_queue_changed(self, m: messages.QueueChanged) -> None:
            self.seen.append(("queue", m.paused))

        def on_tab_shown(self, m: messages.TabShown) -> None:
            self.seen.append("shown")

    monkeypatch.setattr(app_module, "TABS", [*app_module.TABS, ("recording", "Recording", RecordingPane)])
    app = EvopilotApp(fast_config(), home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        pane = app.query_one(RecordingPane)
        assert pane.seen == ["engine_ready"]
        app.action_show_tab("recording")
        await until(pilot, lambda: "shown" in pane.seen, what="the tab shown")
        job = await app.call(app.engine.submit, "echo hello; sleep 0.3; echo bye")
        await until(pilot, lambda: ("jobs", job.id, "succeeded") in pane.seen, what="the job's end")
        assert ("jobs", job.id, "running") in pane.seen and ("log", job.id) in pane.seen
        assert ("host", "local", "connected") in pane.seen
        await app.call(app.engine.set_queue_paused, True)
        await until(pilot, lambda: ("queue", True) in pane.seen, what="the queue paused")
        # The panes that were there get the same messages.
        await until(pilot, lambda: "queue: PAUSED" in static_text(app, "#jobs-status"), what="jobs pane")
