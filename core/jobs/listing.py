"""`evopilot jobs` (text and --json; and what `deps` needs to know) read straight from SQLite.

``jobs`` is run in ``watch`` loops and shell prompts: when nothing needs reconciling (no job
running, or a worker loop beating that keeps them fresh; no ended job whose end is still to be
handled), the listing is read with the standard library's sqlite3 alone, without the engine,
asyncio, pydantic or the config models (bench/cli.py measures it). Otherwise ``read_jobs``
returns None and the CLI takes the engine's path, which reconciles first.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from evopilot.core import benchmarks
from evopilot.core.db import rows
from evopilot.core.errors import EvopilotError
from evopilot.core.job_json import PUBLIC_FIELDS, finish_metrics

FRESH_BEAT = 10.0
"""A worker's beat younger than this keeps running jobs fresh: ``scheduler.BEAT_STALE`` (the
engine's own test, ``scheduler.worker_alive``, also allows for a slower poll interval: an
older beat just takes the engine's path)."""


def beat_fresh(beat: str | None, stale: float) -> bool:
    """Whether a worker's beat (``"<machine>:<pid> <time>"``) is from a live loop: younger than
    ``stale`` seconds, and, when its loop ran on this machine, its process still there (a loop
    killed with -9 cannot withdraw its beat; that must not keep commands waiting)."""
    if not beat:
        return False
    who, _, at = beat.rpartition(" ")
    machine, _, pid = who.rpartition(":")
    # socket.gethostname() is uname's node name on POSIX; importing socket costs ~3 ms of start-up
    if machine == os.uname().nodename and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: alive
    return time.time() - float(at) < stale
_ENDED = "('succeeded', 'failed', 'cancelled', 'killed', 'lost')"
_MIGRATIONS = Path(__file__).resolve().parent.parent / "db" / "migrations"


def _latest_migration() -> int:
    return max(int(name.split("_", 1)[0]) for name in os.listdir(_MIGRATIONS) if name.endswith(".sql"))


def read_jobs(db_path: Path, *, status: Iterable[str] | None, project: str | None, host: str | None,
              limit: int | None) -> list[dict[str, Any]] | None:
    """What `jobs` prints (each job's public fields and its queue position), or None
    when the engine is needed: no database yet, one to migrate, or jobs to reconcile."""
    with _opened(db_path) as con:
        if con is None or not _fresh(con):
            return None
        return _list(con, list(status or ()), project, host, limit)


def read_benchmark(db_path: Path, project: str, ref: str) -> tuple[str, str] | None:
    """The project's directory and the path in it of the benchmark ``ref`` names (what `deps`
    analyses), or None when the engine is needed."""
    with _opened(db_path) as con:
        if con is None:
            return None
        row = con.execute("SELECT id, path FROM projects WHERE name = ?", (project,)).fetchone()
        if row is None:
            raise EvopilotError(f"no project named {project!r} (see `evopilot project list`)")
        benches = con.execute("SELECT path, name FROM benchmarks WHERE project_id = ? ORDER BY path",
                              (row["id"],)).fetchall()
        return row["path"], benchmarks.pick([(b["path"], b["name"]) for b in benches], ref, project)


def analyse_benchmark(home: Path, project: str, ref: str, *, tree: bool):
    """`deps` without the engine: the benchmark's ``DependencyAnalysis`` and, with ``tree``,
    its text lines; None when the engine is needed."""
    from evopilot.core import locations
    from evopilot.core.analysis import analyze, render_tree  # tree-sitter, and the analysis models

    found = read_benchmark(locations.db_path(home), project, ref)
    if found is None:
        return None
    analysis = analyze(Path(found[0]), Path(found[1]), cache_dir=locations.deps_cache_dir(home))
    return analysis, render_tree(analysis) if tree else []


def stored_analysis(home: Path, project: str, ref: str) -> dict | None:
    """What `deps --json` prints of the benchmark's stored analysis, if one still holds
    (``core.analysis.stored``); None when the analysis (or the engine) is needed."""
    from evopilot.core import locations
    from evopilot.core.analysis import stored

    found = read_benchmark(locations.db_path(home), project, ref)
    return None if found is None else stored.printed(Path(found[0]), Path(found[1]), locations.deps_cache_dir(home))


@contextlib.contextmanager
def _opened(db_path: Path) -> Iterator[sqlite3.Connection | None]:
    """The database, if it exists and is up to date; None otherwise, or when SQLite cannot
    read it here (a read-only directory, a damaged file: the engine's path says what it is)."""
    if not db_path.is_file():
        yield None
        return
    try:
        con = sqlite3.connect(db_path, timeout=10)
    except sqlite3.Error:
        yield None
        return
    try:
        con.row_factory = sqlite3.Row
        current = con.execute("PRAGMA user_version").fetchone()[0] == _latest_migration()
    except sqlite3.Error:
        current = False
    try:
        yield con if current else None
    except sqlite3.Error:
        pass  # a read failed: the caller's block ends without a result, the engine's path runs
    finally:
        con.close()


def _fresh(con: sqlite3.Connection) -> bool:
    """Whether the rows are as the engine would leave them after reconciling."""
    busy = con.execute(
        f"SELECT 1 FROM jobs WHERE status = 'running' OR (end_handled = 0 AND status IN {_ENDED}) LIMIT 1"
    ).fetchone()
    if busy is None:
        return True
    beat = con.execute("SELECT value FROM meta WHERE key = 'worker_beat'").fetchone()
    return beat is not None and beat_fresh(beat[0], FRESH_BEAT)


def _list(con: sqlite3.Connection, status: list[str], project: str | None, host: str | None,
          limit: int | None) -> list[dict[str, Any]]:
    if project and con.execute("SELECT 1 FROM projects WHERE name = ?", (project,)).fetchone() is None:
        raise EvopilotError(f"no project named {project!r} (see `evopilot project list`)")
    where, params = rows.filters(status, project, host)
    sql = _SELECT_PUBLIC + where
    if limit is not None:  # the newest N, listed oldest first as `jobs --limit` prints them
        sql = f"SELECT * FROM ({sql} ORDER BY jobs.id DESC LIMIT ?) ORDER BY id"
        params.append(limit)
    else:
        sql += " ORDER BY jobs.id"
    cur = con.execute(sql, params)
    cur.row_factory = None  # plain tuples zipped with the names once: a Row per job costs more
    names = [d[0] for d in cur.description]
    jobs = {}
    for values in cur:  # each row is already a job's public fields, in their order
        j = dict(zip(names, values))
        j.update(args=json.loads(j["args"]), metrics={}, metric_units={}, metric_directions={})
        jobs[j["id"]] = j
    if jobs:
        rows.fill_metrics(con.execute(rows.metrics_query(list(jobs)), tuple(jobs)), {
            i: (j["metrics"], j["metric_units"], j["metric_directions"]) for i, j in jobs.items()})
    places = {r[0]: i for i, r in enumerate(con.execute(rows.QUEUE_POSITIONS), 1)}
    for j in jobs.values():
        finish_metrics(j)
        j["position"] = places.get(j["id"])
    return list(jobs.values())


_COLUMNS = {"project": "projects.name", "metrics": "NULL", "metric_units": "NULL", "metric_higher_is_better": "NULL"}
_SELECT_PUBLIC = rows.SELECT_JOBS.replace("jobs.*, projects.name AS project", ", ".join(
    f'{_COLUMNS.get(attribute, "jobs." + attribute)} AS "{name}"' for name, attribute in PUBLIC_FIELDS), 1)
"""``rows.SELECT_JOBS`` selecting a job's public fields under their public names, in order."""
