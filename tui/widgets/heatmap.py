"""Heatmap: one island's MAP-Elites archive as a grid of cells, two descriptors on the axes.

Each occupied cell is drawn as two characters of a ramp (``RAMP``, worst to best) on a
background colour of the same level, so the grid reads with ``NO_COLOR`` (Textual then draws
in grey) as well as in colour. Levels are normalised over the view shown: the worst elite of
the island is the first character, its best the last. Empty cells are blank.

The cursor is a cell, moved with the arrow keys; it is drawn reversed and marked on both axes
(``>`` on its row, ``^`` under its column). The grid scrolls to keep the cursor in view when it
does not fit. ``Heatmap.Moved`` is posted when the cursor lands on another cell or the grid
under it changes.

An archive with more than two descriptors is shown through a pair of them
(``core.formatting.project``): each 2-D cell holds the best elite of the cells that fall on it.
"""

from __future__ import annotations

from typing import ClassVar

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.binding import BindingType
from textual.geometry import Size
from textual.message import Message
from textual.widget import Widget

from evopilot.core.formatting import RAMP, Cell, Grid
from evopilot.tui import keymap

_STOPS = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]  # viridis


def _colour(t: float) -> Color:
    """A colour of the viridis ramp for ``t`` in [0, 1]."""
    pos = min(max(t, 0.0), 1.0) * (len(_STOPS) - 1)
    i = min(int(pos), len(_STOPS) - 2)
    f = pos - i
    a, b = _STOPS[i], _STOPS[i + 1]
    return Color.from_rgb(*(round(x + (y - x) * f) for x, y in zip(a, b)))


LEVEL_STYLES = [
    Style(color="black" if i >= len(RAMP) // 2 else "white", bgcolor=_colour(i / (len(RAMP) - 1)))
    for i in range(len(RAMP))
]


def _bound(v: float) -> str:
    return f"{v:.4g}"


class Heatmap(Widget, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.HEATMAP)

    DEFAULT_CSS = """
    Heatmap { width: auto; height: 1fr; min-width: 24; padding: 0 1; }
    """

    HEAD = 1
    """Lines above the cells (the y axis)."""
    FOOT = 3
    """Lines below them (the cursor's column, the x axis, the legend)."""

    class Moved(Message):
        """The cursor is on another cell, or the grid under it changed."""

        def __init__(self, heatmap: Heatmap, cell: Cell | None) -> None:
            super().__init__()
            self.heatmap = heatmap
            self.cell = cell

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.grid: Grid | None = None
        self.empty_text = ""
        self.cursor = (0, 0)
        self._origin = (0, 0)
        """The first column and row shown (when the grid does not fit)."""

    # -- data ------------------------------------------------------------------------------

    def set_grid(self, grid: Grid | None, empty_text: str = "", *, to_best: bool = False) -> None:
        """Show ``grid`` (None: ``empty_text``). The cursor stays where it is (inside the grid),
        or goes to the best cell with ``to_best`` and on the first grid shown."""
        first = self.grid is None
        self.grid, self.empty_text = grid, empty_text
        if grid is not None:
            best = grid.best()
            if (first or to_best) and best is not None:
                self.cursor = (best.x, best.y)
            self.cursor = (min(self.cursor[0], grid.width - 1), min(self.cursor[1], grid.height - 1))
        self.refresh(layout=True)
        self.post_message(self.Moved(self, self.current))

    @property
    def current(self) -> Cell | None:
        return self.grid.cells.get(self.cursor) if self.grid is not None else None

    def move_to(self, x: int, y: int) -> None:
        if self.grid is None:
            return
        cursor = (min(max(x, 0), self.grid.width - 1), min(max(y, 0), self.grid.height - 1))
        if cursor != self.cursor:
            self.cursor = cursor
            self.refresh()
            self.post_message(self.Moved(self, self.current))

    def action_move(self, dx: int, dy: int) -> None:
        self.move_to(self.cursor[0] + dx, self.cursor[1] + dy)

    # -- drawing ---------------------------------------------------------------------------

    def _label_width(self) -> int:
        return len(str(self.grid.height - 1)) + 2 if self.grid is not None and self.grid.y else 2

    def _axis_lines(self) -> tuple[str, str]:
        g = self.grid
        assert g is not None
        y = f"↑ {g.y.name} {_bound(g.y.lower)}..{_bound(g.y.upper)}" if g.y else ""
        return y, f"→ {g.x.name} {_bound(g.x.lower)}..{_bound(g.x.upper)}"

    def _legend(self) -> Text:
        text = Text("worst ")
        for ch, style in zip(RAMP, LEVEL_STYLES):
            text.append(ch, style)
        text.append(" best")
        return text

    def get_content_width(self, container: Size, viewport: Size) -> int:
        if self.grid is None:
            return max((len(line) for line in self.empty_text.splitlines()), default=0)
        y, x = self._axis_lines()
        return max(self._label_width() + 2 * self.grid.width, len(y), len(x), len(self._legend()))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if self.grid is None:
            return len(self.empty_text.splitlines())
        return self.HEAD + self.grid.height + self.FOOT

    def _window(self, cols: int, rows: int) -> tuple[int, int]:
        """The first column and row to show so that the cursor is in view."""
        g = self.grid
        assert g is not None
        x0, y0 = self._origin
        cx, cy = self.cursor
        x0 = min(max(x0, cx - cols + 1), cx, max(0, g.width - cols))
        y0 = min(max(y0, cy - rows + 1), cy, max(0, g.height - rows))
        self._origin = (max(0, x0), max(0, y0))
        return self._origin

    def render(self) -> RenderResult:
        g = self.grid
        if g is None:
            return Text(self.empty_text, style="italic")
        label = self._label_width()
        cols = max(1, (self.content_size.width - label) // 2)
        rows = max(1, self.content_size.height - self.HEAD - self.FOOT)
        x0, y0 = self._window(cols, rows)
        x1, y1 = min(g.width, x0 + cols), min(g.height, y0 + rows)
        cx, cy = self.cursor
        y_line, x_line = self._axis_lines()
        out = Text(no_wrap=True, overflow="crop", end="")
        out.append(y_line + "\n")
        for y in range(y1 - 1, y0 - 1, -1):  # the highest bin on top
            mark = ">" if y == cy else " "
            out.append((f"{y:>{label - 2}}{mark} " if g.y else f"{mark} ").ljust(label))
            for x in range(x0, x1):
                cell = g.cells.get((x, y))
                if cell is None:
                    text, style = "  ", Style()
                else:
                    level = g.level(cell.objective)
                    text, style = RAMP[level] * 2, LEVEL_STYLES[level]
                if (x, y) == (cx, cy):
                    style = style + Style(reverse=True, bold=True)
                out.append(text, style)
            out.append("\n")
        out.append(" " * (label + 2 * (cx - x0)) + "^^\n")
        out.append(x_line + "\n")
        out.append_text(self._legend())
        return out
