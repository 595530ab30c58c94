"""The Textual app: tabs Projects, Tasks, Jobs, Archive, Hosts over one ``Engine``.

``EvopilotApp(config, home)`` opens the engine in ``on_mount``, subscribes to its events and
drives the job loop in the app's own event loop. Widgets never poll the database on timers: they
change when an event says so (a batch of events is handled at most once per frame, ~30/s).
Changes by other processes become events too: every poll interval the app asks the engine
(``publish_changes``: one ``PRAGMA data_version`` while nothing changed).

Each tab holds one ``Pane`` (``TABS``). The app knows panes only as panes: it awaits their
``engine_ready``, focuses them when shown, and posts each of them the typed messages of
``tui.messages`` made from the engine's events; adding a tab is adding a pane to ``TABS``.

Engine calls from key presses go through ``call``/``act``, which turn an ``EvopilotError`` into
a notification; the engine itself keeps its transactions from interleaving with the job loop's.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import BindingType
from textual.screen import Screen
from textual.widgets import TabbedContent, TabPane

from evopilot.core.config import Config
from evopilot.core.engine import Engine
from evopilot.core.errors import EvopilotError
from evopilot.tui import keymap, messages
from evopilot.tui.screens.archive import ArchivePane
from evopilot.tui.screens.help import HelpScreen
from evopilot.tui.screens.hosts import HostsPane
from evopilot.tui.screens.jobs import JobsPane
from evopilot.tui.screens.pane import Pane
from evopilot.tui.screens.projects import ProjectsPane
from evopilot.tui.screens.tasks import TasksPane
from evopilot.tui.widgets.job_table import Clock, utc_now
from evopilot.tui.widgets.key_bar import KeyBar

FRAME = 1 / 30
"""Events are handled in batches at most this often."""

TABS: list[tuple[str, str, Callable[[], Pane]]] = [
    ("projects", "Projects", lambda: ProjectsPane(id="projects-pane")),
    ("tasks", "Tasks", lambda: TasksPane(id="tasks-pane")),
    ("jobs", "Jobs", lambda: JobsPane(id="jobs-pane")),
    ("archive", "Archive", lambda: ArchivePane(id="archive-pane")),
    ("hosts", "Hosts", lambda: HostsPane(id="hosts-pane")),
]
"""(tab id, title, the pane it shows), in order; the first tab is shown first."""

SCOPE_TITLES = {"app": "App", "projects": "Projects", "tasks": "Tasks", "jobs": "Jobs", "archive": "Archive",
                "hosts": "Hosts", "log": "Log"}


class EvopilotApp(App):
    CSS_PATH = str(Path(__file__).with_name("app.tcss"))  # absolute: subclasses live elsewhere
    TITLE = "evopilot"
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.APP)

    def __init__(self, config: Config, home: Path, *, clock: Clock = utc_now,
                 engine_loop: bool = True) -> None:
        """``clock`` gives "now" for elapsed times (tests freeze it); ``engine_loop=False``
        shows the database without starting, monitoring or reconciling jobs (snapshots)."""
        super().__init__()
        self.config = config
        self.home = Path(home)
        self.clock = clock
        self.engine: Engine | None = None
        self.key_overrides = dict(config.keys)  # checked by the config (core.bindings)
        self._run_loop = engine_loop
        self._events: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self.ready = asyncio.Event()
        """Set once the engine is open and every tab has its first data."""
        self.loop_errors = 0

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with TabbedContent(initial=TABS[0][0], id="tabs"):
            for tab, title, make in TABS:
                with TabPane(title, id=tab):
                    yield make()
        yield KeyBar()

    def _pane(self, tab: str) -> Pane:
        return self.query_one(f"TabPane#{tab}", TabPane).query_one(Pane)

    # The panes by name, for tests and scripts (the app itself addresses them only as panes).

    @property
    def projects(self) -> ProjectsPane:
        return self.query_one(ProjectsPane)

    @property
    def tasks(self) -> TasksPane:
        return self.query_one(TasksPane)

    @property
    def jobs(self) -> JobsPane:
        return self.query_one(JobsPane)

    @property
    def archive(self) -> ArchivePane:
        return self.query_one(ArchivePane)

    @property
    def hosts(self) -> HostsPane:
        return self.query_one(HostsPane)

    # -- lifecycle -------------------------------------------------------------------------

    async def on_mount(self) -> None:
        if self.key_overrides:
            self.set_keymap(self.key_overrides)
        self._pane(TABS[0][0]).focus_default()
        try:
            self.engine = await Engine.open(self.config, self.home)
        except EvopilotError as e:
            self.exit(return_code=e.exit_code, message=f"evopilot: error: {e.message}")
            return
        self._events = self.engine.subscribe()
        self._spawn(self._consume_events())
        await self.engine.publish_changes()  # the baseline: changes after it are shown
        self._spawn(self._watch_others())
        self.run_worker(self._first_load(), group="first-load")

    async def _first_load(self) -> None:
        engine = self.engine
        assert engine is not None
        await asyncio.gather(*(pane.engine_ready() for pane in self.query(Pane)))
        has_jobs = await engine.jobs(limit=1, newest_first=True, reconcile=False)
        if has_jobs and self.query_one(TabbedContent).active == TABS[0][0]:
            self.action_show_tab("jobs")  # there is work: start where it shows
        if self._run_loop:
            self._spawn(self._engine_loop())
            self._spawn(engine.adopt_experiments(asyncio.Event()))  # detached experiments run here
        # Everything built so far lives as long as the app: keep it out of the cyclic GC, whose
        # full collections otherwise stall frames by ~30-110 ms (see bench/RESULTS.md, log view).
        gc.freeze()
        self.ready.set()

    def _spawn(self, coro: Coroutine) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def on_unmount(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        if self.engine is not None:
            if self._events is not None:
                self.engine.unsubscribe(self._events)
            await self.engine.close()
            self.engine = None

    async def _engine_loop(self) -> None:
        """The engine's job loop, in the app's event loop; a failing tick is shown, not fatal."""
        assert self.engine is not None
        await self.engine.run_forever(on_error=self._loop_error)

    async def _watch_others(self) -> None:
        """Every poll interval, show what other processes (the CLI, another worker) changed:
        their changes come as engine events, like this process's own."""
        assert self.engine is not None
        while True:
            await asyncio.sleep(self.config.engine.poll_interval)
            try:
                await self.engine.publish_changes()
            except Exception as e:  # noqa: BLE001 - a locked database now is not fatal
                self._loop_error(e)

    def _loop_error(self, e: Exception) -> None:
        self.loop_errors += 1
        if self.loop_errors in (1, 10) or self.loop_errors % 100 == 0:
            self.notify(f"job loop: {e}", severity="error", timeout=10)

    async def _consume_events(self) -> None:
        q = self._events
        assert q is not None
        while True:
            batch = [await q.get()]
            while not q.empty() and len(batch) < 10_000:
                batch.append(q.get_nowait())
            try:
                self._handle(batch)
            except Exception as e:  # noqa: BLE001 - one bad event must not stop the stream
                self.notify(f"cannot show an update: {type(e).__name__}: {e}", severity="error")
            await asyncio.sleep(FRAME)

    def _handle(self, batch: Iterable) -> None:
        """One frame's events, as messages to every pane."""
        posted = messages.from_events(batch)
        for pane in self.query(Pane):
            for message in posted:
                pane.post_message(message)

    # -- engine calls ----------------------------------------------------------------------

    async def call(self, fn: Callable[..., Awaitable[Any]], *args, **kwargs) -> Any:
        """Await an engine method (once the engine is open)."""
        if self.engine is None:
            raise EvopilotError("the database is not open yet")
        return await fn(*args, **kwargs)

    def act(self, coro: Coroutine, on_error: Callable[[str], None] | None = None) -> None:
        """Run ``coro`` in a worker; an ``EvopilotError`` becomes a notification."""

        async def run() -> None:
            try:
                await coro
            except EvopilotError as e:
                self.notify(e.message, severity="error", timeout=8)
                if on_error:
                    on_error(e.message)
            except Exception as e:  # noqa: BLE001 - an unexpected error is shown, not fatal
                msg = f"{type(e).__name__}: {e}"
                self.notify(msg, severity="error", timeout=8)
                if on_error:
                    on_error(msg)

        self.run_worker(run(), group="actions")

    # -- actions ---------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self._pane(tab).focus_default()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.query_one(Pane)
        pane.focus_default()
        if self.ready.is_set():
            pane.post_message(messages.TabShown())

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.key_overrides))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every active binding is also a command (title: what it does; help: id and key)."""
        seen = set()
        specs = keymap.by_id()
        for active in screen.active_bindings.values():
            b = active.binding
            if not b.id or b.id in seen or not active.enabled:
                continue
            seen.add(b.id)
            scope = SCOPE_TITLES.get(b.id.split(".", 1)[0], "")
            spec = specs.get(b.id)
            yield SystemCommand(
                f"{scope}: {b.description}" if scope else b.description,
                f"{spec.long if spec else b.description} · {b.id} · key {self.get_key_display(b)}",
                lambda action=b.action, node=active.node: self.call_later(self.run_action, action, node),
            )
        yield from super().get_system_commands(screen)
