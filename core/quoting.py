"""The one quoting function: every string that reaches a shell anywhere in evopilot goes
through ``quote`` (or ``join``, which calls it). Names, paths, commands and arguments from users
never reach a shell raw."""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def quote(s: str | int | float) -> str:
    """Quote one word for a POSIX shell."""
    return shlex.quote(str(s))


def join(words: Iterable[str | int | float]) -> str:
    """Quote each word and join them into one command line."""
    return " ".join(quote(w) for w in words)


def split(text: str) -> list[str]:
    """The words of ``text`` as a POSIX shell reads them (quotes group, nothing expands): the
    arguments a user types in one line. ValueError on an unclosed quote."""
    return shlex.split(text)
