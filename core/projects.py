"""Projects and their benchmarks, and the dependency check that runs before jobs are queued."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from evopilot.core import benchmarks, locations
from evopilot.core.config import LOCAL, Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.db import projects as projects_db
from evopilot.core.errors import EvopilotError
from evopilot.core.models import Benchmark, Project

if TYPE_CHECKING:
    from evopilot.core.analysis import DependencyAnalysis


class Projects:
    def __init__(self, db: aiosqlite.Connection, config: Config, home: Path) -> None:
        self.db = db
        self.config = config
        self.home = home

    async def add(self, path: str | Path, name: str | None = None, python: str | None = None,
                  *, force: bool = False) -> tuple[Project, list[Benchmark]]:
        """Register a project; a directory already registered under another name is refused
        unless ``force`` (two names would share one environment and confuse which is which)."""
        root = Path(path).expanduser()
        if not root.is_dir():
            raise EvopilotError(f"{path}: not a directory")
        root = root.resolve()
        name = name or root.name
        check_name(name, "project name")
        python = python or self.config.projects.default_python or f"{sys.version_info[0]}.{sys.version_info[1]}"
        if not _valid_python_version(python):
            raise EvopilotError(f"--python {python!r}: expected a version like 3.12")
        same = [p.name for p in await projects_db.list_projects(self.db) if p.path == str(root) and p.name != name]
        if same and not force:
            raise EvopilotError(f"{root} is already the project {same[0]!r} (add it again with --force)")
        async with jobs_db.transaction(self.db):
            project = await projects_db.add_project(self.db, name, str(root), python)
            found = sorted({p for g in self.config.projects.benchmark_globs for p in root.glob(g) if p.is_file()})
            benches = [
                await projects_db.add_benchmark(self.db, project.id, p.name, p.relative_to(root).as_posix())
                for p in found
            ]
        return project, benches

    async def list(self) -> list[Project]:
        return await projects_db.list_projects(self.db)

    async def get(self, name: str) -> Project:
        return await projects_db.get_project(self.db, name)

    async def remove(self, name: str) -> None:
        project = await projects_db.get_project(self.db, name)
        await projects_db.remove_project(self.db, project.id)

    async def add_benchmarks(self, project_name: str, files: Sequence[str]) -> list[Benchmark]:
        project = await projects_db.get_project(self.db, project_name)
        root = Path(project.path)
        rels = [_project_file(root, f) for f in files]
        async with jobs_db.transaction(self.db):
            return [await projects_db.add_benchmark(self.db, project.id, Path(r).name, r) for r in rels]

    async def remove_benchmark(self, project_name: str, ref: str) -> Benchmark:
        project = await projects_db.get_project(self.db, project_name)
        bench = await self.resolve_benchmark(project, ref)
        async with jobs_db.transaction(self.db):
            await projects_db.remove_benchmark(self.db, bench.id)
        return bench

    async def benchmarks(self, project_name: str | None = None) -> list[Benchmark]:
        pid = (await projects_db.get_project(self.db, project_name)).id if project_name else None
        return await projects_db.list_benchmarks(self.db, pid)

    async def resolve_benchmark(self, project: Project, ref: str) -> Benchmark:
        """A benchmark by its path in the project, or by its file name when that is unique."""
        benches = await projects_db.list_benchmarks(self.db, project.id)
        path = benchmarks.pick([(b.path, b.name) for b in benches], ref, project.name)
        return next(b for b in benches if b.path == path)

    # ---- dependency analysis ---------------------------------------------------------------

    async def deps(self, project_name: str, bench_ref: str) -> "DependencyAnalysis":
        """Local import tree and external packages of a benchmark (cached by file content)."""
        project = await projects_db.get_project(self.db, project_name)
        bench = await self.resolve_benchmark(project, bench_ref)
        return await self._analyze(project, bench)

    async def _analyze(self, project: Project, bench: Benchmark, root: Path | None = None) -> "DependencyAnalysis":
        from evopilot.core.analysis import analyze  # tree-sitter only when analysing

        return await asyncio.to_thread(
            analyze, root or Path(project.path), Path(bench.path), cache_dir=locations.deps_cache_dir(self.home)
        )

    async def fix_deps(self, project_name: str, bench_ref: str) -> list[str]:
        """Declare the benchmark's undeclared packages with `uv add`; returns what was added."""
        from evopilot.core.analysis import fix

        project = await projects_db.get_project(self.db, project_name)
        analysis = await self.deps(project_name, bench_ref)
        return await asyncio.to_thread(fix, Path(project.path), analysis, self.config.host(LOCAL).uv_path)

    async def preflight(self, project: Project, benches: Sequence[Benchmark], host: str = LOCAL,
                        root: Path | None = None) -> list[str]:
        """Refuse to queue benchmarks that import missing local files or undeclared packages;
        for a remote host, also local files that sync would not send (ignored by git).
        ``root``: check these files (a commit's tree) instead of the working tree. Imports
        inside function bodies (lazy) only warn: returns those warnings."""
        problems, fixes, warnings = [], set(), []
        synced = None
        if host != LOCAL and root is None:
            from evopilot.core.hosts.sync import list_files

            synced = set(await list_files(Path(project.path)))
        for b in benches:
            a = await self._analyze(project, b, root)
            missing = [f"{d.module_name} ({d.file_path})" for d in a.missing_local()]
            if synced is not None:
                missing += [f"{d.module_name} ({d.file_path}, ignored by git so never synced)"
                            for d in a.local if d.exists and not d.optional and d.file_path not in synced]
            undeclared = [p.distribution for p in a.undeclared()]
            lazy = ([f"{d.module_name} ({d.file_path}, missing)" for d in a.lazy_missing_local()]
                    + [f"{p.distribution} (not in pyproject.toml)" for p in a.lazy_undeclared()])
            if lazy:
                warnings.append(f"{b.path} imports inside functions (lazy, needed only if they run): "
                                + ", ".join(lazy))
            if missing:
                problems.append(f"{b.path} imports missing local modules: {', '.join(missing)}")
            if undeclared:
                problems.append(f"{b.path} imports packages not in pyproject.toml: {', '.join(undeclared)}")
                fixes.add(f"evopilot deps {project.name} {b.path} --fix")
        if problems:
            hint = f"; fix with `{'`, `'.join(sorted(fixes))}`" if fixes else ""
            raise EvopilotError("; ".join(problems) + hint + " (or run with --no-check)")
        return warnings


def _project_file(root: Path, given: str) -> str:
    """A benchmark file given relative to the project (or absolute), as its path in it."""
    p = Path(given).expanduser()
    p = (p if p.is_absolute() else root / p).resolve()
    if not p.exists():
        raise EvopilotError(f"{given}: no such file in the project directory {root}")
    if not p.is_relative_to(root):
        raise EvopilotError(f"{given}: outside the project directory {root}")
    if not p.is_file():
        raise EvopilotError(f"{given}: not a file")
    if p.suffix != ".py":
        raise EvopilotError(f"{given}: not a Python file (a benchmark is a .py file)")
    return p.relative_to(root).as_posix()


def check_name(name: str, what: str) -> None:
    if not name or "/" in name or "\n" in name or name.startswith("-") or len(name) > 200:
        raise EvopilotError(f"invalid {what} {name!r}: no '/', newline or leading '-', at most 200 characters")


def _valid_python_version(v: str) -> bool:
    parts = v.split(".")
    return 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts)
