"""Dependency analysis of a benchmark: local modules it imports, external packages, and what
pyproject.toml is missing. A pure library: no database, no asyncio.

The names below load their modules when first used: ``stored`` (a stored analysis, checked
without tree-sitter) must be importable without the analysis itself (start-up time).
"""

from __future__ import annotations

import importlib

_HOMES = {
    "analyze": "deps",
    "render_tree": "deps",
    "DependencyAnalysis": "models",
    "ExternalPackage": "models",
    "LocalDependency": "models",
    "SyntaxIssue": "models",
    "fix": "packages",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
