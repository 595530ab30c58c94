"""Small modal dialogs: add a project, add benchmarks, one line of text, confirm, show a report.

A dialog that changes something takes an async ``submit`` callable; an ``EvopilotError`` from it
is shown inline in the dialog, which stays open and changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from evopilot.core import quoting
from evopilot.core.errors import EvopilotError
from evopilot.core.models import Job
from evopilot.tui import keymap
from evopilot.tui.widgets.path_input import PathInput

DIALOG_CANCEL = [keymap.binding(s) for s in keymap.DIALOG if s.id == "dialog.cancel"]


class _Dialog(ModalScreen):
    BINDINGS: ClassVar[list[BindingType]] = DIALOG_CANCEL

    DEFAULT_CSS = """
    _Dialog { align: center middle; }
    _Dialog > Vertical {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        padding: 0 1;
        background: $surface;
    }
    _Dialog .title { text-style: bold; margin-bottom: 1; }
    _Dialog .hint { color: $text-muted; }
    _Dialog .error { color: $text-error; text-style: bold; }
    _Dialog Input { margin-bottom: 1; border: none; height: 1; background: $boost; }
    _Dialog Input:focus { background: $primary 25%; }
    """

    def action_cancel(self) -> None:
        self.dismiss(None)


class _FormDialog(_Dialog):
    """A dialog of inputs with an ``#error`` line: submitting runs a call, which closes the
    dialog with its result or shows its error inline (the dialog stays open)."""

    _busy = False

    async def _send(self, doing: str, call: Callable[[], Awaitable[Any]]) -> None:
        error = self.query_one("#error", Static)
        self._busy = True
        error.update(doing)
        try:
            result = await call()
        except EvopilotError as e:
            error.update(f"error: {e.message}")
            return
        finally:
            self._busy = False
        self.dismiss(result)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        # An old error no longer applies once the input changes.
        self.query_one("#error", Static).update("")


class AddProjectDialog(_FormDialog):
    """Path (with completion) and an optional name; Enter adds, Escape cancels."""

    def __init__(self, submit: Callable[[str, str | None, str | None], Awaitable[Any]],
                 default_python: str = "") -> None:
        super().__init__()
        self._submit = submit
        self._default_python = default_python

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Add a project", classes="title")
            yield Label("Directory (Tab or → completes):")
            yield PathInput(placeholder="~/work/solver", id="path")
            yield Label("Name (empty: the directory's name):")
            yield Input(placeholder="", id="name", compact=True)
            yield Label("Python version (empty: " + (self._default_python or "the running one") + "):",
                        markup=False)
            yield Input(placeholder=self._default_python or "3.12", id="python", compact=True)
            yield Static("", id="error", classes="error", markup=False)
            yield Static("Enter: add · Esc: cancel. Benchmarks are found by "
                         "config [projects] benchmark_globs.", classes="hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Input.Submitted)
    async def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._busy:
            return
        path = self.query_one("#path", Input).value.strip()
        name = self.query_one("#name", Input).value.strip() or None
        python = self.query_one("#python", Input).value.strip() or None
        error = self.query_one("#error", Static)
        if not path:
            error.update("error: type a directory")
            return
        await self._send("adding…", lambda: self._submit(path, name, python))


class RunDialog(_FormDialog):
    """Options of a run: arguments, priority, timeout and host; Enter queues, Escape cancels."""

    def __init__(self, what: str, host: str, hosts: list[str],
                 submit: Callable[..., Awaitable[Any]]) -> None:
        super().__init__()
        self._what, self._host, self._hosts = what, host, hosts
        self._submit = submit

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Run {self._what}", classes="title", markup=False)
            yield Label("Arguments (as in a shell: a 'b c' gives two):", markup=False)
            yield Input(id="args", compact=True)
            yield Label("Priority (higher runs first):", markup=False)
            yield Input("0", id="priority", compact=True, type="integer")
            yield Label("Timeout in seconds (empty: none):", markup=False)
            yield Input(id="timeout", compact=True, type="number")
            yield Label(f"Host ({', '.join(self._hosts)}):", markup=False)
            yield Input(self._host, id="host", compact=True)
            yield Static("", id="error", classes="error", markup=False)
            yield Static("Enter: queue · Tab: next field · Esc: cancel", classes="hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#args", Input).focus()

    def options(self) -> dict:
        """The typed options as ``Engine.run`` takes them; ValueError says what is wrong."""
        value = {w.id: w.value.strip() for w in self.query(Input)}
        try:
            args = quoting.split(value["args"])
        except ValueError as e:
            raise ValueError(f"arguments: {e}") from None
        try:
            priority = int(value["priority"] or 0)
        except ValueError:
            raise ValueError(f"priority: not an integer: {value['priority']!r}") from None
        try:
            timeout = float(value["timeout"]) if value["timeout"] else None
        except ValueError:
            raise ValueError(f"timeout: not a number: {value['timeout']!r}") from None
        return {"args": args, "priority": priority, "timeout": timeout, "host": value["host"] or self._host}

    @on(Input.Submitted)
    async def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._busy:
            return
        error = self.query_one("#error", Static)
        try:
            options = self.options()
        except ValueError as e:
            error.update(f"error: {e}")
            return
        await self._send("queueing…", lambda: self._submit(**options))


class AddBenchmarkDialog(_Dialog):
    def __init__(self, project: str, root: Path, submit: Callable[[list[str]], Awaitable[Any]]) -> None:
        super().__init__()
        self._project = project
        self._root = root
        self._submit = submit

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Add benchmarks to {self._project}", classes="title", markup=False)
            yield Label(f"File(s), relative to {self._root} or absolute; separate with spaces:", markup=False)
            yield PathInput(base=self._root, dirs_only=False, placeholder="benchmarks/bench_x.py", id="path")
            yield Static("", id="error", classes="error", markup=False)
            yield Static("Enter: add · Tab: complete · Esc: cancel", classes="hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Input.Submitted)
    async def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        files = event.value.split()
        error = self.query_one("#error", Static)
        if not files:
            error.update("error: type a file")
            return
        resolved = [f if Path(f).expanduser().is_absolute() else str(self._root / f) for f in files]
        try:
            result = await self._submit(resolved)
        except EvopilotError as e:
            error.update(f"error: {e.message}")
            return
        self.dismiss(result)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.query_one("#error", Static).update("")


class LineDialog(_Dialog):
    """One line of text; Enter submits it (an error is shown and the dialog stays), Esc cancels.
    Dismissed with the text once ``submit`` accepted it."""

    def __init__(self, title: str, submit: Callable[[str], Awaitable[Any]], *, placeholder: str = "",
                 value: str = "", hint: str = "Enter: submit · Esc: cancel") -> None:
        super().__init__()
        self._title = title
        self._submit = submit
        self._placeholder = placeholder
        self._value = value
        self._hint = hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title", markup=False)
            yield Input(value=self._value, placeholder=self._placeholder, id="line", compact=True)
            yield Static("", id="error", classes="error", markup=False)
            yield Static(self._hint, classes="hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#line", Input).focus()

    @on(Input.Submitted)
    async def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            await self._submit(event.value)
        except EvopilotError as e:
            self.query_one("#error", Static).update(f"error: {e.message}")
            return
        self.dismiss(event.value)


class SendDialog(LineDialog):
    """One line for an interactive job; Enter sends it (and Enter), Escape cancels."""

    def __init__(self, job: Job, submit: Callable[[str], Awaitable[Any]]) -> None:
        super().__init__(f"Send a line to job {job.id} ({job.name} on {job.host})", submit,
                         placeholder="typed into its terminal, then Enter", hint="Enter: send · Esc: cancel")


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.CONFIRM)

    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical {
        width: 60; max-width: 100%; height: auto;
        border: round $warning; padding: 0 1; background: $surface;
    }
    ConfirmDialog .hint { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, markup=False)
            yield Static("y: yes · n / Esc: no", classes="hint")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ReportDialog(_Dialog):
    """Read-only lines (doctor results and the like); Esc closes."""

    DEFAULT_CSS = """
    ReportDialog > Vertical { width: 100; height: auto; max-height: 90%; }
    ReportDialog VerticalScroll { height: auto; max-height: 30; }
    """

    def __init__(self, title: str, lines: list[str]) -> None:
        super().__init__()
        self._title = title
        self._lines = lines

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title", markup=False)
            with VerticalScroll():
                yield Static("\n".join(self._lines), markup=False, id="report")
            yield Static("Esc: close", classes="hint")

    def update_lines(self, lines: list[str]) -> None:
        self._lines = lines
        if self.is_mounted:
            self.query_one("#report", Static).update("\n".join(lines))
