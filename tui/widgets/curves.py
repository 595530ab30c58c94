"""Curves: labelled sparklines, one per line (``coverage ▁▂▃▅▇█ 42%``), as wide as the widget.

Drawn with the block characters ``▁``..``█`` alone, so they read without colour. A curve
longer than its width is shown by the last value of each stretch (the state at the end of it).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Size
from textual.widget import Widget

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int) -> str:
    """``values`` as at most ``width`` bars, the lowest ``▁``, the highest ``█``."""
    if not values or width <= 0:
        return ""
    n = len(values)
    if n > width:
        values = [values[(i + 1) * n // width - 1] for i in range(width)]
    lo, hi = min(values), max(values)
    if hi == lo:
        return BARS[len(BARS) // 2] * len(values)
    top = len(BARS) - 1
    return "".join(BARS[round((v - lo) / (hi - lo) * top)] for v in values)


class Curves(Widget):
    DEFAULT_CSS = """
    Curves { height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[tuple[str, list[float], str]] = []

    def set_rows(self, rows: list[tuple[str, list[float], str]]) -> None:
        """(label, values, the value shown after the bars) per line."""
        self.rows = rows
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.rows)

    def render(self) -> RenderResult:
        if not self.rows:
            return Text()
        label_w = max(len(r[0]) for r in self.rows)
        value_w = max(len(r[2]) for r in self.rows)
        bars_w = max(0, self.content_size.width - label_w - value_w - 2)
        lines = [f"{label:<{label_w}} {sparkline(values, bars_w):<{bars_w}} {value:>{value_w}}"
                 for label, values, value in self.rows]
        return Text("\n".join(lines), no_wrap=True, overflow="crop")
