"""Which benchmark a reference names: its path in the project, or its file name when that is
unique. Pure, shared by ``Projects`` and the engine-free ``deps`` (``core.jobs.listing``)."""

from __future__ import annotations

from collections.abc import Sequence

from evopilot.core.errors import EvopilotError


def pick(benches: Sequence[tuple[str, str]], ref: str, project: str) -> str:
    """The path of the benchmark ``ref`` names among ``benches`` ((path, name) pairs)."""
    for path, _ in benches:
        if path == ref:
            return path
    named = [path for path, name in benches if name == ref]
    if len(named) == 1:
        return named[0]
    if named:
        raise EvopilotError(f"{ref!r} is ambiguous in {project}: " + ", ".join(named))
    raise EvopilotError(f"no benchmark {ref!r} in project {project} (see `evopilot bench list {project}`)")
