"""The Jobs tab: a virtual table of every job (newest first), filters, actions, and the
selected job's log following live output.

Updates come from engine events only (as ``tui.messages``): ``JobsChanged`` for a job in the
table's window replaces that row in place; one that changes which rows match (a new job, a
status leaving the filter) asks the table to refetch its window, coalesced to one fetch at a
time. ``LogGrew`` for the selected job tells the LogView its log grew; the view reads the log
through ``Engine.log_reader``. A 1 s timer repaints running rows' elapsed time (no database
access).
"""

from __future__ import annotations

import os
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from evopilot.core import formatting
from evopilot.core.models import Job, JobStatus
from evopilot.tui import keymap
from evopilot.tui.attach import attach
from evopilot.tui.messages import JobsChanged, LogGrew, QueueChanged, StoreChanged, TabShown
from evopilot.tui.screens.compare import CompareScreen
from evopilot.tui.screens.dialogs import ConfirmDialog, SendDialog
from evopilot.tui.screens.pane import Pane
from evopilot.tui.widgets.job_table import JobTable
from evopilot.tui.widgets.log_view import LogLines, LogView

FINISHED_WORDS = ["succeeded", "failed", "cancelled", "killed", "lost"]
STATUS_FILTERS: list[tuple[str, list[str] | None]] = [
    ("all", None),
    ("active", ["pending", "queued", "running"]),
    ("running", ["running"]),
    ("queued", ["pending", "queued"]),
    ("finished", FINISHED_WORDS),
    ("failed", ["failed", "killed", "lost"]),
    ("succeeded", ["succeeded"]),
]


SORTS = ["id", "project", "benchmark", "host", "status"]
"""The table's orders (``o`` cycles): newest first, or by a column (then newest first)."""

EMPTY = "no jobs: queue benchmarks from the Projects tab (1, then r)"


class FindInput(Input):
    """The job table's text filter (``/``); Enter keeps it, Escape clears it."""

    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.JOB_FIND)

    def action_close_find(self) -> None:
        self.value = ""
        self.post_message(self.Submitted(self, ""))


class _Source:
    def __init__(self, pane: JobsPane) -> None:
        self.pane = pane

    async def count(self) -> int:
        engine = self.pane.evo.engine
        if engine is None:
            return 0
        f = self.pane.filters()
        return await engine.count_jobs(**f)

    async def fetch(self, offset: int, limit: int) -> list[Job]:
        engine = self.pane.evo.engine
        if engine is None:
            return []
        sort = SORTS[self.pane.sort_index]
        return await engine.jobs(limit=limit, offset=offset, newest_first=True, reconcile=False,
                                 sort=None if sort == "id" else sort, **self.pane.filters())


class JobsPane(Pane):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.JOBS)

    DEFAULT_CSS = """
    JobsPane #jobs-status { height: 1; padding: 0 1; }
    JobsPane JobTable { height: 1fr; min-height: 4; border: round $foreground 30%; }
    JobsPane JobTable:focus { border: round $accent; }
    JobsPane #job-detail { height: auto; max-height: 3; padding: 0 1; }
    JobsPane #job-full-box { display: none; height: 1fr; min-height: 5; border: round $foreground 30%; }
    JobsPane #job-full { padding: 0 1; }
    JobsPane.detail #job-full-box { display: block; }
    JobsPane.detail LogView { display: none; }
    JobsPane.detail #job-detail { display: none; }
    JobsPane #jobs-find { display: none; height: 1; border: none; padding: 0 1; }
    JobsPane #jobs-find.open { display: block; }
    JobsPane LogView { height: 1fr; min-height: 5; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.status_index = 0
        self.project_filter: str | None = None
        self.host_filter: str | None = None
        self.queue_paused = False
        self.selected: Job | None = None
        self.max_job_id = 0
        self.text_filter = ""
        self.sort_index = 0

    @property
    def table(self) -> JobTable:
        return self.query_one(JobTable)

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    def compose(self) -> ComposeResult:
        yield Static("", id="jobs-status", markup=False)
        yield FindInput(placeholder="find: project, benchmark, host, status or error text", id="jobs-find",
                        compact=True)
        yield JobTable(_Source(self), clock=self.evo.clock, empty_text=EMPTY)
        yield Static("", id="job-detail", markup=False)
        with VerticalScroll(id="job-full-box"):
            yield Static("", id="job-full", markup=False)
        yield LogView(None, id="job-log")

    def on_mount(self) -> None:
        self._update_status()
        self.set_interval(1.0, self._tick_clock)

    # -- filters -------------------------------------------------------------------------

    def filters(self) -> dict:
        return {"status": STATUS_FILTERS[self.status_index][1], "project": self.project_filter,
                "host": self.host_filter, "text": self.text_filter or None}

    def filtered(self) -> bool:
        return bool(self.status_index or self.project_filter or self.host_filter or self.text_filter)

    def matches(self, job: Job) -> bool:
        statuses = STATUS_FILTERS[self.status_index][1]
        if statuses is not None and job.status.value not in statuses:
            return False
        if self.project_filter is not None and job.project != self.project_filter:
            return False
        if self.host_filter is not None and job.host != self.host_filter:
            return False
        text = self.text_filter.lower()
        return not text or any(text in (v or "").lower() for v in (
            job.project, job.name, job.host, job.status.value, job.error_message))

    def _update_status(self) -> None:
        t = self.table if self.is_mounted else None
        count = t.count if t is not None else 0
        parts = [f"status: {STATUS_FILTERS[self.status_index][0]}",
                 f"project: {self.project_filter or 'all'}", f"host: {self.host_filter or 'all'}"]
        if self.text_filter:
            parts.append(f"find: {self.text_filter!r}")
        if self.sort_index:
            parts.append(f"sort: {SORTS[self.sort_index]}")
        marked = len(self.table.marked) if t is not None else 0
        queue = "queue: PAUSED (p resumes)" if self.queue_paused else "queue: running"
        self.query_one("#jobs-status", Static).update(
            f"{count:,} job{'s' if count != 1 else ''} · " + " · ".join(parts) + f" · {queue}"
            + (f" · marked: {marked} (C compares)" if marked else ""))
        if t is not None:
            # the truth when the table is empty: nothing yet, or a filter hides every job
            active = [p for p in parts if not p.endswith(": all")]
            t.empty_text = (f"no job matches the filter (Esc clears it): {', '.join(active)}"
                            if self.filtered() and self.max_job_id else EMPTY)

    async def action_cycle_filter(self, which: str) -> None:
        if which == "status":
            self.status_index = (self.status_index + 1) % len(STATUS_FILTERS)
        elif which == "project":
            names = [None] + [p.name for p in await self.evo.engine.list_projects()]
            i = names.index(self.project_filter) if self.project_filter in names else 0
            self.project_filter = names[(i + 1) % len(names)]
        elif which == "host":
            names = [None] + self.evo.config.host_names()
            i = names.index(self.host_filter) if self.host_filter in names else 0
            self.host_filter = names[(i + 1) % len(names)]
        self._filters_changed()

    def action_clear_filters(self) -> None:
        if self.filtered():
            self.status_index, self.project_filter, self.host_filter = 0, None, None
            self._set_find("")
            self._filters_changed()

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._filters_changed()
        self.app.notify(f"sorted by {SORTS[self.sort_index]}" + (" (newest first)" if not self.sort_index else ""))

    @on(JobTable.FindRequested)
    def _find(self, event: JobTable.FindRequested) -> None:
        find = self.query_one(FindInput)
        find.add_class("open")
        find.focus()

    def _set_find(self, text: str) -> None:
        find = self.query_one(FindInput)
        with find.prevent(Input.Changed):
            find.value = text
        find.set_class(bool(text), "open")
        self.text_filter = text

    @on(Input.Changed, "#jobs-find")
    def _find_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value.strip()
        self._filters_changed()

    @on(Input.Submitted, "#jobs-find")
    def _find_done(self, event: Input.Submitted) -> None:
        event.stop()
        self._set_find(event.value.strip())
        self._filters_changed()
        self.table.focus()

    def _filters_changed(self) -> None:
        self.table.cursor = 0
        self.table.scroll_to(y=0, animate=False, immediate=True)
        self.table.reload()
        self._update_status()

    # -- engine events ---------------------------------------------------------------------

    def focus_default(self) -> None:
        self.table.focus()

    async def engine_ready(self) -> None:
        engine = self.evo.engine
        assert engine is not None
        self.queue_paused = await engine.queue_paused()
        newest = await engine.jobs(limit=1, newest_first=True, reconcile=False)
        self.max_job_id = newest[0].id if newest else 0
        self.table.reload()
        self._update_status()

    def on_jobs_changed(self, message: JobsChanged) -> None:
        t = self.table
        need = arrived = False
        status_filtered = STATUS_FILTERS[self.status_index][1] is not None
        for job in message.jobs:
            new = job.id > self.max_job_id
            self.max_job_id = max(self.max_job_id, job.id)
            matches = self.matches(job)
            if t.holds(job.id):
                if matches:
                    t.update_job(job)
                else:
                    need = True  # it left the filter
            elif matches and (new or status_filtered):
                need = True  # a new row, or one that entered the filter
                arrived |= new
        if self.sort_index and message.status_changed:
            need = True  # rows may move (sorted by status)
        if need:
            # New jobs come into view with the cursor on them, unless the user is reading an
            # older job here (the cursor moved off the newest row while this tab is shown).
            follow = arrived and not self.sort_index and (t.cursor == 0 or not self.shown)
            t.reload(to_top=follow)

    def on_log_grew(self, message: LogGrew) -> None:
        sel = self.selected
        if sel is not None and sel.id == message.job_id:
            # A log that just got its path is opened by the row's update (Highlighted).
            self.log_view.notify_grew()

    def on_tab_shown(self, message: TabShown) -> None:
        self.table.scroll_to_cursor()

    def on_store_changed(self, message: StoreChanged) -> None:
        if message.jobs_removed:  # another process removed jobs (clean, a project's removal)
            self.table.reload()

    def on_queue_changed(self, message: QueueChanged) -> None:
        self._show_queue(message.paused)

    def _show_queue(self, paused: bool) -> None:
        self.queue_paused = paused
        self._update_status()

    @on(JobTable.Reloaded)
    def _reloaded(self, event: JobTable.Reloaded) -> None:
        self._update_status()

    @on(JobTable.Highlighted)
    def _highlighted(self, event: JobTable.Highlighted) -> None:
        job = event.job
        self.selected = job
        path = job.log_path if job is not None else None
        if path != self.log_view.path:
            engine = self.evo.engine
            self.log_view.set_reader(engine.log_reader(job) if path and engine else None)
        self._update_status()
        self._update_detail()

    def _update_detail(self) -> None:
        job = self.selected
        text = "" if job is None else formatting.job_detail(job, self.evo.clock())
        self.query_one("#job-detail", Static).update(text)
        if self.has_class("detail"):
            self._update_full()

    def _update_full(self) -> None:
        """The detail view of the selected job, with its benchmark's metric history."""
        job = self.selected
        if job is None:
            self.query_one("#job-full", Static).update("no job selected")
            return

        async def go() -> None:
            history = await self.evo.call(self.evo.engine.metric_history, job.id) if job.metrics else {}
            if self.selected is not None and self.selected.id == job.id:
                lines = formatting.job_full_detail(self.selected, self.evo.clock(), history)
                self.query_one("#job-full", Static).update("\n".join(lines))

        self.evo.act(go())

    def action_mark(self) -> None:
        job = self._job()
        if job is None:
            return
        self.table.marked ^= {job.id}
        self.table.refresh_job(job.id)
        self.table.move_cursor(self.table.cursor + 1)  # mark the next one with the next m
        self._update_status()

    def action_compare(self) -> None:
        ids = sorted(self.table.marked)
        if len(ids) < 2:
            self.app.notify("mark two jobs or more with m, then C", severity="warning")
            return

        async def go() -> None:
            jobs = [await self.evo.call(self.evo.engine.job, i) for i in ids]
            self.app.push_screen(CompareScreen(jobs))

        self.evo.act(go())

    def action_toggle_detail(self) -> None:
        self.toggle_class("detail")
        if self.has_class("detail"):
            self._update_full()

    def _tick_clock(self) -> None:
        """Once a second: repaint elapsed times of running jobs (no database access)."""
        if self.evo.engine is None or not self.shown:  # another tab is shown
            return
        if self.table.has_running_visible():
            self.table.refresh()
        if self.selected is not None and self.selected.status == JobStatus.RUNNING:
            self._update_detail()

    # -- actions ---------------------------------------------------------------------------

    def _job(self) -> Job | None:
        job = self.table.current
        if job is None:
            self.app.notify("no job selected", severity="warning")
        return job

    def _do(self, method: str, *args, done: str | None = None) -> None:
        job = self._job()
        if job is None:
            return

        async def go() -> None:
            result = await self.evo.call(getattr(self.evo.engine, method), job.id, *args)
            if done:
                self.app.notify(done.format(id=job.id, new=getattr(result, "id", "")))

        self.evo.act(go())

    def action_stop(self) -> None:
        self._do("stop", done="job {id}: stop requested (SIGINT)")

    def action_kill(self) -> None:
        job = self._job()
        if job is None:
            return
        if job.status != JobStatus.RUNNING:
            self.app.notify(f"cannot kill job {job.id}: it is {job.status.value}", severity="error")
            return

        def done(yes: bool | None) -> None:
            if yes:
                async def go() -> None:
                    await self.evo.call(self.evo.engine.kill, job.id)
                    self.app.notify(f"job {job.id}: killed")

                self.evo.act(go())

        self.app.push_screen(ConfirmDialog(
            f"Kill job {job.id} ({job.name} on {job.host})?\n"
            "SIGTERM to its process group, SIGKILL after the grace period."), done)

    def action_cancel(self) -> None:
        self._do("cancel", done="job {id}: cancelled")

    def action_retry(self) -> None:
        self._do("retry", done="job {id}: retried as job {new}")

    def action_attach(self) -> None:
        job = self._job()
        if job is None:
            return

        async def go() -> None:
            await attach(self.app, await self.evo.call(self.evo.engine.attach_command, job.id,
                                                       inside_tmux=bool(os.environ.get("TMUX"))))

        self.evo.act(go())

    def action_send(self) -> None:
        job = self._job()
        if job is None:
            return

        async def go() -> None:
            await self.evo.call(self.evo.engine.interactive_job, job.id)  # or say why not, now

            async def submit(text: str) -> None:
                await self.evo.call(self.evo.engine.send, job.id, text)

            def sent(text: str | None) -> None:
                if text is not None:
                    self.app.notify(f"job {job.id}: sent {text!r}")

            self.app.push_screen(SendDialog(job, submit), sent)

        self.evo.act(go())

    def action_move(self, where: str) -> None:
        job = self._job()
        if job is None:
            return

        async def go() -> None:  # say where it went, as `evopilot queue front|…` does
            engine = self.evo.engine
            await self.evo.call(engine.move, job.id, where)
            places = await self.evo.call(engine.queue_positions)
            self.app.notify(f"job {job.id}: moved {where}, now #{places[job.id]} of {len(places)} in the queue"
                            if job.id in places else f"job {job.id}: moved {where}")

        self.evo.act(go())

    def action_toggle_pause(self) -> None:
        paused = not self.queue_paused

        async def go() -> None:
            await self.evo.call(self.evo.engine.set_queue_paused, paused)
            self._show_queue(paused)
            self.app.notify("queue paused: running jobs go on, queued ones wait" if paused
                            else "queue resumed")

        self.evo.act(go())

    @on(LogLines.Back)
    def _log_back(self, event: LogLines.Back) -> None:
        self.table.focus()

    def action_toggle_log(self) -> None:
        """Between the table and what is under it: the log, or the detail view when shown."""
        if self.table.has_focus:
            if self.has_class("detail"):
                self.query_one("#job-full-box").focus()
            else:
                self.log_view.focus()
        else:
            self.table.focus()
