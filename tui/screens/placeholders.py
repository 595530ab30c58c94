"""A tab whose content arrives in a later release: it says so plainly (no fake data)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from evopilot.tui.screens.pane import Pane

TASKS_TEXT = """\
No tasks.

Tasks are coding-agent work items (an attempt runs an agent in its own git worktree, as a job).
They arrive in a later release of evopilot; nothing here can be created yet.

Meanwhile, benchmarks run from the Projects tab (1) and their jobs show in the Jobs tab (3)."""


class EmptyPane(Pane):
    DEFAULT_CSS = """
    EmptyPane { padding: 1 2; }
    EmptyPane > Static { width: 100%; }
    """

    def __init__(self, text: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = text

    def compose(self) -> ComposeResult:
        yield Static(self._text, markup=False, classes="empty-state")
