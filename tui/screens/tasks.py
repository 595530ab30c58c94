"""The Tasks tab: the kanban of tasks, the selected task's attempt (state, tests, cost), and
below it the attempt's live agent log, its diff (a page at a time) or its sweep's table.

Everything comes from ``engine.tasks`` (core/tasks/service.py): ``board`` (redrawn without
reconciling: the app's job loop runs the attempts' end handlers), ``session_job`` (whose log
the LogView follows), ``diff`` (a byte stream the DiffView pages), ``sweep_status``, and the
actions ``move``, ``start``, ``followup``, ``attach_command``, ``test``, ``merge``,
``archive``.

Like the Archive tab it reads nothing before it is first shown, so the tasks service is not
loaded for nothing. Then a job of an attempt (``origin_kind == "attempt"``) changing re-reads
the board, at most once per ``READ_INTERVAL``; while the tab is hidden it only notes that the
board is stale and reads when shown.
"""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.widgets import ContentSwitcher, Static

from evopilot.core.errors import EvopilotError
from evopilot.core.models import TASK_STATUSES, Job
from evopilot.tui import keymap
from evopilot.tui.attach import attach
from evopilot.tui.messages import JobsChanged, LogGrew, TabShown, TasksChanged
from evopilot.tui.screens.dialogs import ConfirmDialog, LineDialog
from evopilot.tui.screens.pane import Pane
from evopilot.tui.widgets.diff_view import DiffView
from evopilot.tui.widgets.log_view import LogView
from evopilot.tui.widgets.task_board import TaskBoard

READ_INTERVAL = 0.3
"""Events of attempts' jobs re-read the board at most this often."""
EMPTY_TEXT = "no tasks: `evopilot task add PROJECT TITLE`, then s here starts an attempt"


def _tests(a: dict) -> str:
    if a["state"] == "testing":
        return "tests running"
    return {True: "tests passed ✓", False: "tests failed ✗", None: "tests not run"}[a["tests_passed"]]


def attempt_lines(task: dict, a: dict | None, info: dict | None = None) -> str:
    """The selected task and attempt: two to four lines. ``info`` (``engine.tasks.attempt``)
    adds what the board does not carry: a branch moved outside evopilot, the merge."""
    lines = [f"task {task['id']} · {task['title']} · {task['status']} · {task['project']}"]
    if a is None:
        return "\n".join([*lines, "no attempts: s starts one"])
    n = [x["id"] for x in task["attempts"]].index(a["id"]) + 1
    files = a["files_changed"] or 0
    lines += [f"attempt {a['id']} ({n} of {len(task['attempts'])}) · {a['agent']} · {a['state']}"
              f"{' (archived)' if a['archived'] else ''} · {a['branch']}",
              f"{_tests(a)} · {files} file{'s' if files != 1 else ''} +{a['lines_added'] or 0} "
              f"-{a['lines_removed'] or 0} · ${a['cost_usd']:.4f} · {a['tokens_in'] + a['tokens_out']:,} tokens"]
    merge = next((m for m in reversed(info["merges"]) if m["merge_commit"] or m["pr_url"]), None) if info else None
    if info and info["branch_problem"]:
        lines.append(f"branch: {info['branch_problem']}")
    elif a["stop_reason"]:
        lines.append(f"stopped: {a['stop_reason']}")
    elif a["error_message"]:
        lines.append(f"error: {a['error_message']}")
    elif merge:
        lines.append(f"merged into {merge['target_branch']} as {merge['merge_commit'][:12]}" if merge["merge_commit"]
                     else f"pull request {merge['pr_url']} ({merge['pr_state']})")
    return "\n".join(lines)


def sweep_text(s: dict) -> Text:
    """A sweep's table; the champion's row marked ★ (and bold)."""
    champ = f"attempt {s['champion']}" if s["champion"] else "none yet"
    text = Text(f"sweep {s['id']} · {s['state']} · champion: {champ}\n", no_wrap=True, overflow="crop")
    text.append(f"  {'attempt':>7} {'agent':<10} {'params':<16} {'state':<8} {'tests':<5} "
                f"{'lines':>5} {'cost':>8} {'time':>7}\n", "bold")
    for r in s["rows"]:
        params = ",".join(f"{k}={v}" for k, v in r["params"].items()) or "—"
        tests = {True: "pass", False: "fail", None: "—"}[r["tests_passed"]]
        line = (f"{'★' if r['champion'] else ' '} {r['attempt']:>7} {r['agent'][:10]:<10} {params[:16]:<16} "
                f"{r['state'][:8]:<8} {tests:<5} {r['lines_changed'] or 0:>5} ${r['cost_usd']:>7.4f} "
                f"{r['seconds']:>6.1f}s\n")
        text.append(line, "bold" if r["champion"] else "")
    return text


class TasksPane(Pane):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.TASKS)

    DEFAULT_CSS = """
    TasksPane #tasks-empty { padding: 1 2; }
    TasksPane TaskBoard { height: 2fr; min-height: 4; border: round $foreground 30%; }
    TasksPane TaskBoard:focus { border: round $accent; }
    TasksPane #task-detail { height: auto; max-height: 4; padding: 0 1; text-wrap: nowrap;
                             text-overflow: ellipsis; }
    TasksPane #task-views { height: 3fr; min-height: 5; }
    TasksPane #task-views > * { height: 1fr; }
    TasksPane DiffView, TasksPane #task-sweep { border: round $foreground 30%; }
    TasksPane DiffView:focus, TasksPane #task-sweep:focus { border: round $accent; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tasks: list[dict] = []
        self.selected_task: dict | None = None
        self.attempt: dict | None = None
        """The attempt shown (a ``public_attempt`` of the selected task)."""
        self._chosen: dict[int, int] = {}
        """Task id -> the attempt chosen with [ and ] (else its latest)."""
        self.view = "log"
        self.session: Job | None = None
        """The agent session job whose log is shown."""
        self.sweep: dict | None = None
        self._read_once = False
        self._stale = True
        self._pending = False
        self._lock = asyncio.Lock()
        self.info: dict | None = None
        """``engine.tasks.attempt`` of the attempt shown (branch problem, merges)."""
        self._shown_key: tuple | None = None
        """(attempt id, state, head, archived, view) of what the views show."""
        self._diff_key: tuple | None = None
        """(attempt id, head, archived) of the diff shown: what the diff is read from."""

    @property
    def board(self) -> TaskBoard:
        return self.query_one(TaskBoard)

    @property
    def log_view(self) -> LogView:
        return self.query_one("#task-log", LogView)

    @property
    def diff_view(self) -> DiffView:
        return self.query_one(DiffView)

    def compose(self) -> ComposeResult:
        yield Static("", id="tasks-empty", markup=False, classes="empty-state")
        yield TaskBoard(id="task-board")
        yield Static("", id="task-detail", markup=False)
        with ContentSwitcher(initial="task-log", id="task-views"):
            yield LogView(None, id="task-log")
            yield DiffView(id="task-diff")
            with VerticalScroll(id="task-sweep"):
                yield Static("", id="task-sweep-text", markup=False)

    def on_mount(self) -> None:
        self._show_empty(True, "")
        self._set_view_title()

    def _show_empty(self, empty: bool, text: str = EMPTY_TEXT) -> None:
        self.query_one("#tasks-empty", Static).update(text)
        self.query_one("#tasks-empty").display = empty
        for sel in ("#task-board", "#task-detail", "#task-views"):
            self.query_one(sel).display = not empty

    def focus_default(self) -> None:
        if self.board.display:
            self.board.focus()
        else:
            self.app.set_focus(None)

    # -- reading ---------------------------------------------------------------------------

    async def engine_ready(self) -> None:
        if self.shown:  # else the first showing reads: no tasks code at start
            await self.read()

    def on_tab_shown(self, message: TabShown) -> None:
        if self._stale:
            self._run(self.read())

    def on_jobs_changed(self, message: JobsChanged) -> None:
        # The session's status (the log's title); the attempts' own changes come as TasksChanged.
        if self.session is not None:
            for j in message.jobs:
                if j.id == self.session.id:
                    self._set_session(j)

    def on_tasks_changed(self, message: TasksChanged) -> None:
        self._stale = True
        if self.shown and self._read_once and not self._pending:
            self._pending = True
            self.set_timer(READ_INTERVAL, lambda: self._run(self.read()))

    def on_log_grew(self, message: LogGrew) -> None:
        if self.session is not None and message.job_id == self.session.id:
            if self.log_view.path is None and message.log_path:
                self._run(self._load_session())
            else:
                self.log_view.notify_grew()

    def _run(self, coro) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as e:  # noqa: BLE001 - a view that cannot be read says why
                msg = e.message if isinstance(e, EvopilotError) else f"{type(e).__name__}: {e}"
                self.app.notify(f"tasks: {msg}", severity="error", timeout=8)

        self.run_worker(guarded(), group="tasks-read")

    async def read(self) -> None:
        """The board again (the selection kept), then what the views show if it changed."""
        self._pending = False
        engine = self.evo.engine
        if engine is None:
            return
        async with self._lock:
            self._stale = False
            tasks = await engine.tasks.board(reconcile=False)
        self.tasks = tasks
        self._read_once = True
        was_empty = not self.board.display
        self._show_empty(not tasks)
        self.board.set_tasks(tasks)  # posts Selected: the detail and views follow
        if was_empty and tasks and self.shown and self.app.focused is None:
            self.board.focus()  # the first tasks: the keys are the board's

    @on(TaskBoard.Selected)
    def _selected(self, event: TaskBoard.Selected) -> None:
        self.selected_task = event.task
        self.attempt = self._attempt_of(self.selected_task)
        self._update_detail()
        self._sync_views()

    def _attempt_of(self, task: dict | None) -> dict | None:
        if task is None or not task["attempts"]:
            return None
        chosen = self._chosen.get(task["id"])
        return next((a for a in task["attempts"] if a["id"] == chosen), task["attempts"][-1])

    def _update_detail(self) -> None:
        a = self.attempt
        info = self.info if a is not None and self.info is not None and self.info["id"] == a["id"] else None
        text = "" if self.selected_task is None else attempt_lines(self.selected_task, a, info)
        self.query_one("#task-detail", Static).update(text)

    def _sync_views(self, *, force: bool = False) -> None:
        """Re-read what the attempt's state decides (its session, details) when the attempt or its
        state changed, or ``force``; the diff only when what it is read from changed (a state
        change alone, such as its tests ending, would throw the reader back to the first page);
        a sweep's table at every change (its other attempts move too)."""
        a = self.attempt
        key = None if a is None else (a["id"], a["state"], a["head"], a["archived"], self.view)
        same = key == self._shown_key and not force
        self._shown_key = key
        if same:
            if self.view == "sweep" and a is not None:
                self._run(self._load_sweep())
            return
        self._set_view_title()
        if a is None:
            self.session = None
            self.log_view.set_reader(None)
            self.diff_view.clear("no attempt")
            self._diff_key = None
            self.query_one("#task-sweep-text", Static).update("no attempt")
            return
        self._run(self._load_session())
        diff_key = (a["id"], a["head"], a["archived"])
        if self.view == "diff" and (force or diff_key != self._diff_key):
            self._diff_key = diff_key
            engine = self.evo.engine
            attempt_id = a["id"]
            self.diff_view.load(lambda: engine.tasks.diff(attempt_id))
        elif self.view == "sweep":
            self._run(self._load_sweep())

    async def _load_session(self) -> None:
        a = self.attempt
        engine = self.evo.engine
        if a is None or engine is None:
            return
        job = await engine.tasks.session_job(a["id"])
        try:
            info = await engine.tasks.attempt(a["id"])
        except EvopilotError as e:  # e.g. the project's directory is no longer a repository
            info = {"id": a["id"], "branch_problem": f"cannot check it: {e.message}", "merges": []}
        if self.attempt is None or self.attempt["id"] != a["id"]:
            return  # the selection moved on meanwhile
        self.info = info
        self._set_session(job)
        self._update_detail()

    def _set_session(self, job: Job | None) -> None:
        self.session = job
        path = job.log_path if job is not None else None
        if path != self.log_view.path:
            engine = self.evo.engine
            self.log_view.set_reader(engine.log_reader(job) if path and engine else None)
        self._set_view_title()

    async def _load_sweep(self) -> None:
        task, a = self.selected_task, self.attempt
        engine = self.evo.engine
        text = self.query_one("#task-sweep-text", Static)
        sweep_id = a["sweep_id"] if a else None
        if sweep_id is None and task is not None:  # the task's latest sweep
            sweep_id = next((x["sweep_id"] for x in reversed(task["attempts"]) if x["sweep_id"]), None)
        if sweep_id is None or engine is None:
            self.sweep = None
            text.update("no sweep: `evopilot sweep TASK --agents a,b` starts one")
            return
        self.sweep = await engine.tasks.sweep_status(sweep_id, reconcile=False)
        text.update(sweep_text(self.sweep))

    def _set_view_title(self) -> None:
        prefix = f"attempt {self.attempt['id']}: " if self.attempt is not None else ""
        log = "agent log"
        if self.session is not None:
            log += f" · job {self.session.id} · {self.session.status.value}"
        self.log_view.border_title = prefix + log
        self.diff_view.border_title = prefix + "diff"
        self.query_one("#task-sweep").border_title = prefix + "sweep"

    # -- actions ---------------------------------------------------------------------------

    def _need_attempt(self) -> dict | None:
        if self.attempt is None:
            self.app.notify("no attempt selected" if self.selected_task else "no task selected", severity="warning")
        return self.attempt

    def action_view(self, view: str) -> None:
        views = self.query_one("#task-views", ContentSwitcher)
        widget = {"log": self.log_view, "diff": self.diff_view,
                  "sweep": self.query_one("#task-sweep")}[view]
        if self.view == view and views.has_focus_within:
            self.board.focus()  # the same key again: back to the board
            return
        if self.view == "diff" and view != "diff":
            self.diff_view.clear()  # git is not kept waiting for a page nobody reads
        self.view = view
        views.current = f"task-{view}"
        self._sync_views(force=True)  # shown again: read again (an agent at work changes its diff)
        widget.focus()

    def action_attempt(self, step: int) -> None:
        task = self.selected_task
        if task is None or len(task["attempts"]) < 2:
            self.app.notify("this task has one attempt or none")
            return
        ids = [a["id"] for a in task["attempts"]]
        current = ids.index(self.attempt["id"]) if self.attempt else len(ids) - 1
        self._chosen[task["id"]] = ids[(current + step) % len(ids)]
        self.attempt = self._attempt_of(task)
        self._update_detail()
        self._sync_views()

    @on(TaskBoard.MoveTask)
    def _move_task(self, event: TaskBoard.MoveTask) -> None:
        task = event.task
        status = TASK_STATUSES[TASK_STATUSES.index(task["status"]) + event.step]

        async def go() -> None:
            await self.evo.call(self.evo.engine.tasks.move, task["id"], status)
            await self.read()

        self.evo.act(go())

    def action_attach(self) -> None:
        a = self._need_attempt()
        if a is None:
            return

        async def go() -> None:
            await attach(self.app, await self.evo.call(self.evo.engine.tasks.attach_command, a["id"],
                                                       inside_tmux=bool(os.environ.get("TMUX"))))

        self.evo.act(go())

    def action_followup(self) -> None:
        a = self._need_attempt()
        if a is None:
            return
        engine = self.evo.engine
        result: dict = {}

        async def submit(text: str) -> None:
            result.update(await self.evo.call(engine.tasks.followup, a["id"], text))

        def done(text: str | None) -> None:
            if text is None:
                return
            how = "typed into its live session" if result.get("typed") else f"a new session (job {result.get('job')})"
            self.app.notify(f"attempt {a['id']}: follow-up sent, {how}")
            self._run(self.read())

        self.app.push_screen(LineDialog(
            f"Follow-up for attempt {a['id']} ({a['agent']})", submit, placeholder="what the agent should do next",
            hint="Enter: send (typed into a live session, else a new one) · Esc: cancel"), done)

    def action_test(self) -> None:
        a = self._need_attempt()
        if a is None:
            return

        async def go() -> None:
            job = await self.evo.call(self.evo.engine.tasks.test, a["id"])
            self.app.notify(f"attempt {a['id']}: tests queued (job {job.id})")
            await self.read()

        self.evo.act(go())

    def action_merge(self) -> None:
        a = self._need_attempt()
        if a is None:
            return

        async def go() -> None:
            r = await self.evo.call(self.evo.engine.tasks.merge, a["id"])
            if r["merged"]:
                self.app.notify(f"attempt {a['id']}: merged into {r['target_branch']} ({r['commit'][:12]})")
            else:
                self.app.notify(f"attempt {a['id']}: not merged, conflicts in {', '.join(r['conflicts'])}; "
                                f"{r['target_branch']} and the worktree are unchanged", severity="error", timeout=15)
            await self.read()

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.evo.act(go())

        self.app.push_screen(ConfirmDialog(
            f"Merge attempt {a['id']} ({a['branch']}) into {a['target_branch']}?"), confirmed)

    def action_archive(self) -> None:
        a = self._need_attempt()
        if a is None:
            return

        async def go() -> None:
            await self.evo.call(self.evo.engine.tasks.archive, a["id"])
            self.app.notify(f"attempt {a['id']}: archived (its branch {a['branch']} stays)")
            await self.read()

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.evo.act(go())

        self.app.push_screen(ConfirmDialog(
            f"Archive attempt {a['id']}? Its worktree {a['worktree']} is removed (never with uncommitted "
            f"work); its branch {a['branch']} stays."), confirmed)

    def action_start(self) -> None:
        task = self.selected_task
        if task is None:
            self.app.notify("no task selected", severity="warning")
            return
        engine = self.evo.engine
        agents = list(self.evo.config.agents)

        async def submit(agent: str) -> None:
            await self.evo.call(engine.tasks.start, task["id"], agent.strip())

        def done(agent: str | None) -> None:
            if agent is not None:
                self._chosen.pop(task["id"], None)  # show the new (latest) attempt
                self.app.notify(f"task {task['id']}: attempt started with {agent.strip()}")
                self._run(self.read())

        self.app.push_screen(LineDialog(
            f"Start an attempt of task {task['id']} with the agent:", submit, value=agents[0] if agents else "",
            hint=f"agents: {', '.join(agents) or 'none ([agents.NAME] in config)'} · Enter: start · Esc: cancel"),
            done)
