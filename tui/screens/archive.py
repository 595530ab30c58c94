"""The Archive tab: an evolution experiment's islands as heatmaps, their curves, and the
selected cell's commit, metrics and diff against its parent.

Everything comes from ``engine.evolution``: ``list`` (the experiments, the newest shown
first), ``status`` (state, iterations, what is in flight), ``archive`` (the curves' history),
``cells`` (one island's grid) and ``show`` (a cell's commit, its diff capped at ``DIFF_LIMIT``).

It follows a run live. A loop in this process says so with ``EvolutionChanged``: the view is
re-read, at most once per ``READ_INTERVAL``. A loop in another process is seen by polling
``evolution.stamp`` (a few timestamps) every ``POLL_INTERVAL`` while the tab is shown and
re-reading only when it changed. Nothing is read before the tab is first shown, and with no
experiment at all only ``has_experiments`` is asked, so the evolution code (numpy) is not
loaded for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from evopilot.core import formatting
from evopilot.core.errors import EvopilotError
from evopilot.core.formatting import Cell, axis_pairs, project
from evopilot.tui import keymap
from evopilot.tui.messages import EvolutionChanged, TabShown
from evopilot.tui.screens.dialogs import LineDialog
from evopilot.tui.screens.pane import Pane
from evopilot.tui.widgets.curves import Curves
from evopilot.tui.widgets.diff_view import diff_text
from evopilot.tui.widgets.heatmap import Heatmap

POLL_INTERVAL = 1.5
"""Seconds between checks for changes made by other processes, while the tab is shown."""
READ_INTERVAL = 0.5
"""A running loop in this process re-reads the view at most this often."""
DIFF_LIMIT = 64 * 1024
"""Bytes of a cell's diff read from git; the rest is left to `evopilot evolve show`."""

EMPTY_TEXT = "no experiments: `evopilot evolve start FILE` (see examples/evolve)"
IN_FLIGHT = ("planned", "mutated", "evaluating", "evaluated")
"""Iteration statuses between planned and applied to the archive, in that order."""


def _message(e: Exception) -> str:
    return e.message if isinstance(e, EvopilotError) else f"{type(e).__name__}: {e}"


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.6g}"


class ArchivePane(Pane):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.ARCHIVE)

    DEFAULT_CSS = """
    ArchivePane #archive-empty { padding: 1 2; }
    ArchivePane #archive-head { height: auto; max-height: 4; padding: 0 1; }
    ArchivePane #archive-body { height: 1fr; }
    ArchivePane Heatmap { border: round $foreground 30%; }
    ArchivePane Heatmap:focus { border: round $accent; }
    ArchivePane #archive-side { width: 1fr; }
    ArchivePane Curves { padding: 0 1; }
    ArchivePane #archive-cell { height: auto; max-height: 6; padding: 0 1; }
    ArchivePane #archive-diff { height: 1fr; min-height: 3; border: round $foreground 30%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.experiments: list[dict] = []
        self.experiment_id: int | None = None
        self.island = 0
        self.pair = 0
        """Index into ``axis_pairs``: the descriptors on the axes."""
        self.status: dict | None = None
        self.history: list[dict] = []
        self.view: dict | None = None
        """``evolution.cells`` of the island shown."""
        self.detail: dict | None = None
        """``evolution.show`` of the cell under the cursor."""
        self._stamp: tuple | None = None
        self._pending = False
        self._lock = asyncio.Lock()
        self._error: str | None = None

    @property
    def heatmap(self) -> Heatmap:
        return self.query_one(Heatmap)

    def compose(self) -> ComposeResult:
        yield Static("", id="archive-empty", markup=False, classes="empty-state")  # until read
        yield Static("", id="archive-head", markup=False)
        with Horizontal(id="archive-body"):
            yield Heatmap(id="archive-map")
            with Vertical(id="archive-side"):
                yield Curves(id="archive-curves")
                yield Static("", id="archive-cell", markup=False)
                with VerticalScroll(id="archive-diff", can_focus=False):
                    yield Static("", id="archive-diff-text", markup=False)

    def on_mount(self) -> None:
        self._show_empty(True)
        self.set_interval(POLL_INTERVAL, self._poll)

    def _show_empty(self, empty: bool) -> None:
        self.query_one("#archive-empty").display = empty
        self.query_one("#archive-head").display = not empty
        self.query_one("#archive-body").display = not empty

    def focus_default(self) -> None:
        if self.query_one("#archive-body").display:
            self.heatmap.focus()
        else:
            self.app.set_focus(None)

    # -- reading ---------------------------------------------------------------------------

    async def engine_ready(self) -> None:
        if self.shown:  # else the first showing reads (on_tab_shown): no numpy at start
            await self._read()

    def _run(self, coro: Coroutine) -> None:
        """Read in a worker; a failure is shown once (not at every poll), never fatal."""

        async def guarded() -> None:
            try:
                await coro
                self._error = None
            except Exception as e:  # noqa: BLE001 - a view that cannot be read says why
                error = _message(e)
                if error != self._error:
                    self._error = error
                    self.app.notify(f"archive: {error}", severity="error", timeout=8)

        self.run_worker(guarded(), group="archive-read")

    def on_evolution_changed(self, message: EvolutionChanged) -> None:
        # A hidden tab reads nothing: showing it compares stamps (on_tab_shown).
        if self.shown and not self._pending:
            self._pending = True
            self.set_timer(READ_INTERVAL, lambda: self._run(self._read()))

    def on_tab_shown(self, message: TabShown) -> None:
        self._run(self._check())

    def _poll(self) -> None:
        # Skipped while a read is under way (a slow read is never cut short by the next poll).
        if self.evo.engine is not None and self.shown and not self._pending and not self._lock.locked():
            self._run(self._check())

    async def _check(self) -> None:
        """Re-read if anything changed since the last read (by any process)."""
        engine = self.evo.engine
        if engine is None:
            return
        if self.experiment_id is None or await engine.evolution.stamp(self.experiment_id) != self._stamp:
            await self._read()  # (with no experiment: only has_experiments)

    async def _read(self, *, to_best: bool = False) -> None:
        """The experiments, the one shown (the newest unless one was chosen) and its island."""
        self._pending = False
        engine = self.evo.engine
        if engine is None:
            return
        async with self._lock:
            if not await engine.has_experiments():
                self.query_one("#archive-empty", Static).update(EMPTY_TEXT)
                self._show_empty(True)
                return
            ev = engine.evolution
            self.experiments = await ev.list()
            ids = [e["id"] for e in self.experiments]
            if self.experiment_id not in ids:
                self.experiment_id, self.island, self.pair, to_best = ids[-1], 0, 0, True
            exp_id = self.experiment_id
            stamp = await ev.stamp(exp_id)  # before reading: a change meanwhile shows next time
            self.status = await ev.status(exp_id)
            self.history = (await ev.archive(exp_id))["history"]
            view = await ev.cells(exp_id, self.island)
            self._stamp = stamp  # only once all is read (a cancelled read is done again)
        was_empty = not self.query_one("#archive-body").display
        self._show_empty(False)
        self._show(view, to_best=to_best)
        if was_empty and self.shown and self.app.focused is None:
            self.heatmap.focus()

    async def _read_island(self) -> None:
        engine = self.evo.engine
        if engine is None or self.experiment_id is None:
            return
        async with self._lock:
            view = await engine.evolution.cells(self.experiment_id, self.island)
        self._show(view)

    # -- showing ---------------------------------------------------------------------------

    def _show(self, view: dict, *, to_best: bool = False) -> None:
        self.view = view
        pairs = axis_pairs(len(view["descriptors"]))
        self.pair %= len(pairs)
        grid = project(view, pairs[self.pair])
        self.heatmap.set_grid(grid, f"island {view['island']}: nothing placed yet\n(the grid's bounds "
                                    f"are set after the warm-up)", to_best=to_best)
        self._update_head()
        self._update_curves()

    def _island_history(self) -> list[dict]:
        island = self.view["island"] if self.view else None
        return [h for h in self.history if h["island_id"] == island]

    def _update_head(self) -> None:
        st, view = self.status, self.view
        if st is None or view is None:
            return
        ids = [e["id"] for e in self.experiments]
        counts = st["counts"]
        flight = ", ".join(f"{counts[s]} {s}" for s in IN_FLIGHT if counts.get(s))
        state = st["state"] + (f" ({st['stop_reason']})" if st["stop_reason"] else "")
        best = st["best"]["objective"] if st["best"] else None
        line1 = (f"{st['name']} #{st['id']} ({ids.index(st['id']) + 1} of {len(ids)}) · {state}"
                 f" · {st['iterations_done']}/{st['iterations_planned']} iterations"
                 f" · best {_num(best)} ({st['direction']})")
        island = view["island"]
        line2 = (f"island {island} ({island + 1} of {view['islands']}) · {len(view['cells'])} elites"
                 f" · in flight: {flight or 'none'}")
        names = view["descriptors"]
        pairs = axis_pairs(len(names))
        if len(pairs) > 1:
            x, y = pairs[self.pair]
            line2 += f" · axes {names[x]} × {names[y]} ({self.pair + 1} of {len(pairs)})"
        self.query_one("#archive-head", Static).update(f"{line1}\n{line2}")

    def _update_curves(self) -> None:
        hist = self._island_history()
        cov = [h["coverage"] for h in hist]
        qd = [h["qd_score"] for h in hist]
        best = [h["best"] for h in hist if h["best"] is not None]
        self.query_one(Curves).set_rows([
            ("coverage", cov, f"{cov[-1]:.1%}" if cov else "—"),
            ("QD score", qd, _num(qd[-1] if qd else None)),
            ("best", best, _num(best[-1] if best else None)),
        ])

    def _cell_place(self, cell_xy: tuple[int, int]) -> str:
        grid = self.heatmap.grid
        if grid is None:
            return ""
        parts = []
        for axis, i in ((grid.x, cell_xy[0]), (grid.y, cell_xy[1])):
            if axis is not None:
                lo, hi = axis.interval(i)
                parts.append(f"{axis.name} {lo:.4g}..{hi:.4g}")
        return "cell " + " · ".join(parts)

    @on(Heatmap.Moved)
    def _moved(self, event: Heatmap.Moved) -> None:
        cell = event.cell
        if cell is not None and self.detail is not None and \
                (self.detail["experiment_id"], self.detail["commit"]) == (self.experiment_id, cell.commit):
            self._show_detail(self.detail, diff=False)  # the same commit; its cell may differ
            return
        self.detail = None
        place = self._cell_place(self.heatmap.cursor)
        self._set_diff(Text(""), "")
        if cell is None:
            self.query_one("#archive-cell", Static).update(f"{place}: empty" if place else "")
            return
        self.query_one("#archive-cell", Static).update(f"{place}\ncommit {cell.commit[:12]} …")
        self.run_worker(self._load_detail(cell), group="archive-cell", exclusive=True)

    async def _load_detail(self, cell: Cell) -> None:
        engine = self.evo.engine
        if engine is None or self.experiment_id is None:
            return
        try:
            d = await engine.evolution.show(cell.commit, experiment=self.experiment_id, diff_limit=DIFF_LIMIT)
        except Exception as e:  # noqa: BLE001 - shown in place of the details
            self.query_one("#archive-cell", Static).update(f"commit {cell.commit[:12]}: {_message(e)}")
            return
        if self.heatmap.current != cell:
            return  # the cursor moved on meanwhile
        self.detail = d
        self._show_detail(d)

    def _show_detail(self, d: dict, *, diff: bool = True) -> None:
        parent = f"parent {d['parent'][:12]}" if d["parent"] else "the seed program"
        message = (d["message"] or "").strip()
        lines = [
            self._cell_place(self.heatmap.cursor),
            f"commit {d['commit'][:12]} · {parent}",
            " · ".join(part for part in (
                f"iteration {d['iteration']}", f"island {d['island']}" if d["island"] is not None else None,
                f"mutator {d['mutator']}" if d["mutator"] else None,
                f"cost ${d['cost']:.4f}" if d["cost"] else None,
                d["summary"]) if part),
            "metrics: " + (" · ".join(f"{m['name']} {formatting.metric(m['value'], m['unit'])}"
                                      for m in d["metrics"]) or "none"),
            message.splitlines()[0] if message else "",
        ]
        self.query_one("#archive-cell", Static).update("\n".join(line for line in lines if line))
        if not diff:
            return
        if not d["parent"]:
            self._set_diff(Text("the seed program: no parent to diff against"), "")
            return
        text = diff_text(d["diff"]) if d["diff"] else Text("no change against the parent")
        if d["diff_cut"]:
            text.append(f"… cut at {DIFF_LIMIT // 1024} KiB: `evopilot evolve show {d['commit'][:12]}` "
                        f"prints it whole", "bold")
        self._set_diff(text, f"diff against {d['parent'][:12]}")

    def _set_diff(self, text: Text, title: str) -> None:
        self.query_one("#archive-diff-text", Static).update(text)
        scroll = self.query_one("#archive-diff", VerticalScroll)
        scroll.border_title = title
        scroll.scroll_home(animate=False)

    # -- actions ---------------------------------------------------------------------------

    def _need_view(self) -> bool:
        if self.view is None:
            self.app.notify("no experiment to show", severity="warning")
        return self.view is not None

    def action_island(self, step: int) -> None:
        if not self._need_view():
            return
        count = self.view["islands"]
        if count < 2:
            self.app.notify("this experiment has one island")
            return
        self.island = (self.island + step) % count
        self._run(self._read_island())

    def action_cycle_axes(self) -> None:
        if not self._need_view():
            return
        pairs = axis_pairs(len(self.view["descriptors"]))
        if len(pairs) < 2:
            self.app.notify(f"{len(self.view['descriptors'])} descriptor(s): the axes show all of them")
            return
        self.pair = (self.pair + 1) % len(pairs)
        self._show(self.view, to_best=True)

    def action_experiment(self, step: int) -> None:
        if not self._need_view():
            return
        ids = [e["id"] for e in self.experiments]
        if len(ids) < 2:
            self.app.notify("there is one experiment")
            return
        self.experiment_id = ids[(ids.index(self.experiment_id) + step) % len(ids)]
        self.island, self.pair = 0, 0
        self._run(self._read(to_best=True))

    def action_go_best(self) -> None:
        grid = self.heatmap.grid
        best = grid.best() if grid is not None else None
        if best is not None:
            self.heatmap.move_to(best.x, best.y)

    def action_scroll_diff(self, pages: int) -> None:
        scroll = self.query_one("#archive-diff", VerticalScroll)
        if pages > 0:
            scroll.scroll_page_down(animate=False)
        else:
            scroll.scroll_page_up(animate=False)

    def action_branch(self) -> None:
        cell = self.heatmap.current
        engine = self.evo.engine
        if cell is None or engine is None or self.status is None:
            self.app.notify("no commit under the cursor: move it to a filled cell", severity="warning")
            return
        exp_id, name = self.status["id"], self.status["name"]

        async def submit(branch: str) -> None:
            await engine.evolution.branch_at(exp_id, cell.commit, branch.strip())

        def done(branch: str | None) -> None:
            if branch is not None:
                self.app.notify(f"branch {branch.strip()} made at {cell.commit[:12]}")

        self.app.push_screen(LineDialog(
            f"Make a branch at {cell.commit[:12]} (objective {_num(cell.objective)})", submit,
            value=f"{name}-{cell.commit[:8]}",
            hint="Enter: make the branch in the project's repository · Esc: cancel"), done)
