"""The Projects tab: projects and their benchmarks in a tree; select benchmarks and queue them.

Keys (ids ``projects.*``, see ``tui.keymap``): add a project, add benchmarks, space selects a
benchmark (on a project: all of its benchmarks), ``r`` queues the selection (or the highlighted
benchmark) on the target host, ``h`` cycles the target host, ``x`` removes a project.

The right side shows the highlighted item and the dependency tree of the highlighted benchmark
(``Engine.deps_tree``; the analysis runs in a thread, cached by file content). Projects have no
events (another process may add one): the pane re-reads them each time its tab is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from evopilot.core.errors import EvopilotError
from evopilot.core.models import Benchmark, Project
from evopilot.tui import keymap
from evopilot.tui.messages import StoreChanged, TabShown
from evopilot.tui.screens.dialogs import AddBenchmarkDialog, AddProjectDialog, ConfirmDialog, RunDialog
from evopilot.tui.screens.pane import Pane

NO_PROJECTS = ["No projects: press a to add one,", "or try the bundled example:", "run `evopilot demo` in a shell"]
"""The empty tree's lines (short: the tree is half of 80 columns and does not wrap)."""


class ProjectTree(Tree):
    """The tree carries the pane's bindings so that they win over Tree's own (space, enter)."""

    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.PROJECTS)

    def __init__(self, pane: ProjectsPane) -> None:
        super().__init__("projects", id="project-tree")
        self.show_root = False
        self.guide_depth = 3
        self._pane = pane

    def action_add_project(self) -> None:
        self._pane.add_project()

    def action_add_benchmark(self) -> None:
        self._pane.add_benchmark()

    def action_toggle(self) -> None:
        self._pane.toggle()

    def action_run(self) -> None:
        self._pane.run_selected()

    def action_cycle_host(self) -> None:
        self._pane.cycle_host()

    def action_remove_project(self) -> None:
        self._pane.remove_project()


class ProjectsPane(Pane):
    DEFAULT_CSS = """
    ProjectsPane #projects-head { height: 1; padding: 0 1; text-style: bold; }
    ProjectsPane #projects-body { height: 1fr; }
    ProjectsPane #project-tree { width: 1fr; border: round $foreground 30%; }
    ProjectsPane #project-tree:focus { border: round $accent; }
    ProjectsPane #project-side { width: 1fr; }
    ProjectsPane #project-info { height: auto; padding: 0 1; }
    ProjectsPane #deps-box { height: 1fr; border: round $foreground 30%; border-title-align: left; }
    ProjectsPane #deps { padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.projects: list[Project] = []
        self.benchmarks: dict[int, list[Benchmark]] = {}
        self.selected: set[tuple[str, str]] = set()
        """(project name, benchmark path) of the benchmarks chosen with space."""
        self.host_index = 0
        self._loaded = False

    @property
    def tree(self) -> ProjectTree:
        return self.query_one(ProjectTree)

    @property
    def host(self) -> str:
        names = self.evo.config.host_names()
        return names[self.host_index % len(names)]

    def compose(self) -> ComposeResult:
        yield Static("", id="projects-head", markup=False)
        with Horizontal(id="projects-body"):
            yield ProjectTree(self)
            with Vertical(id="project-side"):
                yield Static("", id="project-info", markup=False)
                box = VerticalScroll(id="deps-box")
                box.border_title = "dependencies"
                with box:
                    yield Static("", id="deps", markup=False)

    def on_mount(self) -> None:
        self._update_head()

    def focus_default(self) -> None:
        self.tree.focus()

    async def engine_ready(self) -> None:
        await self.load()

    def on_tab_shown(self, message: TabShown) -> None:
        self.run_worker(self.load(), group="projects-load", exclusive=True)

    def on_store_changed(self, message: StoreChanged) -> None:
        if message.projects:  # added, removed or given benchmarks by another process
            self.run_worker(self.load(), group="projects-load", exclusive=True)

    # -- data ----------------------------------------------------------------------------

    async def load(self) -> None:
        engine = self.evo.engine
        if engine is None:
            return
        projects = await engine.list_projects()
        benches = await engine.list_benchmarks()
        by_project: dict[int, list[Benchmark]] = {p.id: [] for p in projects}
        for b in benches:
            by_project.setdefault(b.project_id, []).append(b)
        if self._loaded and projects == self.projects and by_project == self.benchmarks:
            return  # nothing changed: keep the tree as it is
        self._loaded = True
        self.projects, self.benchmarks = projects, by_project
        names = {p.name for p in self.projects}
        paths = {(p.name, b.path) for p in self.projects for b in self.benchmarks[p.id]}
        self.selected &= paths
        self.selected = {s for s in self.selected if s[0] in names}
        self._rebuild()

    def _rebuild(self) -> None:
        tree = self.tree
        keep = self._node_key(tree.cursor_node)
        tree.clear()
        target_line = None
        for p in self.projects:
            benches = self.benchmarks.get(p.id, [])
            node = tree.root.add(self._project_label(p), data=("project", p), expand=True)
            if keep == ("project", p.name):
                target_line = node
            for b in benches:
                leaf = node.add_leaf(self._bench_label(p, b), data=("bench", p, b))
                if keep == ("bench", p.name, b.path):
                    target_line = leaf
        if not self.projects:
            for line in NO_PROJECTS:
                tree.root.add_leaf(Text(line), data=None)
        if target_line is not None:
            self.call_after_refresh(self._move_to, target_line)
        elif tree.cursor_line < 0:
            tree.cursor_line = 0
        self._update_head()
        self._show_highlighted(tree.cursor_node)

    def _move_to(self, node: TreeNode) -> None:
        if node.line >= 0:
            self.tree.move_cursor(node)

    @staticmethod
    def _node_key(node: TreeNode | None) -> tuple | None:
        if node is None or not node.data:
            return None
        if node.data[0] == "project":
            return ("project", node.data[1].name)
        return ("bench", node.data[1].name, node.data[2].path)

    def _project_label(self, p: Project) -> Text:
        n = len(self.benchmarks.get(p.id, []))
        return Text(f"{p.name}  ({n} benchmark{'s' if n != 1 else ''})")

    def _bench_label(self, p: Project, b: Benchmark) -> Text:
        mark = "[x]" if (p.name, b.path) in self.selected else "[ ]"
        return Text(f"{mark} {b.path}")

    def _update_head(self) -> None:
        n = len(self.selected)
        sel = f"{n} selected" if n else "space selects"
        self.query_one("#projects-head", Static).update(
            f"Projects: {len(self.projects)} · {sel} · r runs on host: {self.host} (h: change)"
        )

    # -- highlighted item ------------------------------------------------------------------

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        self._show_highlighted(event.node)

    def _show_highlighted(self, node: TreeNode | None) -> None:
        info = self.query_one("#project-info", Static)
        deps = self.query_one("#deps", Static)
        if node is None or not node.data:
            info.update("")
            deps.update("")
            return
        if node.data[0] == "project":
            p = node.data[1]
            n = len(self.benchmarks.get(p.id, []))
            info.update(f"{p.name}\n{p.path}\npython {p.python_version} · {n} benchmark(s)")
            deps.update("highlight a benchmark to see what it imports")
            return
        _, p, b = node.data
        info.update(f"{b.path} in {p.name}\n{Path(p.path) / b.path}")
        deps.update("analysing…")
        self._analyse(p, b)

    @work(exclusive=True, group="deps", exit_on_error=False)
    async def _analyse(self, project: Project, bench: Benchmark) -> None:
        try:
            text = "\n".join(await self.evo.call(self.evo.engine.deps_tree, project.name, bench.path))
        except EvopilotError as e:
            text = f"cannot analyse: {e.message}"
        except Exception as e:  # noqa: BLE001 - a failed analysis must not take the app down
            text = f"cannot analyse: {type(e).__name__}: {e}"
        node = self.tree.cursor_node
        if node is not None and node.data and node.data[0] == "bench":
            _, p, b = node.data
            if p.path == project.path and b.path == bench.path:
                self.query_one("#deps", Static).update(text)

    # -- actions ---------------------------------------------------------------------------

    def _current_project(self) -> Project | None:
        node = self.tree.cursor_node
        if node is not None and node.data:
            return node.data[1]
        return self.projects[0] if len(self.projects) == 1 else None

    def add_project(self) -> None:
        async def submit(path: str, name: str | None, python: str | None):
            project, benches = await self.evo.call(self.evo.engine.add_project, path, name, python)
            return project, benches

        def done(result) -> None:
            if result:
                project, benches = result
                self.evo.notify(f"added project {project.name} with {len(benches)} benchmark(s)")
                self.run_worker(self._reload_and_select(("project", project.name)))

        self.app.push_screen(AddProjectDialog(submit, self.evo.config.projects.default_python), done)

    async def _reload_and_select(self, key: tuple) -> None:
        await self.load()
        for node in self._walk():
            if self._node_key(node) == key:
                self.call_after_refresh(self._move_to, node)

    def _walk(self):
        for p in self.tree.root.children:
            yield p
            yield from p.children

    def add_benchmark(self) -> None:
        project = self._current_project()
        if project is None:
            self.app.notify("highlight a project first (a adds one)", severity="warning")
            return

        async def submit(files: list[str]):
            return await self.evo.call(self.evo.engine.add_benchmarks, project.name, files)

        def done(result) -> None:
            if result:
                self.app.notify(f"added {', '.join(b.path for b in result)} to {project.name}")
                self.run_worker(self.load())

        self.app.push_screen(AddBenchmarkDialog(project.name, Path(project.path), submit), done)

    def toggle(self) -> None:
        node = self.tree.cursor_node
        if node is None or not node.data:
            return
        if node.data[0] == "project":
            p = node.data[1]
            keys = {(p.name, b.path) for b in self.benchmarks.get(p.id, [])}
            if keys <= self.selected:
                self.selected -= keys
            else:
                self.selected |= keys
            for child in node.children:
                _, cp, cb = child.data
                child.set_label(self._bench_label(cp, cb))
        else:
            _, p, b = node.data
            self.selected ^= {(p.name, b.path)}
            node.set_label(self._bench_label(p, b))
            self.tree.action_cursor_down()
        self._update_head()

    def cycle_host(self) -> None:
        self.host_index = (self.host_index + 1) % len(self.evo.config.host_names())
        self._update_head()

    def run_selected(self) -> None:
        chosen: dict[str, list[str]] = {}
        if self.selected:
            for project, path in sorted(self.selected):
                chosen.setdefault(project, []).append(path)
        else:
            node = self.tree.cursor_node
            if node is None or not node.data or node.data[0] != "bench":
                self.app.notify("select benchmarks with space (or highlight one), then r",
                                severity="warning")
                return
            _, p, b = node.data
            chosen[p.name] = [b.path]
        count = sum(len(paths) for paths in chosen.values())
        what = (f"{count} benchmarks" if count > 1 else
                f"{next(iter(chosen))} {next(iter(chosen.values()))[0]}")

        async def submit(**options) -> tuple[int, str]:
            total = 0
            for project, paths in chosen.items():
                jobs = await self.evo.call(self.evo.engine.run, project, paths, **options)
                total += len(jobs)
            return total, options["host"]

        def done(result: tuple[int, str] | None) -> None:
            if result:
                self.selected.clear()
                self._rebuild()
                self.app.notify(f"queued {result[0]} job(s) on {result[1]}")

        self.app.push_screen(RunDialog(what, self.host, self.evo.config.host_names(), submit), done)

    def remove_project(self) -> None:
        project = self._current_project()
        if project is None:
            self.app.notify("highlight a project to remove", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                async def go() -> None:
                    await self.evo.call(self.evo.engine.remove_project, project.name)
                    self.app.notify(f"removed project {project.name} (its jobs are kept)")
                    await self.load()

                self.evo.act(go())

        self.app.push_screen(
            ConfirmDialog(f"Remove project {project.name}?\n{project.path}\n"
                          "Its benchmarks are forgotten; its jobs and files are kept."), done)
