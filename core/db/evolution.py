"""Plain SQL for experiments, their candidate commits and metrics, iterations, archive snapshots
and costs."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

import aiosqlite

from evopilot.core.errors import EvopilotError
from evopilot.core.models import CommitRow, ExperimentRow, IterationRow
from evopilot.core.models import now_iso

GLOBAL_ISLAND = -1  # map_elites_states row holding the state shared by all islands


# ---- experiments ---------------------------------------------------------------------------


async def create_experiment(db: aiosqlite.Connection, *, name: str, project_id: int, config_hash: str,
                            config_snapshot: str, source_path: str | None, iterations: int,
                            base_commit: str) -> ExperimentRow:
    now = now_iso()
    (row,) = await db.execute_fetchall(
        "INSERT INTO experiments(name, project_id, config_hash, config_snapshot, source_path, "
        "iterations_planned, base_commit, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "RETURNING *",
        (name, project_id, config_hash, config_snapshot, source_path, iterations, base_commit, now, now))
    return ExperimentRow.from_row(row)


async def experiment_by_hash(db: aiosqlite.Connection, config_hash: str) -> ExperimentRow | None:
    rows = await db.execute_fetchall("SELECT * FROM experiments WHERE config_hash = ?", (config_hash,))
    return ExperimentRow.from_row(rows[0]) if rows else None


async def get_experiment(db: aiosqlite.Connection, ref: str | int) -> ExperimentRow:
    """By id, or by name when the name is unique (the newest otherwise)."""
    ref = str(ref)
    sql = "SELECT * FROM experiments WHERE id = ?" if ref.isdigit() else \
        "SELECT * FROM experiments WHERE name = ? ORDER BY id DESC LIMIT 1"
    rows = await db.execute_fetchall(sql, (int(ref) if ref.isdigit() else ref,))
    if not rows:
        raise EvopilotError(f"no experiment {ref!r} (see `evopilot evolve list`)")
    return ExperimentRow.from_row(rows[0])


async def any_experiment(db: aiosqlite.Connection) -> bool:
    return bool(await db.execute_fetchall("SELECT 1 FROM experiments LIMIT 1"))


async def any_running_experiment(db: aiosqlite.Connection) -> bool:
    return bool(await db.execute_fetchall(
        "SELECT 1 FROM experiments WHERE state IN ('running', 'stopping') LIMIT 1"))


async def list_experiments(db: aiosqlite.Connection) -> list[ExperimentRow]:
    rows = await db.execute_fetchall("SELECT * FROM experiments ORDER BY id")
    return [ExperimentRow.from_row(r) for r in rows]


async def update_experiment(db: aiosqlite.Connection, exp_id: int, **fields: Any) -> None:
    fields["updated_at"] = now_iso()
    sets = ", ".join(f"{k} = ?" for k in fields)
    await db.execute(f"UPDATE experiments SET {sets} WHERE id = ?", (*fields.values(), exp_id))


async def claim_experiment(db: aiosqlite.Connection, exp_id: int, owner: str, stale_before: float,
                           dead_owners: Iterable[str] = ()) -> bool:
    """Become the process running the experiment's loop, unless a live one already is."""
    dead = list(dead_owners)
    rows = await db.execute_fetchall(
        f"UPDATE experiments SET owner = ?, heartbeat_at = ?, state = 'running', stop_reason = NULL, "
        f"updated_at = ? WHERE id = ? AND (owner IS NULL OR owner = ? OR heartbeat_at < ? "
        f"OR owner IN ({','.join('?' for _ in dead)})) RETURNING id",
        (owner, time.time(), now_iso(), exp_id, owner, stale_before, *dead))
    return bool(rows)


async def heartbeat(db: aiosqlite.Connection, exp_id: int, owner: str, active_seconds: float) -> str | None:
    """Renew the claim; returns the experiment's state (None: another process took it over)."""
    rows = await db.execute_fetchall(
        "UPDATE experiments SET heartbeat_at = ?, active_seconds = ? WHERE id = ? AND owner = ? "
        "RETURNING state", (time.time(), active_seconds, exp_id, owner))
    return rows[0][0] if rows else None


async def release_experiment(db: aiosqlite.Connection, exp_id: int, owner: str, state: str,
                             reason: str | None, active_seconds: float) -> None:
    await db.execute(
        "UPDATE experiments SET owner = NULL, heartbeat_at = NULL, state = ?, stop_reason = ?, "
        "active_seconds = ?, updated_at = ? WHERE id = ? AND owner = ?",
        (state, reason, active_seconds, now_iso(), exp_id, owner))


# ---- iterations ----------------------------------------------------------------------------


async def add_iteration(db: aiosqlite.Connection, exp_id: int, number: int, *, status: str,
                        base: str, island: int, inspirations: list[str], payload: dict,
                        candidate: str | None = None) -> int:
    now = now_iso()
    ((it_id,),) = await db.execute_fetchall(
        "INSERT INTO evolution_iterations(experiment_id, number, status, base_commit_hash, island, "
        "inspiration_hashes, payload, candidate_hash, scheduled_at, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (exp_id, number, status, base, island, json.dumps(inspirations), json.dumps(payload),
         candidate, now, now, now))
    return it_id


async def iterations(db: aiosqlite.Connection, exp_id: int, *, from_number: int = 0,
                     limit: int | None = None) -> list[IterationRow]:
    sql = "SELECT * FROM evolution_iterations WHERE experiment_id = ? AND number >= ? ORDER BY number"
    params: list = [exp_id, from_number]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [IterationRow.from_row(r) for r in await db.execute_fetchall(sql, params)]


async def get_iteration(db: aiosqlite.Connection, it_id: int) -> IterationRow | None:
    rows = await db.execute_fetchall("SELECT * FROM evolution_iterations WHERE id = ?", (it_id,))
    return IterationRow.from_row(rows[0]) if rows else None


async def update_iteration(db: aiosqlite.Connection, it_id: int, **fields: Any) -> None:
    for k in ("payload", "inspiration_hashes"):
        if k in fields and not isinstance(fields[k], str):
            fields[k] = json.dumps(fields[k])
    fields["updated_at"] = now_iso()
    sets = ", ".join(f"{k} = ?" for k in fields)
    await db.execute(f"UPDATE evolution_iterations SET {sets} WHERE id = ?", (*fields.values(), it_id))


async def iteration_counts(db: aiosqlite.Connection, exp_id: int) -> dict[str, int]:
    rows = await db.execute_fetchall(
        "SELECT status, count(*) FROM evolution_iterations WHERE experiment_id = ? AND number > 0 "
        "GROUP BY status", (exp_id,))
    return {s: n for s, n in rows}


async def link_evaluation(db: aiosqlite.Connection, it_id: int, job_id: int, stage: int) -> None:
    """The iteration evaluates with ``job_id`` now, unless its end was already recorded."""
    await db.execute(
        "UPDATE evolution_iterations SET job_id = ?, status = 'evaluating', updated_at = ? "
        "WHERE id = ? AND status = 'mutated' AND stage = ?", (job_id, now_iso(), it_id, stage))


async def linked_job(db: aiosqlite.Connection, it_id: int, bench_path: str) -> int | None:
    """An evaluation job already queued for the iteration's stage (a submit whose link to the
    iteration was cut short by a crash)."""
    rows = await db.execute_fetchall(
        "SELECT id FROM jobs WHERE origin_kind = 'iteration' AND origin_id = ? AND benchmark_path = ? "
        "ORDER BY id DESC LIMIT 1", (it_id, bench_path))
    return rows[0][0] if rows else None


# ---- commits and metrics -------------------------------------------------------------------


async def add_commit(db: aiosqlite.Connection, exp_id: int, *, commit_hash: str, parent: str | None,
                     tree: str, island: int | None, iteration: int | None, message: str,
                     extra: dict) -> int:
    try:
        ((cid,),) = await db.execute_fetchall(
            "INSERT INTO commits(experiment_id, commit_hash, parent_hash, tree_hash, island, iteration, "
            "author, message, extra_context, created_at) VALUES (?, ?, ?, ?, ?, ?, 'evopilot', ?, ?, ?) "
            "RETURNING id",
            (exp_id, commit_hash, parent, tree, island, iteration, message, json.dumps(extra), now_iso()))
    except sqlite3.IntegrityError:  # made again after a crash: the same commit
        ((cid,),) = await db.execute_fetchall(
            "SELECT id FROM commits WHERE experiment_id = ? AND commit_hash = ?", (exp_id, commit_hash))
    return cid


async def commit_by_hash(db: aiosqlite.Connection, exp_id: int, commit_hash: str) -> CommitRow | None:
    rows = await db.execute_fetchall(
        "SELECT * FROM commits WHERE experiment_id = ? AND commit_hash = ?", (exp_id, commit_hash))
    return (await _with_metrics(db, rows))[0] if rows else None


async def find_commit(db: aiosqlite.Connection, prefix: str) -> CommitRow:
    """A candidate by (a prefix of) its hash, across experiments."""
    if len(prefix) < 4 or not all(c in "0123456789abcdef" for c in prefix.lower()):
        raise EvopilotError(f"{prefix!r}: give at least 4 hex digits of a candidate's commit")
    rows = await db.execute_fetchall(
        "SELECT * FROM commits WHERE commit_hash LIKE ? ORDER BY id LIMIT 2", (prefix.lower() + "%",))
    if not rows:
        raise EvopilotError(f"no candidate commit {prefix!r}")
    if len(rows) > 1:
        raise EvopilotError(f"{prefix!r} names more than one candidate: give more digits")
    return (await _with_metrics(db, rows))[0]


async def commits_by_id(db: aiosqlite.Connection, ids: Iterable[int]) -> dict[int, CommitRow]:
    ids = list(ids)
    if not ids:
        return {}
    rows = await db.execute_fetchall(
        f"SELECT * FROM commits WHERE id IN ({','.join('?' for _ in ids)})", ids)
    return {c.id: c for c in await _with_metrics(db, rows)}


async def commit_hashes(db: aiosqlite.Connection, ids: Iterable[int]) -> dict[int, str]:
    """Commit row id -> hash, without the rest of the rows (an archive's cells name row ids)."""
    ids = list(ids)
    if not ids:
        return {}
    rows = await db.execute_fetchall(
        f"SELECT id, commit_hash FROM commits WHERE id IN ({','.join('?' for _ in ids)})", ids)
    return {i: h for i, h in rows}


async def commits(db: aiosqlite.Connection, exp_id: int) -> list[CommitRow]:
    rows = await db.execute_fetchall("SELECT * FROM commits WHERE experiment_id = ? ORDER BY id", (exp_id,))
    return await _with_metrics(db, rows)


async def tree_seen(db: aiosqlite.Connection, exp_id: int, tree: str) -> bool:
    rows = await db.execute_fetchall(
        "SELECT 1 FROM commits WHERE experiment_id = ? AND tree_hash = ? LIMIT 1", (exp_id, tree))
    return bool(rows)


async def update_commit(db: aiosqlite.Connection, commit_id: int, **fields: Any) -> None:
    if "extra_context" in fields and not isinstance(fields["extra_context"], str):
        fields["extra_context"] = json.dumps(fields["extra_context"])
    sets = ", ".join(f"{k} = ?" for k in fields)
    await db.execute(f"UPDATE commits SET {sets} WHERE id = ?", (*fields.values(), commit_id))


async def set_commit_metrics(db: aiosqlite.Connection, commit_id: int, job_id: int) -> None:
    """Copy a finished evaluation job's metrics (with units and directions) to the candidate."""
    await db.execute(
        "INSERT INTO commit_metrics(commit_id, name, value, unit, higher_is_better) "
        "SELECT ?, name, value, unit, higher_is_better FROM metrics WHERE job_id = ? "
        "ON CONFLICT(commit_id, name) DO UPDATE SET value = excluded.value, unit = excluded.unit, "
        "higher_is_better = excluded.higher_is_better", (commit_id, job_id))


async def commit_metrics(db: aiosqlite.Connection, commit_id: int) -> list[dict]:
    rows = await db.execute_fetchall(
        "SELECT name, value, unit, higher_is_better FROM commit_metrics WHERE commit_id = ? ORDER BY id",
        (commit_id,))
    return [dict(r) for r in rows]


async def _with_metrics(db: aiosqlite.Connection, rows) -> list[CommitRow]:
    out = [CommitRow.from_row(r) for r in rows]
    if out:
        by_id = {c.id: c for c in out}
        for cid, name, value in await db.execute_fetchall(
                f"SELECT commit_id, name, value FROM commit_metrics WHERE commit_id IN "
                f"({','.join('?' for _ in by_id)}) ORDER BY id", list(by_id)):
            by_id[cid].metrics[name] = value
    return out


# ---- archive snapshots and history ---------------------------------------------------------


async def save_snapshot(db: aiosqlite.Connection, exp_id: int, island: int, snapshot: dict) -> None:
    await db.execute(
        "INSERT INTO map_elites_states(experiment_id, island_id, snapshot, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(experiment_id, island_id) DO UPDATE SET snapshot = excluded.snapshot, "
        "updated_at = excluded.updated_at", (exp_id, island, json.dumps(snapshot), now_iso()))


async def snapshots(db: aiosqlite.Connection, exp_id: int) -> dict[int, dict]:
    rows = await db.execute_fetchall(
        "SELECT island_id, snapshot FROM map_elites_states WHERE experiment_id = ?", (exp_id,))
    return {i: json.loads(s) for i, s in rows}


async def snapshot(db: aiosqlite.Connection, exp_id: int, island: int) -> dict | None:
    rows = await db.execute_fetchall(
        "SELECT snapshot FROM map_elites_states WHERE experiment_id = ? AND island_id = ?", (exp_id, island))
    return json.loads(rows[0][0]) if rows else None


async def change_stamp(db: aiosqlite.Connection, exp_id: int | None) -> tuple:
    """A value that changes when experiments come or change, or (with ``exp_id``) when that
    experiment's iterations or archives do: what a watcher polls to see another process's
    run, reading only timestamps and counts (indexed)."""
    (row,) = await db.execute_fetchall(
        "SELECT (SELECT count(*) FROM experiments), (SELECT max(id) FROM experiments), "
        "(SELECT max(updated_at) FROM experiments), "
        "(SELECT max(updated_at) FROM map_elites_states WHERE experiment_id = ?1), "
        "(SELECT count(*) FROM archive_history WHERE experiment_id = ?1), "
        "(SELECT count(*) FROM evolution_iterations WHERE experiment_id = ?1), "
        "(SELECT max(updated_at) FROM evolution_iterations WHERE experiment_id = ?1)", (exp_id,))
    return tuple(row)


async def add_history(db: aiosqlite.Connection, exp_id: int, island: int, placed: int, coverage: float,
                      qd_score: float, best: float | None) -> None:
    await db.execute(
        "INSERT OR REPLACE INTO archive_history(experiment_id, island_id, placed, coverage, qd_score, best) "
        "VALUES (?, ?, ?, ?, ?, ?)", (exp_id, island, placed, coverage, qd_score, best))


async def history(db: aiosqlite.Connection, exp_id: int) -> list[dict]:
    rows = await db.execute_fetchall(
        "SELECT island_id, placed, coverage, qd_score, best FROM archive_history WHERE experiment_id = ? "
        "ORDER BY placed, island_id", (exp_id,))
    return [dict(r) for r in rows]


# ---- costs ---------------------------------------------------------------------------------


async def add_cost(db: aiosqlite.Connection, *, experiment_id: int | None, iteration_id: int | None,
                   job_id: int | None, provider: str, model: str, tokens_in: int, tokens_out: int,
                   cost_usd: float, requests: int) -> None:
    await db.execute(
        "INSERT INTO cost_entries(experiment_id, iteration_id, job_id, provider, model, tokens_in, "
        "tokens_out, cost_usd, requests, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (experiment_id, iteration_id, job_id, provider, model, tokens_in, tokens_out, cost_usd,
         requests, now_iso()))


async def spend(db: aiosqlite.Connection, exp_id: int) -> list[dict]:
    """Spend per provider and model: tokens, dollars, requests."""
    rows = await db.execute_fetchall(
        "SELECT provider, model, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, "
        "sum(cost_usd) AS dollars, sum(requests) AS requests FROM cost_entries WHERE experiment_id = ? "
        "GROUP BY provider, model ORDER BY provider, model", (exp_id,))
    return [dict(r) for r in rows]
