"""Dependency analysis of a benchmark: local modules it imports, external packages, and what
pyproject.toml is missing. A pure library: no database, no asyncio."""

from evopilot.core.analysis.deps import analyze, render_tree
from evopilot.core.analysis.models import DependencyAnalysis, ExternalPackage, LocalDependency, SyntaxIssue
from evopilot.core.analysis.packages import fix

__all__ = [
    "DependencyAnalysis",
    "ExternalPackage",
    "LocalDependency",
    "SyntaxIssue",
    "analyze",
    "fix",
    "render_tree",
]
