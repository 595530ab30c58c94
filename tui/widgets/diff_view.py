"""DiffView: a diff read from a byte stream a page at a time (never whole), coloured by line kind.

``load(open_stream)`` opens the stream (``engine.tasks.diff``: git's output) and reads lines
until one page (``PAGE_LINES``, or ``PAGE_BYTES`` of input; lines read past it wait for the next page) is shown; ``n`` (``more``) reads
the next page onto the end. The stream stays open between pages and is closed (git killed) when
another diff is loaded or the view goes away. A line longer than ``MAX_LINE`` characters is cut
there (the rest of it is skipped as it streams by, not kept).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

from rich.text import Text
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from evopilot.core.errors import EvopilotError
from evopilot.tui import keymap

PAGE_LINES = 400
PAGE_BYTES = 256 * 1024
MAX_LINE = 2000

def diff_text(diff: str) -> Text:
    """A unified diff with its lines styled by kind (the +/- prefixes read without colour)."""
    text = Text(no_wrap=True, overflow="crop")
    for line in diff.splitlines():
        if line.startswith(("diff ", "index ", "+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        text.append(line + "\n", style)
    return text


async def _aclose(stream: AsyncIterator[bytes]) -> None:
    try:
        await stream.aclose()  # type: ignore[attr-defined]
    except RuntimeError:
        pass  # a read of it is being cancelled, which closes it


Opener = Callable[[], Awaitable[AsyncIterator[bytes]]]


class DiffView(VerticalScroll, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.TASK_DIFF)

    DEFAULT_CSS = """
    DiffView > Static { width: auto; min-width: 100%; }
    DiffView > #diff-end { text-style: bold; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._stream: AsyncIterator[bytes] | None = None
        self._rest = b""
        self._skipping = False
        """Inside a line cut at MAX_LINE: bytes are dropped up to its end."""
        self._ahead: list[str] = []
        """Lines read past the page shown (at most one chunk's worth)."""
        self._eof = False
        self.lines = 0
        """Lines shown."""
        self.done = True
        self.pages = 0

    def compose(self):
        yield Static("", id="diff-end", markup=False)

    def on_unmount(self) -> None:
        self._close()

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            self.app.run_worker(_aclose(stream), group="diff-close")

    def clear(self, message: str = "") -> None:
        self.workers.cancel_group(self, "diff-read")
        self._close()
        for page in self.query(".diff-page"):
            page.remove()
        self._rest, self._skipping, self._ahead, self._eof = b"", False, [], False
        self.lines, self.pages, self.done = 0, 0, True
        self.query_one("#diff-end", Static).update(message)
        self.scroll_home(animate=False)

    def load(self, open_stream: Opener) -> None:
        """Show a new diff from its first page."""
        self.clear("reading the diff…")

        async def first() -> None:
            try:
                self._stream = await open_stream()
            except EvopilotError as e:
                self.query_one("#diff-end", Static).update(e.message)
                return
            self.done = False
            await self._page()

        self.run_worker(first(), group="diff-read", exclusive=True)

    def action_more(self) -> None:
        if self.done:
            self.app.notify("the whole diff is shown" if self._stream is None and self.lines
                            else "no more diff to read")
            return
        self.run_worker(self._page(), group="diff-read", exclusive=True)

    async def _page(self) -> None:
        stream = self._stream
        if stream is None:
            return
        read = 0
        try:
            while not self._eof and len(self._ahead) < PAGE_LINES and read < PAGE_BYTES:
                chunk = await anext(stream, None)
                if chunk is None:
                    if self._rest:
                        self._ahead.append(self._rest.decode(errors="replace"))
                        self._rest = b""
                    self._eof = True
                    break
                read += len(chunk)
                self._ahead += self._split(chunk)
        except EvopilotError as e:
            self.done = True
            self.query_one("#diff-end", Static).update(e.message)
            self._stream = None
            return
        lines, self._ahead = self._ahead[:PAGE_LINES], self._ahead[PAGE_LINES:]
        self.done = self._eof and not self._ahead
        if lines:
            self.pages += 1
            self.lines += len(lines)
            await self.mount(Static(diff_text("\n".join(lines)), classes="diff-page", markup=False),
                             before="#diff-end")
        if self.done:
            self._stream = None
            end = f"end of the diff ({self.lines} lines)" if self.lines else "no changes"
        else:
            end = f"… {self.lines} lines shown: n reads the next page"
        self.query_one("#diff-end", Static).update(end)

    def _split(self, chunk: bytes) -> list[str]:
        out = []
        data = self._rest + chunk
        *whole, self._rest = data.split(b"\n")
        for line in whole:
            if self._skipping:
                self._skipping = False  # the end of a cut line
                continue
            out.append(line[:MAX_LINE * 4].decode(errors="replace")[:MAX_LINE])
        if len(self._rest) > MAX_LINE * 4:  # a huge line: keep its start, drop the rest as it comes
            if not self._skipping:
                out.append(self._rest.decode(errors="replace")[:MAX_LINE] + " …")
            self._skipping = True
            self._rest = b""
        return out

    def visible_text(self) -> str:
        return "\n".join(str(s.content) for s in self.query(Static))
