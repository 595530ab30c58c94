"""The result of a dependency analysis (``deps.analyze``), which ``packages.fix`` acts on.

Frozen pydantic models: analyses are cached and shared, and stored as JSON in the cache.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from evopilot.core.quoting import join


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class SyntaxIssue(_Frozen):
    path: str
    line: int
    message: str


class LocalDependency(_Frozen):
    module_name: str
    file_path: str | None
    """Relative to the project, POSIX separators; for a missing module the file expected."""
    exists: bool
    optional: bool
    """Not needed when the benchmark starts: reachable only through a ``try/except
    ImportError`` import (it survives without it) or lazily."""
    lazy: bool = False
    """Reachable only through imports inside function bodies: needed if that code runs (the
    checks warn about it and do not refuse the run)."""
    problem: str | None = None
    """Why a module that does not exist cannot be imported."""
    children: list[LocalDependency] = Field(default_factory=list)


class ExternalPackage(_Frozen):
    import_name: str
    distribution: str
    declared: bool
    optional: bool
    lazy: bool = False
    """Imported only inside function bodies (see ``LocalDependency.lazy``)."""
    imported_by: list[str]
    """Project-relative paths of the files that import it."""


class DependencyAnalysis(_Frozen):
    benchmark: str
    root: LocalDependency
    """The benchmark and, below it, the local import tree (each module expanded once)."""
    local: list[LocalDependency]
    """Every local module the benchmark reaches, once each, without children."""
    external: list[ExternalPackage]
    syntax_errors: list[SyntaxIssue]

    def missing_local(self) -> list[LocalDependency]:
        return [d for d in self.local if not d.exists and not d.optional]

    def undeclared(self) -> list[ExternalPackage]:
        return [p for p in self.external if not p.declared and not p.optional]

    def lazy_missing_local(self) -> list[LocalDependency]:
        """Missing modules imported only in function bodies: a warning, not a refusal."""
        return [d for d in self.local if not d.exists and d.lazy]

    def lazy_undeclared(self) -> list[ExternalPackage]:
        return [p for p in self.external if not p.declared and p.lazy]

    @property
    def ok(self) -> bool:
        """Nothing known to fail on a fresh machine: no missing module, no undeclared package,
        no syntax error."""
        return not (self.missing_local() or self.undeclared() or self.syntax_errors)

    def fix_command(self, uv_path: str = "uv") -> str | None:
        """The shell command that declares every undeclared package, or None if none is."""
        dists = [p.distribution for p in self.undeclared()]
        return join([uv_path, "add", *dists]) if dists else None
