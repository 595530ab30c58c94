"""Plain SQL for jobs, their metrics and steps, and the queue's state."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import weakref
from collections.abc import Iterable
import contextlib
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from evopilot.core.db import rows as rows_sql
from evopilot.core.errors import EvopilotError
from evopilot.core.models import Job, JobStatus, Metric, now_iso

_SELECT = rows_sql.SELECT_JOBS


BEGIN_RETRIES = 50
_TX_LOCKS: weakref.WeakKeyDictionary[aiosqlite.Connection, asyncio.Lock] = weakref.WeakKeyDictionary()


async def _begin(db: aiosqlite.Connection) -> None:
    """BEGIN IMMEDIATE. Another task's read, between its execute and its fetch, holds a read
    snapshot on the shared connection; if another process has written since, SQLite refuses
    the write lock at once ("database is locked", no busy wait). That read ends within a few
    turns of the event loop: try again then (a real lock already waited ``busy_timeout``)."""
    for _ in range(BEGIN_RETRIES):
        t = time.monotonic()
        try:
            await db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() - t > 1:
                raise
        await asyncio.sleep(0.01)
    await db.execute("BEGIN IMMEDIATE")


@asynccontextmanager
async def transaction(db: aiosqlite.Connection):
    """BEGIN IMMEDIATE … COMMIT: batch writes into one transaction.

    Tasks sharing the connection (the app's loop, a key press) take turns: SQLite has one
    transaction per connection, and a second BEGIN would fail. Not re-entrant. Statements with
    RETURNING, and the reads the loop makes often, go through ``execute_fetchall`` (one call):
    one left half-read by another task would make this COMMIT fail, or a write meanwhile.
    """
    lock = _TX_LOCKS.setdefault(db, asyncio.Lock())
    async with lock:
        begin = asyncio.ensure_future(_begin(db))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            # the BEGIN runs on in aiosqlite's thread: end what it opens, or the connection
            # stays inside a transaction nobody will commit
            with contextlib.suppress(Exception):
                await begin
                await db.execute("ROLLBACK")
            raise
        try:
            yield
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")


async def meta(db: aiosqlite.Connection, key: str) -> str | None:
    rows = await db.execute_fetchall("SELECT value FROM meta WHERE key = ?", (key,))
    return rows[0][0] if rows else None


async def set_meta(db: aiosqlite.Connection, key: str, value: str) -> None:
    await db.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


async def delete_meta(db: aiosqlite.Connection, key: str) -> None:
    await db.execute("DELETE FROM meta WHERE key = ?", (key,))


async def insert_job(db: aiosqlite.Connection, **fields: Any) -> int:
    now = now_iso()
    fields.setdefault("status", JobStatus.QUEUED.value)
    fields["args"] = json.dumps(fields.get("args", []))
    fields.update(created_at=now, updated_at=now)
    cols = ", ".join(fields)
    marks = ", ".join("?" for _ in fields)
    ((job_id,),) = await db.execute_fetchall(
        f"INSERT INTO jobs({cols}, seq) VALUES ({marks}, "
        f"(SELECT coalesce(max(seq), 0) + 1 FROM jobs)) RETURNING id",
        tuple(fields.values()),
    )
    return job_id


async def update_job(db: aiosqlite.Connection, job_id: int, **fields: Any) -> None:
    fields["updated_at"] = now_iso()
    sets = ", ".join(f"{k} = ?" for k in fields)
    await db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job_id))


async def _with_metrics(db: aiosqlite.Connection, rows: Iterable[Any]) -> list[Job]:
    jobs = [Job.from_row(r) for r in rows]
    if not jobs:
        return jobs
    by_id = {j.id: (j.metrics, j.metric_units, j.metric_higher_is_better) for j in jobs}
    rows_sql.fill_metrics(await db.execute_fetchall(rows_sql.metrics_query(list(by_id)), tuple(by_id)), by_id)
    return jobs


async def get_job(db: aiosqlite.Connection, job_id: int) -> Job:
    rows = await db.execute_fetchall(f"{_SELECT} WHERE jobs.id = ?", (job_id,))
    if not rows:
        raise EvopilotError(f"no job {job_id}")
    return (await _with_metrics(db, rows))[0]


SORTS = {
    "id": "jobs.id DESC",
    "project": "projects.name, jobs.id DESC",
    "benchmark": "jobs.name, jobs.id DESC",
    "host": "jobs.host, jobs.id DESC",
    "status": "jobs.status, jobs.id DESC",
}
"""Orders of the job table (``sort=``): a column, then the newest first."""

TEXT_FIELDS = ("projects.name", "jobs.name", "jobs.host", "jobs.status", "jobs.error_message")
"""What ``text=`` looks in (case-insensitive, anywhere in the value)."""


async def list_jobs(
    db: aiosqlite.Connection,
    *,
    status: Iterable[str] | None = None,
    project: str | None = None,
    host: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = False,
    with_metrics: bool = True,
    text: str | None = None,
    sort: str | None = None,
) -> list[Job]:
    """Jobs matching the filters, oldest first (``newest_first``, or ``sort``: see ``SORTS``)."""
    where, params = rows_sql.filters(status, project, host, text)
    order = SORTS[sort] if sort else "jobs.id DESC" if newest_first else "jobs.id"
    sql = f"{_SELECT}{where} ORDER BY {order}"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [limit, offset]
    rows = await db.execute_fetchall(sql, params)
    return await _with_metrics(db, rows) if with_metrics else [Job.from_row(r) for r in rows]


async def metric_history(db: aiosqlite.Connection, job: Job, runs: int) -> dict[str, list[tuple[int, float]]]:
    """Each metric of the last ``runs`` jobs of ``job``'s benchmark (same project and file) up
    to ``job``, oldest first: name -> [(job id, value)]."""
    rows = await db.execute_fetchall(
        "SELECT m.job_id, m.name, m.value FROM metrics m WHERE m.job_id IN ("
        " SELECT id FROM jobs WHERE project_id IS ? AND benchmark_path IS ? AND kind = ? AND id <= ?"
        " AND id IN (SELECT job_id FROM metrics) ORDER BY id DESC LIMIT ?) ORDER BY m.job_id",
        (job.project_id, job.benchmark_path, job.kind, job.id, runs))
    out: dict[str, list[tuple[int, float]]] = {}
    for job_id, name, value in rows:
        out.setdefault(name, []).append((job_id, value))
    return out


async def data_version(db: aiosqlite.Connection) -> int:
    """SQLite's count of commits by other connections (other processes) to the database file,
    as seen by this connection: unchanged means nobody else wrote anything."""
    ((v,),) = await db.execute_fetchall("PRAGMA data_version")
    return v


async def updated_since(db: aiosqlite.Connection, since: str) -> list[Job]:
    """Jobs whose row changed at or after ``since`` (ISO time; index jobs_updated), by id."""
    # sorted here: ORDER BY jobs.id makes SQLite walk every row in id order instead of the index
    rows = await db.execute_fetchall(f"{_SELECT} WHERE jobs.updated_at >= ?", (since,))
    return sorted(await _with_metrics(db, rows), key=lambda j: j.id)


async def store_signature(db: aiosqlite.Connection) -> tuple[tuple, int]:
    """(what changes when projects or benchmarks do, the number of jobs): small reads, made
    only when another process has written (see ``ExternalChanges``)."""
    ((*projects, jobs),) = await db.execute_fetchall(
        "SELECT (SELECT count(*) FROM projects), (SELECT max(updated_at) FROM projects), "
        "(SELECT count(*) FROM benchmarks), (SELECT max(id) FROM benchmarks), (SELECT count(*) FROM jobs)")
    return tuple(projects), jobs


async def count_jobs(
    db: aiosqlite.Connection,
    *,
    status: Iterable[str] | None = None,
    project: str | None = None,
    host: str | None = None,
    text: str | None = None,
) -> int:
    where, params = rows_sql.filters(status, project, host, text)
    sql = f"SELECT count(*) FROM jobs LEFT JOIN projects ON projects.id = jobs.project_id{where}"
    ((n,),) = await db.execute_fetchall(sql, params)
    return n


async def requested(db: aiosqlite.Connection, ids: list[int]) -> dict[int, str | None]:
    """What was asked of each job (stop, kill, timeout), as the database has it now."""
    marks = ",".join("?" for _ in ids)
    rows = await db.execute_fetchall(f"SELECT id, requested FROM jobs WHERE id IN ({marks})", ids)
    return {job_id: req for job_id, req in rows}


async def claimed_by(db: aiosqlite.Connection, job_id: int) -> str | None:
    """The process (``host:pid``) that claimed a job for its start."""
    rows = await db.execute_fetchall("SELECT claimed_by FROM jobs WHERE id = ?", (job_id,))
    return rows[0][0] if rows else None


async def count_unfinished(db: aiosqlite.Connection, ids: list[int]) -> int:
    """How many of ``ids`` may still run: queued, running, or pending on a job that has not
    failed (a job waiting on a failed setup stays pending until that is retried).

    Counted between transactions (their turn, see ``transaction``): a read on the shared
    connection sees another task's uncommitted writes, and the loop that stops on this count
    cancels that task, whose transaction is then rolled back (jobs counted ended were running
    again)."""
    marks = ",".join("?" for _ in ids)
    async with _TX_LOCKS.setdefault(db, asyncio.Lock()):
        ((n,),) = await db.execute_fetchall(
            f"SELECT count(*) FROM jobs j WHERE id IN ({marks}) AND (status IN ('queued', 'running') "
            f"OR (status = 'pending' AND NOT EXISTS (SELECT 1 FROM jobs d WHERE d.id = j.depends_on "
            f"AND d.status IN ('failed', 'cancelled', 'killed', 'lost'))))", ids,
        )
    return n


async def claim_next(db: aiosqlite.Connection, host: str, slots: int, claimer: str) -> Job | None:
    """Atomically move the next queued job of ``host`` to running, if a slot is free (on the
    host, and in the job's slot group when it has one).

    One statement: SQLite runs it under the write lock, so two processes never claim the same
    job and never overfill the host's slots or a group's.
    """
    now = now_iso()
    rows = await db.execute_fetchall(
        """
        UPDATE jobs SET status = 'running', claimed_by = ?, started_at = ?, updated_at = ?
        WHERE id = (SELECT id FROM jobs q WHERE status = 'queued' AND host = ?
                      AND (slot_group IS NULL OR (SELECT count(*) FROM jobs r WHERE r.status = 'running'
                                                  AND r.slot_group = q.slot_group) < slot_limit)
                    ORDER BY priority DESC, seq, id LIMIT 1)
          AND status = 'queued'
          AND (SELECT count(*) FROM jobs WHERE status = 'running' AND host = ?) < ?
          AND (SELECT value FROM meta WHERE key = 'queue_paused') = '0'
        RETURNING id
        """,
        (claimer, now, now, host, host, slots),
    )
    return await get_job(db, rows[0][0]) if rows else None


async def release_dependents(db: aiosqlite.Connection, job_id: int, succeeded: bool, reason: str) -> list[int]:
    """A job others wait on has finished: queue them, or say why they keep waiting."""
    if succeeded:
        rows = await db.execute_fetchall(
            "UPDATE jobs SET status = 'queued', error_message = NULL, updated_at = ? "
            "WHERE depends_on = ? AND status = 'pending' RETURNING id", (now_iso(), job_id))
    else:
        rows = await db.execute_fetchall(
            "UPDATE jobs SET error_message = ?, updated_at = ? WHERE depends_on = ? "
            "AND status = 'pending' RETURNING id", (reason, now_iso(), job_id))
    return [r[0] for r in rows]


async def redirect_dependents(db: aiosqlite.Connection, old_id: int, new_id: int) -> None:
    await db.execute(
        "UPDATE jobs SET depends_on = ?, error_message = ?, updated_at = ? "
        "WHERE depends_on = ? AND status = 'pending'",
        (new_id, f"waiting for job {new_id}", now_iso(), old_id))


async def replace_metrics(db: aiosqlite.Connection, job_id: int, metrics: list[Metric]) -> None:
    now = now_iso()
    await db.execute("DELETE FROM metrics WHERE job_id = ?", (job_id,))
    await db.executemany(
        "INSERT INTO metrics(job_id, name, value, unit, higher_is_better, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(job_id, m.name, m.value, m.unit, m.higher_is_better, now) for m in metrics],
    )


async def add_step(
    db: aiosqlite.Connection, job_id: int, name: str, step_type: str, status: str,
    details: str | None = None,
) -> None:
    now = now_iso()
    await db.execute(
        "INSERT INTO job_steps(job_id, name, step_type, status, details, started_at, "
        "finished_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (job_id, name, step_type, status, details, now, now, now),
    )


async def steps(db: aiosqlite.Connection, job_id: int) -> list[dict[str, Any]]:
    rows = await db.execute_fetchall("SELECT * FROM job_steps WHERE job_id = ? ORDER BY id", (job_id,))
    return [dict(r) for r in rows]


async def delete_finished(db: aiosqlite.Connection, ids: list[int]) -> None:
    """Remove finished jobs' rows (metrics and steps go with them); a job that is not
    finished, or whose end is still to be handled, is never removed."""
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        await db.execute(
            f"DELETE FROM jobs WHERE id IN ({','.join('?' for _ in part)}) AND status IN {_ENDED} "
            f"AND end_handled = 1", part)


async def queue_order(db: aiosqlite.Connection, limit: int | None = None) -> list[Job]:
    """Queued and pending jobs in the order they start (the order ``claim_next`` and
    ``move_in_queue`` use)."""
    rows = await db.execute_fetchall(
        f"{_SELECT} WHERE jobs.status IN ('queued', 'pending') ORDER BY jobs.priority DESC, jobs.seq, jobs.id"
        + (" LIMIT ?" if limit is not None else ""), (limit,) if limit is not None else ())
    return await _with_metrics(db, rows)


async def ids_with(db: aiosqlite.Connection, statuses: list[str]) -> set[int]:
    marks = ",".join("?" for _ in statuses)
    return {r[0] for r in await db.execute_fetchall(f"SELECT id FROM jobs WHERE status IN ({marks})", statuses)}


async def queue_positions(db: aiosqlite.Connection) -> dict[int, int]:
    """Each queued or pending job's place in the queue, from 1."""
    return {r[0]: i for i, r in enumerate(await db.execute_fetchall(rows_sql.QUEUE_POSITIONS), 1)}


async def move_in_queue(db: aiosqlite.Connection, job_id: int, where: str) -> None:
    """Reorder a queued job: ``front``/``back`` of the queue, or ``up``/``down`` one place."""
    job = await get_job(db, job_id)
    if job.status not in (JobStatus.QUEUED, JobStatus.PENDING):
        raise EvopilotError(f"job {job_id} is {job.status.value}, not queued")
    if where in ("front", "back"):
        agg = "min(seq) - 1" if where == "front" else "max(seq) + 1"
        await db.execute(
            f"UPDATE jobs SET seq = (SELECT {agg} FROM jobs WHERE status IN ('queued','pending')), "
            f"priority = (SELECT {'max' if where == 'front' else 'min'}(priority) FROM jobs "
            f"WHERE status IN ('queued','pending')), updated_at = ? WHERE id = ?",
            (now_iso(), job_id),
        )
        return
    # up/down: swap order keys with the neighbour in queue order
    cmp, order = ("<", "DESC") if where == "up" else (">", "")
    rows = await db.execute_fetchall(
        f"SELECT id, priority, seq FROM jobs WHERE status IN ('queued','pending') "
        f"AND (-priority, seq, id) {cmp} (?, ?, ?) "
        f"ORDER BY -priority {order}, seq {order}, id {order} LIMIT 1",
        (-job.priority, job.seq, job.id),
    )
    if not rows:
        return
    row = rows[0]
    await update_job(db, row["id"], priority=job.priority, seq=job.seq)
    await update_job(db, job_id, priority=row["priority"], seq=row["seq"])


async def transition(db: aiosqlite.Connection, job_id: int, to: JobStatus, from_: Iterable[JobStatus]) -> bool:
    """Move a job to the finished status ``to`` if it is in one of ``from_``; False if not."""
    now = now_iso()
    from_ = [s.value for s in from_]
    return bool(await db.execute_fetchall(
        f"UPDATE jobs SET status = ?, finished_at = ?, updated_at = ? "
        f"WHERE id = ? AND status IN ({','.join('?' for _ in from_)}) RETURNING id",
        (to.value, now, now, job_id, *from_),
    ))


async def hosts_with(db: aiosqlite.Connection, statuses: Iterable[str]) -> list[str]:
    statuses = list(statuses)
    rows = await db.execute_fetchall(
        f"SELECT DISTINCT host FROM jobs WHERE status IN ({','.join('?' for _ in statuses)})", statuses
    )
    return [r[0] for r in rows]


async def hosts_of(db: aiosqlite.Connection, ids: list[int]) -> set[str]:
    rows = await db.execute_fetchall(
        f"SELECT DISTINCT host FROM jobs WHERE id IN ({','.join('?' for _ in ids)})", ids
    )
    return {r[0] for r in rows}


async def running_per_host(db: aiosqlite.Connection) -> dict[str, int]:
    rows = await db.execute_fetchall("SELECT host, count(*) FROM jobs WHERE status = 'running' GROUP BY host")
    return {host: n for host, n in rows}


async def active_setup_job(db: aiosqlite.Connection, project_id: int, host: str) -> int | None:
    """A setup job of the project's working tree on the host that is still to run or running
    (commits have their own: ``db.workspaces.active_setup``)."""
    rows = await db.execute_fetchall(
        "SELECT id FROM jobs WHERE kind = 'setup' AND project_id = ? AND host = ? "
        "AND commit_sha IS NULL AND status IN ('queued', 'running') ORDER BY id DESC LIMIT 1",
        (project_id, host),
    )
    return rows[0][0] if rows else None


_ENDED = "('succeeded', 'failed', 'cancelled', 'killed', 'lost')"


async def mark_ends_handled(db: aiosqlite.Connection, kinds: list[str]) -> None:
    """Ended jobs of ``kinds`` (kinds with no end handler) need nothing done: mark them handled.

    Jobs of a kind this process does not know keep waiting for a process that does."""
    pending = await db.execute_fetchall(
        f"SELECT 1 FROM jobs WHERE end_handled = 0 AND status IN {_ENDED} LIMIT 1")
    if kinds and pending:  # the check first: most ticks have nothing to mark, and need no write
        await db.execute(
            f"UPDATE jobs SET end_handled = 1 WHERE end_handled = 0 AND status IN {_ENDED} "
            f"AND kind IN ({','.join('?' for _ in kinds)})", kinds)


async def ended_unhandled(db: aiosqlite.Connection, kinds: list[str], limit: int = 100) -> list[Job]:
    """Ended jobs of ``kinds`` whose end handler has not run yet, oldest first."""
    rows = await db.execute_fetchall(
        f"{_SELECT} WHERE jobs.end_handled = 0 AND jobs.status IN {_ENDED} "
        f"AND jobs.kind IN ({','.join('?' for _ in kinds)}) ORDER BY jobs.id LIMIT ?",
        (*kinds, limit))
    return await _with_metrics(db, rows)


async def claim_end(db: aiosqlite.Connection, job_id: int) -> bool:
    """Take the job's end for handling; False when another process already has."""
    return bool(await db.execute_fetchall(
        f"UPDATE jobs SET end_handled = 1 WHERE id = ? AND end_handled = 0 AND status IN {_ENDED} "
        f"RETURNING id", (job_id,)))
