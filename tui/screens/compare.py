"""``C`` in the Jobs tab: the marked jobs' metrics side by side, the best of each highlighted
by its direction (bold, reversed and starred, so it shows with NO_COLOR too)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from evopilot.core import formatting
from evopilot.core.models import Job
from evopilot.tui import keymap


class CompareScreen(ModalScreen):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.COMPARE)

    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen > Vertical {
        width: 100%; max-width: 120; height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    CompareScreen #compare-title { text-style: bold; }
    CompareScreen DataTable { height: 1fr; }
    CompareScreen .hint { color: $text-muted; }
    """

    def __init__(self, jobs: list[Job]) -> None:
        super().__init__()
        self.jobs = jobs
        self.compared = formatting.compare_metrics(jobs)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Compare {len(self.jobs)} jobs: the best of each metric is starred (*)",
                         id="compare-title", markup=False)
            table = DataTable(cursor_type="row", id="compare-table", zebra_stripes=True)
            table.add_column("METRIC")
            for job in self.jobs:
                table.add_column(f"job {job.id} {job.name} ({job.host})")
            for m in self.compared:
                label = m.name + (f" ({m.unit})" if m.unit else "") + (f" {m.direction} better" if m.direction else "")
                cells = []
                for i, v in enumerate(m.values):
                    if v is None:
                        cells.append(Text("-"))
                    elif i in m.best:
                        cells.append(Text(f"{v:g} *", style="bold reverse"))
                    else:
                        cells.append(Text(f"{v:g}"))
                table.add_row(Text(label), *cells, key=m.name)
            if not self.compared:
                table.add_row(Text("no metrics in these jobs"), *[Text("") for _ in self.jobs])
            yield table
            yield Static("Esc / C: close · m in the table marks and unmarks jobs", classes="hint",
                         markup=False)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()

    def action_close(self) -> None:
        self.dismiss(None)
