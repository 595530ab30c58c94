"""TaskBoard: the kanban of tasks, one column per status, drawn as text (one line per task).

The cursor is a (column, row) pair moved with the arrow keys; it follows the selected task by
id when the tasks are set again (after a move, the task is selected in its new column). Moving
a task is asked of the pane (``MoveTask``): the widget holds no engine. The selected task is
marked with ``▶`` and reverse video, so it shows with NO_COLOR too.
"""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import RenderResult
from textual.binding import BindingType
from textual.message import Message
from textual.widget import Widget

from evopilot.core.models import TASK_STATUSES
from evopilot.tui import keymap

TITLES = {"todo": "todo", "inprogress": "in progress", "inreview": "in review", "done": "done",
          "cancelled": "cancelled"}


def attempt_mark(task: dict) -> str:
    """One character for the state of the task's latest attempt ("" with none)."""
    if not task["attempts"]:
        return ""
    a = task["attempts"][-1]
    if a["state"] in ("starting", "running"):
        return "●"
    if a["state"] == "testing":
        return "…"
    if a["state"] == "merged":
        return "⇡"
    if a["tests_passed"] is True:
        return "✓"
    if a["tests_passed"] is False:
        return "✗"
    return "!" if a["state"] in ("failed", "stopped") else "○"


def _crop(text: str, width: int) -> str:
    if cell_len(text) <= width:
        return text + " " * (width - cell_len(text))
    out = ""
    for ch in text:
        if cell_len(out + ch) > width - 1:
            break
        out += ch
    return out + "…" + " " * (width - 1 - cell_len(out))


class TaskBoard(Widget, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.TASK_BOARD)

    DEFAULT_CSS = """
    TaskBoard { height: 1fr; }
    TaskBoard > .task-board--header { text-style: bold; }
    TaskBoard > .task-board--cursor { text-style: reverse; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"task-board--header", "task-board--cursor"}

    class Selected(Message):
        """The selected task (or None) changed, or its content did."""

        def __init__(self, task: dict | None) -> None:
            super().__init__()
            self.task = task

    class MoveTask(Message):
        def __init__(self, task: dict, step: int) -> None:
            super().__init__()
            self.task = task
            self.step = step

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: dict[str, list[dict]] = {s: [] for s in TASK_STATUSES}
        self.col = 0
        self.row = 0
        self._tops = [0] * len(TASK_STATUSES)
        """First row shown of each column (a column longer than the widget scrolls)."""

    @property
    def current(self) -> dict | None:
        tasks = self.columns[TASK_STATUSES[self.col]]
        return tasks[self.row] if 0 <= self.row < len(tasks) else None

    def set_tasks(self, tasks: list[dict]) -> None:
        """Show ``tasks`` (``engine.tasks.board``); the selected task stays selected."""
        keep = self.current["id"] if self.current else None
        self.columns = {s: [t for t in tasks if t["status"] == s] for s in TASK_STATUSES}
        for c, status in enumerate(TASK_STATUSES):
            for r, t in enumerate(self.columns[status]):
                if t["id"] == keep:
                    self.col, self.row = c, r
        if self.current is None or self.current["id"] != keep:
            if not self.columns[TASK_STATUSES[self.col]]:  # the first column with tasks
                self.col = next((c for c, s in enumerate(TASK_STATUSES) if self.columns[s]), 0)
            self.row = min(self.row, max(0, len(self.columns[TASK_STATUSES[self.col]]) - 1))
        self._changed()

    def _changed(self) -> None:
        self.refresh()
        self.post_message(self.Selected(self.current))

    def action_cursor(self, dx: int, dy: int) -> None:
        if dx:
            col = self.col + dx
            if not 0 <= col < len(TASK_STATUSES):
                return
            self.col = col
            self.row = min(self.row, max(0, len(self.columns[TASK_STATUSES[col]]) - 1))
        if dy:
            n = len(self.columns[TASK_STATUSES[self.col]])
            self.row = max(0, min(n - 1, self.row + dy))
        self._changed()

    def action_move_task(self, step: int) -> None:
        task = self.current
        if task is None:
            self.app.notify("no task selected", severity="warning")
            return
        if not 0 <= self.col + step < len(TASK_STATUSES):
            self.app.notify(f"task {task['id']} is in the {'first' if step < 0 else 'last'} column already")
            return
        self.post_message(self.MoveTask(task, step))

    def visible_text(self) -> list[str]:
        return self.render().plain.split("\n")  # type: ignore[union-attr]

    def render(self) -> RenderResult:
        width, height = self.content_size.width, self.content_size.height
        n = len(TASK_STATUSES)
        widths = [(width - (n - 1)) // n] * n
        widths[-1] = max(0, width - (n - 1) - sum(widths[:-1]))
        header = self.get_component_rich_style("task-board--header")
        cursor = self.get_component_rich_style("task-board--cursor")
        rows = max(0, height - 1)
        if rows:  # the cursor's row in view
            top = self._tops[self.col]
            top = min(max(top, self.row - rows + 1), self.row)
            self._tops[self.col] = max(0, top)
        text = Text(no_wrap=True, overflow="crop", end="")
        for c, status in enumerate(TASK_STATUSES):
            label = f"{TITLES[status]} {len(self.columns[status])}"
            text.append(_crop(label, widths[c]), header)
            if c < n - 1:
                text.append("│")
        for r in range(rows):
            text.append("\n")
            for c, status in enumerate(TASK_STATUSES):
                tasks = self.columns[status]
                i = self._tops[c] + r
                if i < len(tasks):
                    t = tasks[i]
                    selected = c == self.col and i == self.row
                    mark = attempt_mark(t)
                    cell = _crop(f"{'▶' if selected else ' '}{t['id']} {t['title']}", widths[c] - (2 if mark else 0))
                    if mark:
                        cell += f" {mark}"
                    text.append(cell, cursor if selected else "")
                else:
                    text.append(" " * widths[c])
                if c < n - 1:
                    text.append("│")
        return text
