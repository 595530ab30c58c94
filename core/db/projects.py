"""Plain SQL for projects and their benchmarks."""

from __future__ import annotations

import sqlite3

import aiosqlite

from evopilot.core.errors import EvopilotError
from evopilot.core.models import Benchmark, Project, now_iso


async def add_project(db: aiosqlite.Connection, name: str, path: str, python: str) -> Project:
    now = now_iso()
    try:
        (row,) = await db.execute_fetchall(
            "INSERT INTO projects(name, path, python_version, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) RETURNING *",
            (name, path, python, now, now),
        )
    except sqlite3.IntegrityError:
        raise EvopilotError(f"a project named {name!r} already exists") from None
    return Project.from_row(row)


async def list_projects(db: aiosqlite.Connection) -> list[Project]:
    rows = await (await db.execute("SELECT * FROM projects ORDER BY name")).fetchall()
    return [Project.from_row(r) for r in rows]


async def get_project(db: aiosqlite.Connection, name: str) -> Project:
    rows = await db.execute_fetchall("SELECT * FROM projects WHERE name = ?", (name,))
    if not rows:
        raise EvopilotError(f"no project named {name!r} (see `evopilot project list`)")
    return Project.from_row(rows[0])


async def get_project_by_id(db: aiosqlite.Connection, project_id: int) -> Project:
    rows = await db.execute_fetchall("SELECT * FROM projects WHERE id = ?", (project_id,))
    if not rows:
        raise EvopilotError(f"no project with id {project_id} (it was removed)")
    return Project.from_row(rows[0])


async def remove_project(db: aiosqlite.Connection, project_id: int) -> None:
    # benchmarks cascade; jobs keep their rows with project_id set to NULL
    await db.execute("DELETE FROM projects WHERE id = ?", (project_id,))


async def add_benchmark(db: aiosqlite.Connection, project_id: int, name: str, path: str) -> Benchmark:
    try:
        (row,) = await db.execute_fetchall(
            "INSERT INTO benchmarks(project_id, name, path, created_at) VALUES (?, ?, ?, ?) "
            "RETURNING *",
            (project_id, name, path, now_iso()),
        )
    except sqlite3.IntegrityError:
        raise EvopilotError(f"benchmark {path!r} is already in the project") from None
    return Benchmark.from_row(row)


async def list_benchmarks(db: aiosqlite.Connection, project_id: int | None = None) -> list[Benchmark]:
    if project_id is None:
        rows = await db.execute_fetchall("SELECT * FROM benchmarks ORDER BY project_id, path")
    else:
        rows = await db.execute_fetchall(
            "SELECT * FROM benchmarks WHERE project_id = ? ORDER BY path", (project_id,)
        )
    return [Benchmark.from_row(r) for r in rows]


async def remove_benchmark(db: aiosqlite.Connection, benchmark_id: int) -> None:
    # jobs of it keep their rows (they record the benchmark's path themselves)
    await db.execute("DELETE FROM benchmarks WHERE id = ?", (benchmark_id,))
