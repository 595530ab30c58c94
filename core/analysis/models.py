"""The result of a dependency analysis (``deps.analyze``), which ``packages.fix`` acts on.

Frozen dataclasses (not pydantic: `evopilot deps` starts without it, see bench/cli.py):
analyses are cached and shared, and stored as JSON in the cache. ``model_dump``,
``model_dump_json``, ``model_validate`` and ``model_validate_json`` keep the names callers
knew from pydantic.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Self

from evopilot.core.quoting import join


class _Frozen:
    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return _dump(self)

    def model_dump_json(self) -> str:
        return json.dumps(self.model_dump(), separators=(",", ":"))

    @classmethod
    def model_validate(cls, data: dict[str, Any]) -> Self:
        """From ``model_dump``'s dict; a wrong shape raises TypeError or KeyError."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: expected an object")
        kinds = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(kinds)
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**{name: _NESTED.get((cls.__name__, name), lambda v: v)(value) for name, value in data.items()})

    @classmethod
    def model_validate_json(cls, text: str | bytes) -> Self:
        return cls.model_validate(json.loads(text))


@dataclass(frozen=True)
class SyntaxIssue(_Frozen):
    path: str
    line: int
    message: str


@dataclass(frozen=True)
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
    children: list[LocalDependency] = field(default_factory=list)


@dataclass(frozen=True)
class ExternalPackage(_Frozen):
    import_name: str
    distribution: str
    declared: bool
    optional: bool
    imported_by: list[str]
    """Project-relative paths of the files that import it."""
    lazy: bool = False
    """Imported only inside function bodies (see ``LocalDependency.lazy``)."""


@dataclass(frozen=True)
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


def _dump(value: Any) -> Any:
    """``dataclasses.asdict`` without its deep copies (a large tree dumps several times faster)."""
    if isinstance(value, _Frozen):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_dump(x) for x in value]
    return value


def _each(cls):
    return lambda items: [cls.model_validate(x) for x in items]


_NESTED = {
    ("LocalDependency", "children"): _each(LocalDependency),
    ("DependencyAnalysis", "root"): LocalDependency.model_validate,
    ("DependencyAnalysis", "local"): _each(LocalDependency),
    ("DependencyAnalysis", "external"): _each(ExternalPackage),
    ("DependencyAnalysis", "syntax_errors"): _each(SyntaxIssue),
}
"""Fields holding models, by (model, field): what ``model_validate`` rebuilds them with."""
