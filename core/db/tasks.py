"""Plain SQL for tasks, attempts, agent sessions and turns, merges, sweeps, cost entries,
templates and scratch (migration 0008). Writes go inside the caller's ``jobs_db.transaction``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aiosqlite

from evopilot.core.errors import EvopilotError
from evopilot.core.models import AgentSessionRow, AttemptRow, SweepRow, TaskRow, now_iso

_TASK = "SELECT tasks.*, projects.name AS project FROM tasks JOIN projects ON projects.id = tasks.project_id"
# an attempt with the sums of its cost entries
_ATTEMPT = ("SELECT attempts.*, coalesce(c.tokens_in, 0) AS tokens_in, coalesce(c.tokens_out, 0) AS tokens_out, "
            "coalesce(c.dollars, 0) AS dollars, coalesce(c.requests, 0) AS requests FROM attempts "
            "LEFT JOIN (SELECT attempt_id, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, "
            "sum(cost_usd) AS dollars, sum(requests) AS requests FROM cost_entries WHERE attempt_id IS NOT NULL GROUP BY attempt_id) c "
            "ON c.attempt_id = attempts.id")


def _sets(fields: dict[str, Any]) -> tuple[str, tuple]:
    values = [json.dumps(v) if isinstance(v, dict) else v for v in fields.values()]
    return ", ".join(f"{k} = ?" for k in fields), tuple(values)


def _marks(items: Iterable) -> str:
    return ",".join("?" for _ in items)


# ---- tasks ---------------------------------------------------------------------------------


async def create_task(db: aiosqlite.Connection, *, project_id: int, title: str, description: str | None,
                      parent_attempt_id: int | None = None) -> int:
    now = now_iso()
    ((task_id,),) = await db.execute_fetchall(
        "INSERT INTO tasks(project_id, title, description, parent_attempt_id, position, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, (SELECT coalesce(max(position), 0) + 1 FROM tasks), ?, ?) RETURNING id",
        (project_id, title, description, parent_attempt_id, now, now))
    return task_id


async def get_task(db: aiosqlite.Connection, task_id: int) -> TaskRow:
    rows = await db.execute_fetchall(f"{_TASK} WHERE tasks.id = ?", (task_id,))
    if not rows:
        raise EvopilotError(f"no task {task_id} (see `evopilot task list`)")
    return TaskRow.from_row(rows[0])


async def list_tasks(db: aiosqlite.Connection, *, project: str | None = None,
                     status: Iterable[str] | None = None) -> list[TaskRow]:
    where, params = [], []
    if project is not None:
        where.append("projects.name = ?")
        params.append(project)
    if status is not None:
        status = list(status)
        where.append(f"tasks.status IN ({_marks(status)})")
        params += status
    sql = _TASK + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY tasks.position, tasks.id"
    return [TaskRow.from_row(r) for r in await db.execute_fetchall(sql, params)]


async def update_task(db: aiosqlite.Connection, task_id: int, **fields: Any) -> None:
    fields["updated_at"] = now_iso()
    sets, values = _sets(fields)
    await db.execute(f"UPDATE tasks SET {sets} WHERE id = ?", (*values, task_id))


# ---- attempts ------------------------------------------------------------------------------


async def create_attempt(db: aiosqlite.Connection, **fields: Any) -> int:
    now = now_iso()
    fields.update(created_at=now, updated_at=now)
    if isinstance(fields.get("params"), dict):
        fields["params"] = json.dumps(fields["params"])
    ((attempt_id,),) = await db.execute_fetchall(
        f"INSERT INTO attempts({', '.join(fields)}) VALUES ({_marks(fields)}) RETURNING id",
        tuple(fields.values()))
    return attempt_id


async def get_attempt(db: aiosqlite.Connection, attempt_id: int) -> AttemptRow:
    rows = await db.execute_fetchall(f"{_ATTEMPT} WHERE attempts.id = ?", (attempt_id,))
    if not rows:
        raise EvopilotError(f"no attempt {attempt_id} (see `evopilot task list`)")
    return AttemptRow.from_row(rows[0])


async def attempts(db: aiosqlite.Connection, *, task_ids: Iterable[int] | None = None,
                   sweep_id: int | None = None, states: Iterable[str] | None = None,
                   archived: bool | None = None) -> list[AttemptRow]:
    where, params = [], []
    for col, values in (("attempts.task_id", task_ids), ("attempts.state", states)):
        if values is not None:
            values = list(values)
            where.append(f"{col} IN ({_marks(values)})")
            params += values
    if sweep_id is not None:
        where.append("attempts.sweep_id = ?")
        params.append(sweep_id)
    if archived is not None:
        where.append("attempts.archived = ?")
        params.append(int(archived))
    sql = _ATTEMPT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY attempts.id"
    return [AttemptRow.from_row(r) for r in await db.execute_fetchall(sql, params)]


async def update_attempt(db: aiosqlite.Connection, attempt_id: int, **fields: Any) -> None:
    fields["updated_at"] = now_iso()
    sets, values = _sets(fields)
    await db.execute(f"UPDATE attempts SET {sets} WHERE id = ?", (*values, attempt_id))


async def branch_taken(db: aiosqlite.Connection, project_id: int, branch: str) -> bool:
    return bool(await db.execute_fetchall(
        "SELECT 1 FROM attempts JOIN tasks ON tasks.id = attempts.task_id "
        "WHERE tasks.project_id = ? AND attempts.branch = ?", (project_id, branch)))


async def any_live_attempt(db: aiosqlite.Connection) -> bool:
    """Whether an attempt's agent may be running or a sweep is under way (the tick's cheap check)."""
    return bool(await db.execute_fetchall(
        "SELECT 1 FROM attempts WHERE state IN ('starting', 'running') "
        "UNION ALL SELECT 1 FROM sweeps WHERE state = 'running' LIMIT 1"))


# ---- agent sessions and turns --------------------------------------------------------------


async def create_session(db: aiosqlite.Connection, *, attempt_id: int, agent: str, tty: bool, command: str,
                         prompt: str, head_before: str | None) -> int:
    now = now_iso()
    ((sid,),) = await db.execute_fetchall(
        "INSERT INTO agent_sessions(attempt_id, agent, tty, command, head_before, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id", (attempt_id, agent, int(tty), command, head_before, now))
    await add_turn(db, sid, prompt)
    return sid


async def update_session(db: aiosqlite.Connection, session_id: int, **fields: Any) -> None:
    sets, values = _sets(fields)
    await db.execute(f"UPDATE agent_sessions SET {sets} WHERE id = ?", (*values, session_id))


async def session_of_job(db: aiosqlite.Connection, job_id: int) -> AgentSessionRow | None:
    rows = await db.execute_fetchall("SELECT * FROM agent_sessions WHERE job_id = ?", (job_id,))
    return AgentSessionRow.from_row(rows[0]) if rows else None


async def sessions(db: aiosqlite.Connection, attempt_id: int) -> list[AgentSessionRow]:
    rows = await db.execute_fetchall("SELECT * FROM agent_sessions WHERE attempt_id = ? ORDER BY id", (attempt_id,))
    return [AgentSessionRow.from_row(r) for r in rows]


async def add_turn(db: aiosqlite.Connection, session_id: int, prompt: str) -> int:
    ((tid,),) = await db.execute_fetchall(
        "INSERT INTO agent_turns(session_id, prompt, created_at) VALUES (?, ?, ?) RETURNING id",
        (session_id, prompt, now_iso()))
    return tid


async def set_last_summary(db: aiosqlite.Connection, session_id: int, summary: str) -> None:
    await db.execute("UPDATE agent_turns SET summary = ? WHERE id = "
                     "(SELECT max(id) FROM agent_turns WHERE session_id = ?)", (summary, session_id))


async def turns(db: aiosqlite.Connection, attempt_id: int) -> list[dict[str, Any]]:
    rows = await db.execute_fetchall(
        "SELECT agent_turns.*, agent_sessions.job_id FROM agent_turns JOIN agent_sessions "
        "ON agent_sessions.id = agent_turns.session_id WHERE agent_sessions.attempt_id = ? "
        "ORDER BY agent_turns.id", (attempt_id,))
    return [dict(r) for r in rows]


async def attempt_jobs(db: aiosqlite.Connection, attempt_id: int) -> list[int]:
    rows = await db.execute_fetchall(
        "SELECT id FROM jobs WHERE origin_kind = 'attempt' AND origin_id = ? ORDER BY id", (attempt_id,))
    return [r[0] for r in rows]


# ---- costs, merges -------------------------------------------------------------------------


async def add_cost(db: aiosqlite.Connection, *, attempt_id: int, session_id: int | None, job_id: int | None,
                   provider: str, model: str, tokens_in: int, tokens_out: int, cost_usd: float,
                   requests: int) -> None:
    await db.execute(
        "INSERT INTO cost_entries(attempt_id, session_id, job_id, provider, model, tokens_in, tokens_out, "
        "cost_usd, requests, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (attempt_id, session_id, job_id, provider, model, tokens_in, tokens_out, cost_usd, requests, now_iso()))


async def costs(db: aiosqlite.Connection, attempt_id: int) -> list[dict[str, Any]]:
    """Per model: tokens, dollars and requests."""
    rows = await db.execute_fetchall(
        "SELECT provider, model, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, "
        "sum(cost_usd) AS dollars, sum(requests) AS requests FROM cost_entries WHERE attempt_id = ? "
        "GROUP BY provider, model ORDER BY provider, model", (attempt_id,))
    return [dict(r) for r in rows]


async def add_merge(db: aiosqlite.Connection, *, attempt_id: int, kind: str, target_branch: str,
                    merge_commit: str | None) -> None:
    await db.execute(
        "INSERT INTO merges(attempt_id, kind, target_branch, merge_commit, created_at) VALUES (?, ?, ?, ?, ?)",
        (attempt_id, kind, target_branch, merge_commit, now_iso()))


async def merges(db: aiosqlite.Connection, attempt_id: int) -> list[dict[str, Any]]:
    rows = await db.execute_fetchall("SELECT * FROM merges WHERE attempt_id = ? ORDER BY id", (attempt_id,))
    return [dict(r) for r in rows]


# ---- sweeps --------------------------------------------------------------------------------


async def create_sweep(db: aiosqlite.Connection, *, task_id: int, matrix: dict, limits: dict,
                       max_parallel: int | None, time_budget_s: float | None) -> int:
    now = now_iso()
    ((sid,),) = await db.execute_fetchall(
        "INSERT INTO sweeps(task_id, matrix, limits, max_parallel, time_budget_s, started_at, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (task_id, json.dumps(matrix), json.dumps(limits), max_parallel, time_budget_s, now, now, now))
    return sid


async def get_sweep(db: aiosqlite.Connection, sweep_id: int) -> SweepRow:
    rows = await db.execute_fetchall("SELECT * FROM sweeps WHERE id = ?", (sweep_id,))
    if not rows:
        raise EvopilotError(f"no sweep {sweep_id}")
    return SweepRow.from_row(rows[0])


async def running_sweeps(db: aiosqlite.Connection) -> list[SweepRow]:
    rows = await db.execute_fetchall("SELECT * FROM sweeps WHERE state = 'running' ORDER BY id")
    return [SweepRow.from_row(r) for r in rows]


async def update_sweep(db: aiosqlite.Connection, sweep_id: int, **fields: Any) -> None:
    fields["updated_at"] = now_iso()
    sets, values = _sets(fields)
    await db.execute(f"UPDATE sweeps SET {sets} WHERE id = ?", (*values, sweep_id))


# ---- templates, scratch --------------------------------------------------------------------


async def put_template(db: aiosqlite.Connection, name: str, content: str) -> None:
    now = now_iso()
    await db.execute(
        "INSERT INTO templates(name, content, created_at, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET content = excluded.content, updated_at = excluded.updated_at",
        (name, content, now, now))


async def templates(db: aiosqlite.Connection) -> dict[str, str]:
    return {r["name"]: r["content"] for r in await db.execute_fetchall("SELECT name, content FROM templates ORDER BY name")}


async def put_scratch(db: aiosqlite.Connection, kind: str, key: str, payload: Any) -> None:
    await db.execute(
        "INSERT INTO scratch(kind, key, payload, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(kind, key) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at",
        (kind, key, json.dumps(payload), now_iso()))


async def get_scratch(db: aiosqlite.Connection, kind: str, key: str) -> Any:
    rows = await db.execute_fetchall("SELECT payload FROM scratch WHERE kind = ? AND key = ?", (kind, key))
    return json.loads(rows[0][0]) if rows else None
