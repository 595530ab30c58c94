"""Where a project's own modules are imported from: after the script's own directory, the
project root and its ``src/`` (when it has one).

One source of truth: the dependency analysis resolves a benchmark's imports from these roots
(``core.analysis.deps``), and every job gets exactly them first on ``PYTHONPATH``
(``core.environments.run_command``), locally, on SSH hosts and on a commit's tree. So an import
that ``evopilot deps`` accepts is one the job finds, and one it rejects fails the job too.
"""

from __future__ import annotations

from pathlib import Path

SRC = "src"


def import_roots(root: str, has_src: bool) -> list[str]:
    """The import roots of a project whose files are at ``root`` (on whichever host)."""
    return [root, f"{root}/{SRC}"] if has_src else [root]


def has_src(root: Path) -> bool:
    """Whether the project's files at ``root`` (on this machine) have a ``src/`` directory."""
    return (root / SRC).is_dir()
