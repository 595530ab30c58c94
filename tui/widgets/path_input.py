"""An Input that completes file system paths (Tab or → accepts the suggestion)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import ClassVar

from textual.binding import BindingType
from textual.suggester import Suggester
from textual.widgets import Input

from evopilot.tui import keymap

MAX_ENTRIES = 2000
"""Directory entries looked at per suggestion (a huge directory must not stall anything)."""


def suggest_path(value: str, *, base: Path | None = None, dirs_only: bool = True) -> str | None:
    """The first entry that extends ``value`` (directories end with ``/``), or None.

    ``~`` is expanded for the lookup but kept in the suggestion; relative paths are looked up
    under ``base`` (default: the current directory). Hidden entries only when asked for with a
    leading dot.
    """
    if not value:
        return None
    head, sep, tail = value.rpartition("/")
    folder = head + sep if sep else ""
    lookup = Path(os.path.expanduser(folder or "."))
    if not lookup.is_absolute():
        lookup = (base or Path.cwd()) / lookup
    if folder == "/":
        lookup = Path("/")
    try:
        names = []
        with os.scandir(lookup) as it:
            for i, entry in enumerate(it):
                if i >= MAX_ENTRIES:
                    break
                if not entry.name.startswith(tail) or entry.name == tail and not entry.is_dir():
                    continue
                if entry.name.startswith(".") and not tail.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    continue
                if dirs_only and not is_dir:
                    continue
                names.append(entry.name + ("/" if is_dir else ""))
    except OSError:
        return None
    for name in sorted(names):
        candidate = folder + name
        if len(candidate) > len(value):
            return candidate
    return None


class PathSuggester(Suggester):
    def __init__(self, *, base: Path | None = None, dirs_only: bool = True) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.base = base
        self.dirs_only = dirs_only

    async def get_suggestion(self, value: str) -> str | None:
        # Listing a directory is file I/O: keep it off the event loop.
        return await asyncio.to_thread(suggest_path, value, base=self.base, dirs_only=self.dirs_only)


class PathInput(Input):
    """An Input with path completion; Tab accepts the suggestion."""

    BINDINGS: ClassVar[list[BindingType]] = [
        keymap.binding(s) for s in keymap.DIALOG if s.id == "dialog.complete"
    ]

    def __init__(self, value: str = "", *, base: Path | None = None, dirs_only: bool = True,
                 placeholder: str = "", id: str | None = None) -> None:
        super().__init__(value, placeholder=placeholder, id=id, compact=True,
                         suggester=PathSuggester(base=base, dirs_only=dirs_only))

    def action_complete(self) -> None:
        if self._suggestion and len(self._suggestion) > len(self.value):
            self.value = self._suggestion
            self.cursor_position = len(self.value)
