"""Mutator answers written down the moment they arrive, before the database has them.

Storing an answer waits for the database (a transaction queued behind other tasks' writes, then
its commit): a run killed in that wait would ask, and pay, again on resume. An append to this
file is one ``write`` call made before any ``await``, so it is in the file (the kernel's) as soon
as the mutator has returned; ``evolve resume`` stores the answers the database lacks, then
empties the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from evopilot.core.usage import Usage


@dataclasses.dataclass(frozen=True)
class Entry:
    iteration_id: int
    prompt: str
    usage: list[Usage]
    answer: dict | None
    """What the loop stores as the iteration's answer (files, summary, raw)."""
    error: str | None = None
    """The mutator's reason when it produced no candidate (``answer`` then holds the raw text)."""


class AnswerJournal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, *entries: Entry) -> None:
        """The answers of one call of a mutator (several when it answers a group)."""
        lines = "".join(json.dumps({"iteration": e.iteration_id, "prompt": e.prompt,
                                    "usage": [dataclasses.asdict(u) for u in e.usage],
                                    "answer": e.answer, "error": e.error}) + "\n" for e in entries)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, lines.encode())  # one call: a kill lands before it or after it
        finally:
            os.close(fd)

    def read(self) -> list[Entry]:
        """The entries written since the last ``clear``; a last line cut short by a kill (or
        anything not an entry) is skipped: its answer is asked for again."""
        try:
            text = self.path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                d = json.loads(line)
                out.append(Entry(int(d["iteration"]), d["prompt"], [Usage(**u) for u in d["usage"]],
                                 d["answer"], d.get("error")))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
