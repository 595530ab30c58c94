"""JobTable: a virtual table of jobs that holds only the rows around the visible window.

The table knows the number of rows (``source.count()``) and asks for the rows it shows plus a
page above and below (``source.fetch(offset, limit)``); nothing else is loaded, so 100,000 jobs
open as fast as 10. It is a Line API widget (``ScrollView`` + ``render_line``): the first screen
line is a fixed header, the others are rows ``scroll_y + y - 1``.

Feeding it: ``reload()`` refetches the count and the window (coalesced: one fetch in flight,
one more queued at most); ``update_job(job)`` replaces a row in place from a ``JobEvent`` and
returns False when the job is not in the window (the caller decides whether to reload).

It posts ``JobTable.Highlighted(job)`` when the job under the cursor changes (another job, or
new data for the same one). The cursor stays on its job when rows are inserted above it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar, Protocol

from rich.segment import Segment
from textual import events
from textual.binding import BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from evopilot.core import formatting
from evopilot.core.models import Job, JobStatus
from evopilot.tui import keymap

Clock = Callable[[], datetime]


class JobSource(Protocol):
    async def count(self) -> int: ...
    async def fetch(self, offset: int, limit: int) -> list[Job]: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def _fit(text: str, width: int, right: bool = False) -> str:
    if width <= 0:
        return ""
    if len(text) > width:
        text = text[: max(0, width - 1)] + "…" if width > 1 else text[:width]
    return text.rjust(width) if right else text.ljust(width)


# (key, title, min width, right-aligned)
COLUMNS = [
    ("id", "ID", 5, True),
    ("project", "PROJECT", 8, False),
    ("bench", "BENCHMARK", 10, False),
    ("host", "HOST", 6, False),
    ("status", "STATUS", 9, False),
    ("progress", "PROGRESS", 13, False),
    ("elapsed", "ELAPSED", 7, True),
    ("exit", "EXIT", 4, True),
    ("metrics", "METRICS / ERROR", 0, False),
]


def column_widths(width: int) -> dict[str, int]:
    """Widths that fill ``width`` (one space between columns, a 1-cell cursor mark first)."""
    w = {k: m for k, _t, m, _r in COLUMNS}
    used = 1 + sum(w.values()) + len(COLUMNS) - 1
    spare = max(0, width - used)
    # Grow in order of usefulness, up to a comfortable width each; the rest goes to metrics.
    for key, most in (("bench", 22), ("project", 14), ("progress", 17), ("host", 10), ("elapsed", 8), ("id", 6)):
        add = min(spare, most - w[key])
        w[key] += add
        spare -= add
    if spare >= 12:
        w["metrics"] += spare
    else:  # no room for metrics: drop the column (and its separator), widen the benchmark
        w["metrics"] = -1
        w["bench"] += spare + 1
    return w


def render_row(job: Job, widths: dict[str, int], clock: Clock) -> str:
    bar = max(3, widths["progress"] - 8)
    values = {
        "id": str(job.id),
        "project": job.project or "-",
        "bench": job.name,
        "host": job.host,
        "status": job.status.value,
        "progress": formatting.progress_bar(job, bar),
        "elapsed": formatting.elapsed(job, clock()),
        "exit": "" if job.exit_code is None else str(job.exit_code),
        "metrics": formatting.outcome(job),
    }
    parts = [_fit(values[k], widths[k], r) for k, _t, _m, r in COLUMNS if widths[k] >= 0]
    return " ".join(parts)


def render_header(widths: dict[str, int]) -> str:
    return " ".join(_fit(t, widths[k], r) for k, t, _m, r in COLUMNS if widths[k] >= 0)


class JobTable(ScrollView, can_focus=True):
    """See the module docstring."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"job-table--header", "job-table--cursor", "job-table--dim"}

    DEFAULT_CSS = """
    JobTable {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: scroll;
        scrollbar-size-vertical: 1;
    }
    JobTable > .job-table--header { text-style: bold; }
    JobTable > .job-table--cursor { text-style: reverse; }
    JobTable:focus > .job-table--cursor { text-style: reverse bold; }
    JobTable > .job-table--dim { text-style: dim; }
    """

    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.JOB_TABLE)

    PAD_PAGES = 1
    """Rows fetched above and below the visible window, in pages."""

    MIN_PAGE = 40
    """Rows per page assumed for fetching (the first fetch may come before the first layout)."""

    class Highlighted(Message):
        def __init__(self, table: JobTable, job: Job | None) -> None:
            super().__init__()
            self.table = table
            self.job = job

    class FindRequested(Message):
        """``/`` on the table: the pane opens its text filter."""

    class Reloaded(Message):
        """The count and the window were fetched again."""

        def __init__(self, table: JobTable) -> None:
            super().__init__()
            self.table = table

    def __init__(self, source: JobSource, *, clock: Clock = utc_now, empty_text: str = "no jobs",
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.clock = clock
        self.empty_text = empty_text
        self.count = 0
        self.cursor = 0
        self._offset = 0
        self._rows: list[Job] = []
        self._index: dict[int, int] = {}  # job id -> position in _rows
        self._fetching = False
        self._again = False
        self._to_top = False
        self.marked: set[int] = set()
        """Jobs marked for Compare (shown with ✓ in the cursor column)."""
        self._loaded = False
        self._highlighted: tuple | None = None
        self.fetches = 0
        """Number of window fetches so far (for tests and the bench)."""

    # -- data ----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def rows(self) -> list[Job]:
        """The rows held now (the window), in order."""
        return list(self._rows)

    @property
    def page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def job_at(self, row: int) -> Job | None:
        i = row - self._offset
        return self._rows[i] if 0 <= i < len(self._rows) else None

    @property
    def current(self) -> Job | None:
        return self.job_at(self.cursor)

    def reload(self, *, to_top: bool = False) -> None:
        """Fetch the count and the window again (coalesced); ``to_top``: then put the cursor on
        the first row (a new job there) and scroll to it."""
        self._to_top |= to_top
        if self._fetching:
            self._again = True
            return
        self._fetching = True
        self.run_worker(self._fetch(), group="job-table-fetch", exit_on_error=False)

    async def _fetch(self) -> None:
        try:
            while True:
                self._again = False
                to_top, self._to_top = self._to_top, False
                keep = self.current.id if self.current and not to_top else None
                if to_top:
                    self.cursor = 0
                    self.scroll_to(y=0, animate=False, immediate=True)
                count = await self.source.count()
                page = max(self.page, self.MIN_PAGE)
                top = 0 if to_top else max(0, int(self.scroll_y))
                start = max(0, top - self.PAD_PAGES * page)
                limit = page * (1 + 2 * self.PAD_PAGES) + 1
                rows = await self.source.fetch(start, limit)
                self.fetches += 1
                self._apply(count, start, rows, keep)
                if not self._again and self._covers_view():
                    break
        except Exception as error:  # noqa: BLE001 - a failed read is shown, not fatal
            self.app.notify(f"cannot read jobs: {error}", severity="error")
        finally:
            self._fetching = False

    def _covers_view(self) -> bool:
        top = int(self.scroll_y)
        end = min(self.count, top + self.page)
        return self._offset <= top and end <= self._offset + len(self._rows)

    def _apply(self, count: int, offset: int, rows: list[Job], keep: int | None) -> None:
        self.count = count
        self._offset = offset
        self._rows = rows
        self._index = {j.id: i for i, j in enumerate(rows)}
        self._loaded = True
        if keep is not None and keep in self._index:
            self.cursor = offset + self._index[keep]
        self.cursor = max(0, min(self.cursor, count - 1))
        self._set_height(count + 1)
        self._scroll_cursor_visible()
        self.refresh()
        self.post_message(self.Reloaded(self))
        self._post_highlight()

    def holds(self, job_id: int) -> bool:
        return job_id in self._index

    def update_job(self, job: Job) -> bool:
        """Show ``job``'s new state if it is in the window; False if it is not."""
        i = self._index.get(job.id)
        if i is None:
            return False
        self._rows[i] = job
        y = self._offset + i - int(self.scroll_y) + 1
        if 1 <= y < self.scrollable_content_region.height:
            self.refresh_line(y)
        if self._offset + i == self.cursor:
            self._post_highlight()
        return True

    def refresh_job(self, job_id: int) -> None:
        """Repaint a job's row (its mark changed)."""
        i = self._index.get(job_id)
        if i is not None:
            y = self._offset + i - int(self.scroll_y) + 1
            if 1 <= y < self.scrollable_content_region.height:
                self.refresh_line(y)

    def has_running_visible(self) -> bool:
        top = int(self.scroll_y)
        for row in range(top, top + self.page):
            job = self.job_at(row)
            if job is not None and job.status == JobStatus.RUNNING:
                return True
        return False

    def _post_highlight(self) -> None:
        job = self.current
        key = None if job is None else (job.id, job.updated_at, job.status, job.progress_current,
                                        job.log_path, tuple(job.metrics.items()))
        if key != self._highlighted:
            self._highlighted = key
            self.post_message(self.Highlighted(self, job))

    # -- size and scrolling --------------------------------------------------------------

    def _set_height(self, lines: int) -> None:
        size = Size(self.scrollable_content_region.width, lines)
        if size != self.virtual_size:
            self.virtual_size = size

    def on_resize(self, event: events.Resize) -> None:
        self._set_height(self.count + 1)
        if self._loaded and not self._covers_view():
            self.reload()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._loaded and not self._covers_view():
            self.reload()

    def scroll_to_cursor(self) -> None:
        """Bring the cursor's row into view: a scroll asked while the table was hidden (a new
        job came in while another tab was shown) does not take."""
        self._scroll_cursor_visible()
        self.refresh()

    def _scroll_cursor_visible(self) -> None:
        top = int(self.scroll_y)
        page = self.page
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + page:
            self.scroll_to(y=self.cursor - page + 1, animate=False, immediate=True)

    def move_cursor(self, row: int) -> None:
        if self.count == 0:
            return
        row = max(0, min(row, self.count - 1))
        if row == self.cursor:
            return
        old = self.cursor
        self.cursor = row
        self._scroll_cursor_visible()
        top = int(self.scroll_y)
        for r in (old, row):
            y = r - top + 1
            if 1 <= y < self.scrollable_content_region.height:
                self.refresh_line(y)
        if self.current is None:
            self.reload()
        self._post_highlight()

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor - self.page)

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor + self.page)

    def action_find(self) -> None:
        self.post_message(self.FindRequested())

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(self.count - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(int(self.scroll_y) + event.y - 1)

    # -- rendering -----------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        widths = column_widths(width - 1)
        if y == 0:
            style = base + self.get_component_rich_style("job-table--header", partial=True)
            return Strip([Segment(" " + render_header(widths).ljust(width - 1)[: width - 1], style)], width)
        row = int(self.scroll_y) + y - 1
        if row >= self.count:
            if self.count == 0 and y == 1 and self._loaded:
                dim = base + self.get_component_rich_style("job-table--dim", partial=True)
                return Strip([Segment(_fit(" " + self.empty_text, width), dim)], width)
            return Strip.blank(width, base)
        job = self.job_at(row)
        if job is None:
            text = " " + _fit("…", width - 1)
            style = base + self.get_component_rich_style("job-table--dim", partial=True)
        else:
            mark = "✓" if job.id in self.marked else "▶" if row == self.cursor else " "
            text = mark + render_row(job, widths, self.clock)
            style = base
        if row == self.cursor:
            style = style + self.get_component_rich_style("job-table--cursor", partial=True)
        text = text[:width].ljust(width)
        return Strip([Segment(text, style)], width)

    def visible_text(self) -> list[str]:
        """The rows as rendered now (for tests)."""
        return [self.render_line(y).text for y in range(self.scrollable_content_region.height)]

