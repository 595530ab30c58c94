"""LogView: a follow-able, searchable view of a (huge, growing) log file.

The view shows a log through a reader (``core.jobs.logread.LogReader``, which
the app gets from ``Engine.log_reader``): the lines come from the reader's
:class:`core.jobs.logindex.LogIndex`, which reads them from the file on demand;
this widget never holds more than the visible lines (plus a small cache of
rendered strips). All file I/O stays in the reader and its index.

Structure: ``LogView`` is a small container holding

* ``LogLines`` - a Line API widget (``ScrollView`` + ``render_line``) that
  renders only the visible window; it is the focus target and carries the
  key bindings;
* a search ``Input`` docked at the bottom, hidden until ``/`` is pressed.

How it is fed
-------------
The app calls :meth:`LogView.notify_grew` (sync) or ``await file_grew()``
whenever the engine reports new bytes for the log. Calls are coalesced: at
most one refresh per ``MIN_REFRESH_INTERVAL`` (1/30 s), however many calls
arrive. The widget does not poll anything by default; ``safety_poll=`` (seconds)
turns on a slow ``stat`` of the file as a safety net for a missed event.

Opening a big file: the first ``INLINE_INDEX_BYTES`` are indexed at once; if
the file is bigger, the view shows its last lines immediately (``LogIndex.tail``,
a backward scan from the end) while a thread worker indexes the rest in bounded
steps; when it finishes, the view switches to the full index at the same place.

Follow mode: while following, new lines scroll into view. Scrolling up (keys,
mouse wheel, a search jump) pauses; ``End`` (or scrolling back to the very
bottom) resumes. The state is shown in the border subtitle ("following" /
"paused").

Keys (all ``Binding(..., id="log.*")``, so an app keymap can remap them):

=========  ===================  ============================================
key        id                   action
=========  ===================  ============================================
``/``      ``log.search``       open the search input (Enter searches
                                forward from the view, Escape closes;
                                smart case; ``re:`` prefix for a regex)
``n``      ``log.search_next``  next match (wraps around)
``N``      ``log.search_prev``  previous match (wraps around)
``e``      ``log.first_error``  jump to the first error line
                                (``LogIndex.ERROR_PATTERN``;
                                then ``n`` / ``N`` go to the next ones)
``End``    ``log.follow``       jump to the end and follow
``escape`` ``log.search_close`` close the search input (while it is focused)
``escape`` ``log.back``         leave the log (``LogLines.Back``: the Jobs tab
                                focuses its table)
=========  ===================  ============================================

The current match is shown with a ``▶`` marker in the gutter and the matching
text in reverse bold (the whole line when the text is not visible), so it
stays visible with ``NO_COLOR``. Escape sequences (colours) in the log are
stripped, tabs expanded, other control characters shown as ``�``.

Performance notes (see ``bench/tui_log.py`` and ``bench/RESULTS.md``): while a
log streams, every frame shows new lines, so ``LogLines`` avoids what made
frames expensive: it sets ``virtual_size`` without a screen layout pass, builds a
plain line as one pre-cropped ``Strip``, reads the visible lines with a single
``LogIndex.lines`` call per update and repaints the scrollbar only when its
thumb moves. These use Textual internals (``Widget._refresh_scrollbars``, the
``ScrollBar`` reactives) checked against Textual 8.2.8; the Pilot tests cover
them. Python's full garbage collections (30-110 ms in an app of this size) are
the other source of long frames; an app can call ``gc.freeze()`` once started.
"""

from __future__ import annotations

import os
import re
from math import ceil
from time import monotonic
from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual.binding import BindingType
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input
from textual.worker import get_current_worker

from evopilot.tui import keymap

if TYPE_CHECKING:
    from typing_extensions import Self

    from evopilot.core.jobs.logindex import LogIndex
    from evopilot.core.jobs.logread import LogReader

__all__ = ["LogView", "LogLines"]

MIN_REFRESH_INTERVAL = 1 / 30
"""Growth notifications are coalesced into at most one refresh per this many
seconds (~30 frames/s while a log streams: smooth to read, and a frame of a
full-screen log view costs ~10-20 ms of CPU in Textual, so 60/s would take a
whole core)."""

INLINE_INDEX_BYTES = 4 * 1024 * 1024
"""Bytes indexed on the UI thread per refresh; more goes to a thread worker."""

BACKGROUND_STEP_BYTES = 8 * 1024 * 1024
"""Bytes indexed per step by the background worker (a few ms per step)."""

TAIL_LINES = 500
"""Lines shown (and scrollable) while a big file is still being indexed."""

_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CTRL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def display_text(line: str) -> str:
    """What a log line looks like on screen: no escapes, tabs expanded."""
    if "\x1b" in line:
        line = _ANSI_RE.sub("", line)
    if "\t" in line:
        line = line.expandtabs(8)
    return _CTRL_RE.sub("\ufffd", line)


def parse_query(query: str) -> tuple[str, bool, bool]:
    """``(pattern, regex, case)`` from what the user typed.

    ``re:`` prefix: a regular expression. Smart case: case-sensitive only when
    the pattern contains an upper-case letter.
    """
    regex = query.startswith("re:")
    pattern = query[3:] if regex else query
    case = any(c.isupper() for c in pattern)
    return pattern, regex, case


class LogLines(ScrollView, can_focus=True):
    """The Line API part of :class:`LogView`: renders the visible lines only."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "log-lines--gutter",
        "log-lines--match",
        "log-lines--other-match",
    }

    DEFAULT_CSS = """
    LogLines {
        height: 1fr;
        background: $surface;
        color: $text;
        overflow-x: auto;
        overflow-y: scroll;
        scrollbar-size-vertical: 1;
    }
    LogLines > .log-lines--gutter { color: $text-muted; }
    LogLines > .log-lines--match { text-style: reverse bold; }
    LogLines > .log-lines--other-match { text-style: underline; }
    """

    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.LOG)

    class Back(Message):
        """Escape in the log: the container puts the focus back where it came from."""

    def __init__(self, view: LogView) -> None:
        super().__init__()
        self._view = view
        self._strips: LRUCache[int, tuple[tuple, Strip]] = LRUCache(512)
        self._max_width = 0
        self._styles: tuple[Style, Style, Style, Style] | None = None
        self._scrollbar_key: tuple | None = None
        self.programmatic_scroll = False

    # -- actions (delegated to the view) --------------------------------------

    def action_search(self) -> None:
        self._view.open_search()

    def action_search_next(self) -> None:
        self._view.search_next()

    def action_search_prev(self) -> None:
        self._view.search_next(backwards=True)

    def action_first_error(self) -> None:
        self._view.jump_to_first_error()

    def action_follow(self) -> None:
        self._view.follow()

    def action_back(self) -> None:
        self.post_message(self.Back())

    # -- scrolling -------------------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        # Not ScrollView.watch_scroll_y: it repaints the whole scrollbar on
        # every change, which cost as much as drawing the lines themselves
        # while a log streams; _sync_scrollbar repaints it only when its thumb
        # moves on screen.
        self._sync_scrollbar()
        if round(old_value) != round(new_value):
            self.refresh()
        if not self.programmatic_scroll:
            # A move up that leaves the bottom pauses following; a move down
            # that reaches the bottom resumes it. A clamp caused by a resize
            # or a shorter file lands on the bottom and changes nothing.
            at_end = new_value >= self.max_scroll_y
            if new_value < old_value and not at_end:
                self._view.following = False
            elif new_value > old_value and at_end:
                self._view.following = True
        self._view._update_subtitle()

    def on_resize(self) -> None:
        if self._view.following:
            self.scroll_to_line(0, end=True)
        self._view._update_subtitle()

    def scroll_to_line(self, y: int, *, end: bool = False) -> None:
        """Scroll without touching the follow state."""
        self.programmatic_scroll = True
        try:
            if end:
                self.scroll_to(y=self.max_scroll_y, animate=False)
            else:
                self.scroll_to(y=y, animate=False)
        finally:
            self.programmatic_scroll = False

    def set_height(self, lines: int, *, sync_scrollbar: bool = True) -> None:
        """Set the scrollable height (in lines) without a layout pass.

        ``virtual_size`` is a layout reactive: assigning it re-lays out and
        re-renders the whole screen, on every frame while a log grows. A line
        API widget has no children, so only its scrollbars depend on the
        virtual size: set the value without the layout, update the scrollbars
        (``_scroll_update`` triggers a layout itself when a scrollbar appears
        or disappears) and repaint this widget only.
        """
        size = Size(max(self._max_width, self.virtual_size.width), lines)
        old = self.virtual_size
        if size == old:
            return
        self.set_reactive(Widget.virtual_size, size)
        if not self.container_size:
            return  # not laid out yet: the first layout sets the scrollbars up
        # Scrollbar visibility (a layout happens only if it changes).
        self._refresh_scrollbars()
        self.scroll_target_y = self.validate_scroll_target_y(self.scroll_target_y)
        self.scroll_y = self.validate_scroll_y(self.scroll_y)
        if sync_scrollbar:
            self._sync_scrollbar()
        if size.width != old.width and self.show_horizontal_scrollbar:
            bar = self.horizontal_scrollbar
            bar.window_virtual_size = size.width
            bar.window_size = self.container_size.width - self.scrollbar_size_vertical
        self.refresh()

    def _sync_scrollbar(self) -> None:
        """Keep the vertical scrollbar's numbers current; repaint it only when
        the thumb it draws (in 1/8 cells, as ``ScrollBarRender`` does) changes."""
        if not self.show_vertical_scrollbar:
            return
        bar = self.vertical_scrollbar
        virtual = self.virtual_size.height
        window = self.container_size.height - self.scrollbar_size_horizontal
        position = self.scroll_y
        bar.set_reactive(ScrollBar.window_virtual_size, virtual)
        bar.set_reactive(ScrollBar.window_size, window)
        bar.set_reactive(ScrollBar.position, position)
        size = bar.size.height
        key: tuple = (size, window >= virtual)
        if size and virtual > window > 0:
            thumb = max(1.0, window / (virtual / size))
            start = (size - thumb) * (position / (virtual - window))
            key = (size, int(start * 8), ceil(thumb * 8))
        if key != self._scrollbar_key:
            self._scrollbar_key = key
            bar.refresh()

    def clear_cache(self, from_line: int | None = None) -> None:
        if from_line is None:
            self._strips.clear()
            return
        for key in [k for k in self._strips.keys() if k >= from_line]:
            self._strips.discard(key)

    # -- rendering -------------------------------------------------------------

    def _get_styles(self) -> tuple[Style, Style, Style, Style]:
        if self._styles is not None:
            return self._styles
        return (
            self.rich_style,
            self.get_component_rich_style("log-lines--gutter", partial=True),
            self.get_component_rich_style("log-lines--match", partial=True),
            self.get_component_rich_style("log-lines--other-match", partial=True),
        )

    def render_lines(self, crop):  # type: ignore[no-untyped-def]
        # Look the styles up once per update, not once per line, and read the
        # lines of the update from the file in one go.
        self._styles = (
            self.rich_style,
            self.get_component_rich_style("log-lines--gutter", partial=True),
            self.get_component_rich_style("log-lines--match", partial=True),
            self.get_component_rich_style("log-lines--other-match", partial=True),
        )
        self._view._prefetch(self.scroll_offset.y + crop.y, crop.height)
        try:
            return super().render_lines(crop)
        finally:
            self._styles = None
            self._view._prefetched = None

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        number = scroll_y + y
        width = self.size.width
        base, gutter_style, match_style, other_style = self._get_styles()
        view = self._view
        text = view._text_of(number)
        if text is None:
            return Strip.blank(width, base)
        is_match = view.match_line is not None and view._match_number(number) == view.match_line
        gutter = view._gutter(number, is_match)
        body_width = max(0, width - len(gutter))
        shown = display_text(text)
        ascii_text = shown.isascii()
        text_width = len(shown) if ascii_text else cell_len(shown)
        if text_width + len(gutter) > self._max_width:
            self._max_width = text_width + len(gutter)
            self.call_later(self._grow_width)
        segments = [Segment(gutter, base + gutter_style)] if gutter else []
        regex = view._display_regex
        if ascii_text and not is_match and (regex is None or regex.search(shown) is None):
            # The common case, kept cheap: one Strip, cropped by slicing.
            body = shown[scroll_x : scroll_x + body_width]
            segments.append(Segment(body.ljust(body_width), base))
            return Strip(segments, width if body_width else len(gutter))
        key = (is_match, view._search_key, shown)
        cached = self._strips.get(number)
        if cached is not None and cached[0] == key:
            body_strip = cached[1]
        else:
            body = Text(shown, style=base, no_wrap=True, end="")
            if regex is not None or is_match:
                style = match_style if is_match else other_style
                found = False
                if regex is not None:
                    for m in regex.finditer(shown):
                        if m.end() > m.start():
                            body.stylize(style, m.start(), m.end())
                            found = True
                if is_match and not found:
                    body.stylize(match_style)
            body_strip = Strip(body.render(self.app.console))
            self._strips.set(number, (key, body_strip))
        cropped = body_strip.crop_extend(scroll_x, scroll_x + body_width, base)
        segments.extend(cropped)
        return Strip(segments, len(gutter) + body_width)

    def _grow_width(self) -> None:
        if self.virtual_size.width < self._max_width:
            self.set_height(self.virtual_size.height)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def visible_text(self) -> list[str]:
        """The plain text of the rows as rendered now (for tests and debugging)."""
        return [self.render_line(y).text for y in range(self.scrollable_content_region.height)]


class _SearchInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.LOG_SEARCH)

    def action_close_search(self) -> None:
        view = self.parent
        if isinstance(view, LogView):
            view.close_search()


class LogView(Vertical):
    """A view of a log file; see the module docstring."""

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        border: round $foreground 30%;
        border-title-align: left;
        border-subtitle-align: right;
        &:focus-within { border: round $accent; }
        & > _SearchInput {
            dock: bottom;
            display: none;
        }
        & > _SearchInput.-open { display: block; }
    }
    """

    following: reactive[bool] = reactive(True, init=False)
    """True while new lines scroll into view."""

    class _Indexed(Message):
        """Posted (from the indexing thread) on progress and when done."""

        def __init__(self, index: LogIndex, done: bool) -> None:
            super().__init__()
            self.index = index
            self.done = done

    class _Found(Message):
        """Posted (from a search thread) with the result of a search."""

        def __init__(
            self, index: LogIndex, line: int | None, wrapped: bool, what: str, pattern: str | None
        ) -> None:
            super().__init__()
            self.index = index
            self.line = line
            self.wrapped = wrapped
            self.what = what
            self.pattern = pattern

    def __init__(
        self,
        reader: LogReader | None = None,
        *,
        safety_poll: float | None = None,
        line_numbers: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._reader = reader
        self._index: LogIndex | None = None
        self._tail_mode = False
        self._tail: list[str] = []
        self._tail_offset = 0
        self._count = 0  # line count currently displayed (index mode)
        self._size_seen = 0
        self._indexing = False
        self._grow_pending = False
        self._last_grow = 0.0
        self._pending_after_index: list = []
        self._error: str | None = None
        self._line_numbers = line_numbers
        self._safety_poll = safety_poll
        self._prefetched: tuple[int, list[str]] | None = None
        self._subtitle_state: tuple | None = None
        self._subtitle_time = 0.0
        self._subtitle_timer_pending = False
        self.match_line: int | None = None
        """Line number (0-based) of the current search match, if any."""
        self._match_pattern: tuple[str, bool, bool] | None = None
        self._matching_errors = False
        """The last search was ``e`` (error lines): ``/`` then starts empty."""
        self._display_regex: re.Pattern[str] | None = None
        self._search_key: object = None
        self.lines_view = LogLines(self)
        self._search_input = _SearchInput(
            placeholder="search (smart case; re: for a regex) - Enter: find, Esc: close",
            compact=True,
        )

    def compose(self):
        yield self.lines_view
        yield self._search_input

    def on_mount(self) -> None:
        self._open()
        if self._safety_poll:
            # Safety net only: a slow stat of the file in case a growth event
            # was missed. The engine's events remain the normal trigger.
            self.set_interval(self._safety_poll, self.notify_grew)

    def on_unmount(self) -> None:
        if self._index is not None:
            self._index.close()

    def focus(self, scroll_visible: bool = True) -> Self:
        """Focusing the view focuses its lines (where the bindings live)."""
        self.lines_view.focus(scroll_visible)
        return self

    # -- public API --------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The path of the log shown."""
        return None if self._reader is None else self._reader.path

    @property
    def index(self) -> LogIndex | None:
        return self._index

    @property
    def is_tail_mode(self) -> bool:
        """True while a big file is shown from its tail, before the index is complete."""
        return self._tail_mode

    def set_reader(self, reader: LogReader | None) -> None:
        """Show another log (or nothing); starts following its end."""
        self._reader = reader
        self.following = True
        if self.is_mounted:
            self._open()

    def notify_grew(self) -> None:
        """The log file has new bytes (or was replaced). Cheap; coalesced.

        Call it from the app's event loop thread (from another thread use
        ``app.call_from_thread(view.notify_grew)``).
        """
        if self._index is None or self._grow_pending:
            return
        self._grow_pending = True
        delay = self._last_grow + MIN_REFRESH_INTERVAL - monotonic()
        if delay > 0:
            self.set_timer(delay, self._apply_growth)
        else:
            self.call_later(self._apply_growth)

    async def file_grew(self) -> None:
        """Async spelling of :meth:`notify_grew`."""
        self.notify_grew()

    def follow(self) -> None:
        """Jump to the end and follow new lines."""
        self.following = True
        self.lines_view.scroll_to_line(0, end=True)
        self._update_subtitle()

    def visible_text(self) -> list[str]:
        """The plain text of the rows as rendered now (gutter included)."""
        return self.lines_view.visible_text()

    # -- opening and growth ------------------------------------------------------

    def _open(self) -> None:
        if self._index is not None:
            self._index.close()
        self.workers.cancel_group(self, "log-index")
        self.workers.cancel_group(self, "log-search")
        self._index = None
        self._tail_mode = False
        self._tail = []
        self._count = 0
        self._indexing = False
        self._pending_after_index = []
        self._error = None
        self.match_line = None
        self.lines_view.clear_cache()
        self.lines_view._max_width = 0
        self.border_title = os.path.basename(self._reader.path) if self._reader else "no log"
        if self._reader is None:
            self.lines_view.set_height(0)
            self._update_subtitle()
            return
        index = self._reader.index()
        self._index = index
        try:
            index.refresh(max_bytes=INLINE_INDEX_BYTES)
        except OSError as error:
            self._error = f"cannot read: {error.strerror or error}"
            self._update_subtitle()
            return
        self._size_seen = index.size
        if not index.complete:
            self._enter_tail_mode()
            self._start_indexer()
        else:
            self._sync_count()
        if self.following:
            self.lines_view.scroll_to_line(0, end=True)
        self._update_subtitle()

    def _enter_tail_mode(self) -> None:
        assert self._index is not None
        self._tail_mode = True
        self._reload_tail()

    def _reload_tail(self) -> None:
        assert self._index is not None
        gen = self._index.generation
        self._tail_offset, self._tail = self._index.tail(max(TAIL_LINES, 2 * self.size.height))
        if self._index.generation != gen:
            self._open()
            return
        self.lines_view.clear_cache()
        self.lines_view.set_height(len(self._tail))
        if self.following:
            self.lines_view.scroll_to_line(0, end=True)
        self.lines_view.refresh()

    def _start_indexer(self) -> None:
        if self._indexing or self._index is None:
            return
        self._indexing = True
        index = self._index

        def work() -> None:
            worker = get_current_worker()
            last_post = monotonic()
            while not worker.is_cancelled:
                try:
                    index.refresh(max_bytes=BACKGROUND_STEP_BYTES)
                except (OSError, ValueError):
                    break  # closed or unreadable: the next growth event retries
                if index.complete:
                    break
                if monotonic() - last_post > 0.1:
                    self.post_message(self._Indexed(index, done=False))
                    last_post = monotonic()
            if not worker.is_cancelled:
                self.post_message(self._Indexed(index, done=True))

        self.run_worker(work, group="log-index", thread=True, exclusive=True, exit_on_error=False)

    @on(_Indexed)
    def _on_indexed(self, message: _Indexed) -> None:
        message.stop()
        if message.index is not self._index:
            return
        if not message.done:
            if not self._tail_mode:
                self._sync_count()
            self._update_subtitle()
            return
        self._indexing = False
        if self._tail_mode:
            self._leave_tail_mode()
        else:
            self._sync_count()
        pending, self._pending_after_index = self._pending_after_index, []
        for action in pending:
            action()
        # Pick up what was appended while indexing (no-op when nothing was).
        self.notify_grew()

    def _leave_tail_mode(self) -> None:
        assert self._index is not None
        top_in_tail = self.lines_view.scroll_offset.y
        self._tail_mode = False
        self._tail = []
        self.lines_view.clear_cache()
        self._sync_count(scroll=False)
        if self.following:
            self.lines_view.scroll_to_line(0, end=True)
        else:
            first = self._index.line_at_offset(self._tail_offset)
            self.lines_view.scroll_to_line(first + top_in_tail)
        self.lines_view.refresh()
        self._update_subtitle()

    def _apply_growth(self) -> None:
        self._grow_pending = False
        self._last_grow = monotonic()
        index = self._index
        if index is None:
            return
        if self._indexing:
            # The worker will reach the new end by itself; keep the tail live.
            if self._tail_mode and self.following:
                self._reload_tail()
            return
        gen = index.generation
        try:
            index.refresh(max_bytes=INLINE_INDEX_BYTES)
        except OSError as error:
            self._error = f"cannot read: {error.strerror or error}"
            self._update_subtitle()
            return
        if index.generation != gen:
            self._open()  # replaced or truncated: start again at its end
            return
        if not index.complete:
            self._start_indexer()
        self._sync_count()

    def _sync_count(self, scroll: bool = True) -> None:
        """Show the index's current line count (index mode)."""
        index = self._index
        if index is None or self._tail_mode:
            return
        old = self._count
        new = index.line_count
        size_changed = index.size != self._size_seen
        self._size_seen = index.size
        if new == old and not size_changed:
            return
        self._count = new
        # The old last line may have been partial and changed.
        self.lines_view.clear_cache(max(0, old - 1))
        following = scroll and self.following
        # When following, the scrollbar is synced once, after the scroll.
        self.lines_view.set_height(new, sync_scrollbar=not following)
        if following:
            self.lines_view.scroll_to_line(0, end=True)
            self.lines_view._sync_scrollbar()
        top = self.lines_view.scroll_offset.y
        height = self.lines_view.size.height
        if old - 1 < top + height:
            self.lines_view.refresh()
        self._update_subtitle()

    # -- what LogLines asks --------------------------------------------------------

    def _text_of(self, number: int) -> str | None:
        if number < 0:
            return None
        if self._tail_mode:
            return self._tail[number] if number < len(self._tail) else None
        if self._index is None or number >= self._count:
            return None
        if self._prefetched is not None:
            first, texts = self._prefetched
            if 0 <= number - first < len(texts):
                return texts[number - first]
        try:
            return self._index.line(number)
        except IndexError:
            return None  # the file shrank since the last refresh

    def _match_number(self, number: int) -> int | None:
        """Index line number of displayed row ``number`` (None in tail mode)."""
        return None if self._tail_mode else number

    def _gutter(self, number: int, is_match: bool) -> str:
        """Line number and match marker column (none while showing the tail)."""
        if self._tail_mode:
            return ""
        marker = "▶" if is_match else " "
        if not self._line_numbers:
            return marker
        return f"{number + 1:>{len(str(max(1, self._count)))}}{marker}"

    def _prefetch(self, first: int, count: int) -> None:
        """Read the lines an update will draw with one ``LogIndex.lines`` call."""
        if self._tail_mode or self._index is None or first >= self._count:
            self._prefetched = None
            return
        count = min(count, self._count - first)
        try:
            self._prefetched = (first, self._index.lines(first, count))
        except (OSError, ValueError):
            self._prefetched = None

    def _update_subtitle(self, *, now: bool = False) -> None:
        """Update the border subtitle; position/count changes at most 4 times a second."""
        state = (self.following, self._error, self.match_line, self._tail_mode, self._indexing)
        if not now and state == self._subtitle_state:
            if monotonic() - self._subtitle_time < 0.25:
                if not self._subtitle_timer_pending:
                    self._subtitle_timer_pending = True
                    self.set_timer(0.25, self._deferred_subtitle)
                return
        self._subtitle_state = state
        self._subtitle_time = monotonic()
        parts = []
        if self._error:
            parts.append(self._error)
        parts.append("following" if self.following else "paused")
        if self._indexing and self._index is not None:
            parts.append(f"indexing {self._index.progress:.0%}")
        if not self._tail_mode and self._count:
            top = self.lines_view.scroll_offset.y
            bottom = min(self._count, top + self.lines_view.size.height)
            parts.append(f"{top + 1}-{bottom}/{self._count}")
        if self.match_line is not None:
            parts.append(f"match {self.match_line + 1}")
        subtitle = " · ".join(parts)
        if subtitle != self.border_subtitle:
            self.border_subtitle = subtitle

    def _deferred_subtitle(self) -> None:
        self._subtitle_timer_pending = False
        self._update_subtitle(now=True)

    def watch_following(self, following: bool) -> None:
        self._update_subtitle()

    # -- search --------------------------------------------------------------------

    def open_search(self) -> None:
        self._search_input.add_class("-open")
        if self._match_pattern is not None and not self._matching_errors:
            pattern, regex, _case = self._match_pattern
            self._search_input.value = f"re:{pattern}" if regex else pattern
        self._search_input.focus()

    def close_search(self) -> None:
        self._search_input.remove_class("-open")
        self.lines_view.focus()

    @on(Input.Submitted)
    def _on_search_submitted(self, event: Input.Submitted) -> None:
        if event.input is not self._search_input:
            return
        event.stop()
        query = event.value
        self.close_search()
        if not query:
            return
        pattern, regex, case = parse_query(query)
        try:
            display = re.compile(pattern if regex else re.escape(pattern), 0 if case else re.IGNORECASE)
        except re.error as error:
            self.notify(f"bad regular expression: {error}", severity="error")
            return
        self._match_pattern = (pattern, regex, case)
        self._matching_errors = False
        self._set_display_regex(display)
        self._run_search(self.lines_view.scroll_offset.y, backwards=False)

    def search_next(self, backwards: bool = False) -> None:
        """Next (or previous) match of the last search; wraps around."""
        if self._match_pattern is None:
            self.open_search()
            return
        top = self.lines_view.scroll_offset.y
        if self.match_line is not None:
            start = self.match_line - 1 if backwards else self.match_line + 1
        else:
            start = top + self.lines_view.size.height - 1 if backwards else top
        self._run_search(start, backwards=backwards)

    def jump_to_first_error(self) -> None:
        """Scroll to (and mark) the first line that looks like an error."""
        self._run_search(0, backwards=False, error=True)

    def _set_display_regex(self, regex: re.Pattern[str] | None) -> None:
        self._display_regex = regex
        self._search_key = None if regex is None else (regex.pattern, regex.flags)
        self.lines_view.refresh()

    def _run_search(self, start: int, *, backwards: bool, error: bool = False) -> None:
        index = self._index
        if index is None:
            return
        if self._indexing:
            # Searching needs line numbers: run once the index is complete.
            self.notify(f"indexing ({index.progress:.0%}); the search will run when it is done")
            self._pending_after_index = [
                lambda: self._run_search(start if not self._tail_mode else 0, backwards=backwards, error=error)
            ]
            return
        pattern = self._match_pattern

        def work() -> None:
            worker = get_current_worker()
            stop = lambda: worker.is_cancelled  # noqa: E731
            total = index.line_count
            wrapped = False
            if error:
                line = index.first_error_line(should_stop=stop)
                self.post_message(self._Found(index, line, False, "error line", index.ERROR_PATTERN))
                return
            assert pattern is not None
            text, regex, case = pattern
            line = index.search(text, start, backwards, regex, case, should_stop=stop)
            if line is None and not worker.is_cancelled:
                wrapped = True
                again = total - 1 if backwards else 0
                line = index.search(text, again, backwards, regex, case, should_stop=stop)
            if not worker.is_cancelled:
                self.post_message(self._Found(index, line, wrapped, repr(text), None))

        self.run_worker(work, group="log-search", thread=True, exclusive=True, exit_on_error=False)

    @on(_Found)
    def _on_found(self, message: _Found) -> None:
        message.stop()
        if message.index is not self._index:
            return
        if message.pattern is not None:
            # After `e`, n / N move between error lines.
            self._match_pattern = (message.pattern, True, True)
            self._matching_errors = True
            self._set_display_regex(re.compile(message.pattern))
        if message.line is None:
            self.notify(f"no {message.what} found", severity="warning")
            return
        if message.wrapped:
            self.notify("search wrapped around", timeout=1.5)
        self.show_line(message.line)

    def show_line(self, line: int) -> None:
        """Mark ``line`` as the current match and scroll it into view (pauses following)."""
        self.following = False
        self.match_line = line
        self._sync_count()
        height = max(1, self.lines_view.size.height)
        top = self.lines_view.scroll_offset.y
        if not top <= line < top + height:
            self.lines_view.scroll_to_line(max(0, line - height // 3))
        self.lines_view.refresh()
        self._update_subtitle()
