"""The result of a dependency analysis (``deps.analyze``), which ``packages.fix`` acts on.

Immutable records (not pydantic: `evopilot deps` starts without it, see bench/cli.py; nor
dataclasses, whose import and class building were ~5 % of a cold `deps`): analyses are cached
and shared, and stored as JSON in the cache. ``model_dump``, ``model_dump_json``,
``model_validate`` and ``model_validate_json`` keep the names callers knew from pydantic.
"""

from __future__ import annotations

import json
from typing import Any, Self

from evopilot.core.quoting import join


class _Frozen:
    """A record whose fields are its class's annotations, in order: a class attribute is a
    field's default (``_FACTORIES`` makes a fresh mutable one); equal when of the same class
    with equal fields; immutable."""

    _fields: tuple[str, ...] = ()
    _FACTORIES: dict[str, Any] = {}

    def __init_subclass__(cls) -> None:
        cls._fields = tuple(cls.__dict__.get("__annotations__", {}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__}: too many arguments")
        values = dict(zip(self._fields, args))
        for name, value in kwargs.items():
            if name not in self._fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated argument {name!r}")
            values[name] = value
        for name in self._fields:
            if name not in values:
                if name in self._FACTORIES:
                    values[name] = self._FACTORIES[name]()
                elif hasattr(type(self), name):
                    values[name] = getattr(type(self), name)
                else:
                    raise TypeError(f"{type(self).__name__}: missing argument {name!r}")
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple:
        return tuple(self.__dict__[name] for name in self._fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in zip(self._fields, self._values()))})"

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return _dump(self)

    def model_dump_json(self) -> str:
        return json.dumps(self.model_dump(), separators=(",", ":"))

    @classmethod
    def model_validate(cls, data: dict[str, Any]) -> Self:
        """From ``model_dump``'s dict; a wrong shape raises TypeError or KeyError."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: expected an object")
        unknown = set(data) - set(cls._fields)
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**{name: _NESTED.get((cls.__name__, name), lambda v: v)(value) for name, value in data.items()})

    @classmethod
    def model_validate_json(cls, text: str | bytes) -> Self:
        return cls.model_validate(json.loads(text))


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
    children: list[LocalDependency]
    _FACTORIES = {"children": list}


class ExternalPackage(_Frozen):
    import_name: str
    distribution: str
    declared: bool
    optional: bool
    imported_by: list[str]
    """Project-relative paths of the files that import it."""
    lazy: bool = False
    """Imported only inside function bodies (see ``LocalDependency.lazy``)."""


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
    """The fields as plain JSON values, models as dicts."""
    if isinstance(value, _Frozen):
        return {name: _dump(value.__dict__[name]) for name in value._fields}
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
