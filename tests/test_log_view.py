"""LogView in a tiny app, on real files, driven by Textual's Pilot.

Assertions are on what is rendered (``LogView.visible_text()`` renders each
row through ``LogLines.render_line``) and, for the border, on the subtitle.
"""

from __future__ import annotations

import os

import pytest
from textual.app import App, ComposeResult

import evopilot.tui.widgets.log_view as log_view_module
from evopilot.core.jobs.logread import LogReader
from evopilot.tui.widgets.log_view import LogView

SIZE = (70, 14)


class LogApp(App):
    def __init__(self, path: str | None) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield LogView(LogReader(self.path) if self.path else None, id="log")

    def on_mount(self) -> None:
        self.query_one(LogView).focus()


def write_lines(path, lines, mode="w"):
    with open(path, mode, encoding="utf-8", newline="") as f:
        for line in lines:
            f.write(line + "\n")


async def settle(pilot, app) -> None:
    """Let workers finish and the screen update."""
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def texts(view: LogView) -> list[str]:
    return [row.rstrip() for row in view.visible_text()]


def contains(rows: list[str], needle: str) -> bool:
    return any(needle in row for row in rows)


async def grow(pilot, view: LogView, path, lines) -> None:
    write_lines(path, lines, "a")
    view.notify_grew()
    await pilot.pause(0.05)
    await pilot.pause()


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "job.log"
    write_lines(path, [f"step {i:04d} ok" for i in range(300)])
    return path


async def test_shows_last_lines(log_file):
    app = LogApp(str(log_file))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        view = app.query_one(LogView)
        rows = texts(view)
        assert rows[-1].endswith("step 0299 ok")
        assert rows[-1].startswith("300 ")  # line number gutter
        assert contains(rows, "step 0290 ok")
        assert not contains(rows, "step 0001 ok")
        assert "following" in str(view.border_subtitle)
        assert view.border_title == "job.log"


@pytest.mark.slow
async def test_follow_pause_and_resume(log_file):
    app = LogApp(str(log_file))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        view = app.query_one(LogView)
        # Following: appended lines scroll into view.
        await grow(pilot, view, log_file, ["appended A", "appended B"])
        rows = texts(view)
        assert rows[-1].endswith("appended B")
        assert rows[-2].endswith("appended A")
        # Scroll up: following stops and appending does not move the view.
        await pilot.press("pageup")
        await pilot.pause(0.3)
        assert "paused" in str(view.border_subtitle)
        assert not view.following
        before = texts(view)
        assert not contains(before, "appended B")
        await grow(pilot, view, log_file, [f"later {i}" for i in range(50)])
        assert texts(view) == before
        # End resumes following and shows the new end.
        await pilot.press("end")
        await pilot.pause()
        assert view.following
        assert "following" in str(view.border_subtitle)
        rows = texts(view)
        assert rows[-1].endswith("later 49")
        await grow(pilot, view, log_file, ["after resume"])
        assert texts(view)[-1].endswith("after resume")


async def test_many_notifications_coalesce(log_file):
    app = LogApp(str(log_file))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        view = app.query_one(LogView)
        write_lines(log_file, [f"burst {i}" for i in range(1000)], "a")
        generation = view.index.generation
        for _ in range(1000):
            view.notify_grew()  # one refresh is scheduled, not 1000
        assert view._grow_pending
        await pilot.pause(0.05)
        await pilot.pause()
        assert not view._grow_pending
        assert view.index.generation == generation
        assert texts(view)[-1].endswith("burst 999")


async def test_partial_line_progress_bar_updates(tmp_path):
    path = tmp_path / "p.log"
    write_lines(path, ["epoch 1"])
    app = LogApp(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        view = app.query_one(LogView)
        with open(path, "a") as f:
            f.write("\r 10%|#")
        view.notify_grew()
        await pilot.pause(0.05)
        assert contains(texts(view), " 10%|#")
        with open(path, "a") as f:
            f.write("\r 60%|######")
        view.notify_grew()
        await pilot.pause(0.05)
        rows = texts(view)
        assert contains(rows, " 60%|######")
        assert not contains(rows, " 10%")


@pytest.mark.slow
async def test_search_next_prev_and_escape(tmp_path):
    path = tmp_path / "s.log"
    lines = [f"row {i}" for i in range(400)]
    lines[37] = "the needle is here"
    lines[250] = "second NEEDLE"
    write_lines(path, lines)
    app = LogApp(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        view = app.query_one(LogView)
        await pilot.press("slash")
        await pilot.pause()
        search_input = view.query_one("_SearchInput")
        assert app.focused is search_input
        assert search_input.display
        await pilot.press(*"needle", "enter")
        await settle(pilot, app)
        assert not search_input.display
        assert view.match_line == 37  # wrapped from the end to the top
        assert not view.following
        rows = texts(view)
        match_rows = [r for r in rows if "▶" in r]
        assert len(match_rows) == 1 and match_rows[0].endswith("the needle is here")
        await pilot.press("n")
        await settle(pilot, app)
        assert view.match_line == 250  # smart case: lower-case pattern ignores case
        assert [r for r in texts(view) if "▶" in r][0].endswith("second NEEDLE")
        await pilot.press("N")
        await settle(pilot, app)
        assert view.match_line == 37
        assert contains(texts(view), "▶the needle is here")
        # Escape closes the input without searching.
        await pilot.press("slash")
        await pilot.pause()
        assert search_input.display
        await pilot.press("x", "escape")
        await pilot.pause()
        assert not search_input.display
        assert app.focused is view.lines_view
        assert view.match_line == 37
        # A regex.
        await pilot.press("slash")
        search_input.value = ""
        await pilot.press(*"re:^row 3[0-9]{2}$", "enter")
        await settle(pilot, app)
        assert view.match_line is not None and 300 <= view.match_line <= 399


async def test_first_error_line(tmp_path):
    path = tmp_path / "e.log"
    lines = [f"training {i} error_rate=0.1" for i in range(500)]
    lines[321] = "Traceback (most recent call last):"
    lines[322] = '  File "train.py", line 3'
    lines[323] = "ValueError: boom"
    write_lines(path, lines)
    app = LogApp(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        view = app.query_one(LogView)
        assert not contains(texts(view), "Traceback")
        await pilot.press("e")
        await settle(pilot, app)
        assert view.match_line == 321
        rows = texts(view)
        assert contains(rows, "322▶Traceback (most recent call last):")
        assert contains(rows, "ValueError: boom")
        # n goes on to the next error line.
        await pilot.press("n")
        await settle(pilot, app)
        assert view.match_line == 323


async def test_keymap_remaps_by_binding_id(tmp_path):
    path = tmp_path / "k.log"
    write_lines(path, [f"x {i}" for i in range(100)] + ["FAILED test_b"])
    app = LogApp(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        app.set_keymap({"log.first_error": "x"})
        await pilot.pause()
        view = app.query_one(LogView)
        await pilot.press("e")  # no longer bound
        await settle(pilot, app)
        assert view.match_line is None
        await pilot.press("x")
        await settle(pilot, app)
        assert view.match_line == 100


async def test_invalid_utf8_and_huge_line(tmp_path):
    path = tmp_path / "u.log"
    with open(path, "wb") as f:
        f.write(b"fine\n")
        f.write(b"bad \xff\xfe bytes\n")
        f.write(b"H" * (10 * 1024 * 1024) + b"\n")
        f.write(b"tab\there \x1b[31mred\x1b[0m \x07bell\n")
        f.write(b"last\n")
    app = LogApp(str(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        view = app.query_one(LogView)
        rows = [r for r in texts(view) if r]
        assert rows[-1].endswith("last")
        assert contains(rows, "bad \ufffd\ufffd bytes")
        assert contains(rows, "tab     here red \ufffdbell")  # no escape codes on screen
        huge = [r for r in rows if "HHHH" in r]
        assert len(huge) == 1
        # The huge line is cut (4,000 chars + a note): scroll to its end.
        assert view.lines_view.virtual_size.width < 4100
        view.lines_view.scroll_to(x=view.lines_view.max_scroll_x, animate=False)
        await pilot.pause()
        assert contains(texts(view), f"H … [{10 * 1024 * 1024:,} bytes]")


async def test_replaced_file_is_reread(log_file, tmp_path):
    app = LogApp(str(log_file))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        view = app.query_one(LogView)
        new = tmp_path / "new.log"
        write_lines(new, ["fresh 1", "fresh 2"])
        os.replace(new, log_file)
        view.notify_grew()
        await pilot.pause(0.05)
        await pilot.pause()
        rows = [r for r in texts(view) if r]
        assert rows[-1].endswith("fresh 2")
        assert not contains(rows, "step 0299")


async def test_no_path_then_set_path(log_file):
    app = LogApp(None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        view = app.query_one(LogView)
        assert all(not r for r in texts(view))
        view.notify_grew()  # harmless without a file
        view.set_reader(LogReader(str(log_file)))
        await settle(pilot, app)
        assert texts(view)[-1].endswith("step 0299 ok")


@pytest.mark.slow
async def test_no_color_match_is_marked_without_colour(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    path = tmp_path / "n.log"
    write_lines(path, [f"line {i}" for i in range(50)] + ["special one"] + ["tail"] * 3)
    app = LogApp(str(path))
    async with app.run_test(size=SIZE) as pilot:
        assert app.no_color
        await settle(pilot, app)
        view = app.query_one(LogView)
        await pilot.press("slash", *"special", "enter")
        await settle(pilot, app)
        assert view.match_line == 50
        row = next(y for y, r in enumerate(texts(view)) if "special one" in r)
        strip = view.lines_view.render_line(row)
        assert "▶special one" in strip.text
        styled = [seg for seg in strip if "special" in seg.text]
        assert styled and all(seg.style and seg.style.reverse and seg.style.bold for seg in styled)


@pytest.mark.slow
async def test_big_file_shows_tail_then_indexes_in_background(tmp_path, monkeypatch):
    # Small budgets so that a ~3 MB file takes the big-file path.
    monkeypatch.setattr(log_view_module, "INLINE_INDEX_BYTES", 64 * 1024)
    monkeypatch.setattr(log_view_module, "BACKGROUND_STEP_BYTES", 128 * 1024)
    path = tmp_path / "big.log"
    write_lines(path, [f"{i:07d} some log text for the big file" for i in range(70000)])
    app = LogApp(str(path))
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(LogView)
        await pilot.pause()
        # The end is on screen whether or not the index is complete yet.
        assert texts(view)[-1].endswith("0069999 some log text for the big file")
        await settle(pilot, app)
        assert not view.is_tail_mode
        assert view.index.complete and view.index.line_count == 70000
        rows = texts(view)
        assert rows[-1].startswith("70000 ")
        assert rows[-1].endswith("0069999 some log text for the big file")
        await grow(pilot, view, path, ["grown after indexing"])
        assert texts(view)[-1].endswith("grown after indexing")
        # Search works over the whole file.
        await pilot.press("slash", *"0000042 ", "enter")
        await settle(pilot, app)
        assert view.match_line == 42
        assert contains(texts(view), "▶0000042 some log text")
