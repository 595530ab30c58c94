"""Plain SQL for workspaces: the trees of commits that jobs run on, per project and host."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiosqlite

from evopilot.core.db.jobs import transaction
from evopilot.core.models import now_iso


@dataclass(frozen=True, slots=True)
class Workspace:
    id: int
    project_id: int | None
    host: str
    commit_sha: str
    path: str
    state: str


@dataclass(frozen=True, slots=True)
class Claim:
    tree: Workspace | None
    """The commit's tree, claimed by this run; None while another run builds it."""
    created: bool = False
    """The tree is new (state ``preparing``): the caller builds it, then ``mark_ready``."""
    basis: Workspace | None = None
    """For a new tree, a ready one of the same project and host to build it from (claimed too)."""


def _ws(row) -> Workspace:
    return Workspace(row["id"], row["project_id"], row["host"], row["commit_sha"], row["path"], row["state"])


async def claim(
    db: aiosqlite.Connection, *, project_id: int, host: str, sha: str, now: float, lease: float,
    path_for: Callable[[int], str], prefer: Sequence[str] = (),
) -> Claim:
    """Claim the commit's ready tree, or create it (state ``preparing``) with the newest ready
    tree of the project on the host as its basis (a tree of a commit in ``prefer`` first).

    A claim holds a tree for the caller (``users`` + 1, and a lease in case the caller dies)
    until ``release``.
    """
    iso = now_iso()
    hold = ("UPDATE workspaces SET users = users + 1, last_used_at = ?, "
            "lease_until = max(coalesce(lease_until, 0), ?) WHERE id = ?")
    async with transaction(db):
        rows = await db.execute_fetchall(
            "SELECT * FROM workspaces WHERE project_id = ? AND host = ? AND commit_sha = ? "
            "AND state != 'removing'", (project_id, host, sha))
        if rows:
            current = _ws(rows[0])
            if current.state == "ready":
                await db.execute(hold, (iso, now + lease, current.id))
                return Claim(current)
            if (rows[0]["lease_until"] or 0) >= now:
                return Claim(None)  # being built by another run
            # its builder died: the sweep deletes what it left, a new tree is built elsewhere
            await db.execute("UPDATE workspaces SET state = 'removing', users = 0 WHERE id = ?",
                             (current.id,))
        marks = ",".join("?" for _ in prefer) or "NULL"
        basis_rows = await db.execute_fetchall(
            f"SELECT * FROM workspaces WHERE project_id = ? AND host = ? AND state = 'ready' "
            f"ORDER BY commit_sha IN ({marks}) DESC, last_used_at DESC, id DESC LIMIT 1",
            (project_id, host, *prefer))
        basis = _ws(basis_rows[0]) if basis_rows else None
        if basis:
            await db.execute(hold, (iso, now + lease, basis.id))
        ((wid,),) = await db.execute_fetchall(
            "INSERT INTO workspaces(project_id, host, commit_sha, path, state, users, lease_until, "
            "created_at, last_used_at) VALUES (?, ?, ?, '', 'preparing', 1, ?, ?, ?) RETURNING id",
            (project_id, host, sha, now + lease, iso, iso))
        path = path_for(wid)
        await db.execute("UPDATE workspaces SET path = ? WHERE id = ?", (path, wid))
    return Claim(Workspace(wid, project_id, host, sha, path, "preparing"), True, basis)


async def mark_ready(db: aiosqlite.Connection, wid: int) -> None:
    await db.execute("UPDATE workspaces SET state = 'ready', last_used_at = ? WHERE id = ?",
                     (now_iso(), wid))


async def release(db: aiosqlite.Connection, ids: Sequence[int]) -> None:
    """End claims: the trees are removable once no unfinished job runs in them."""
    marks = ",".join("?" for _ in ids)
    await db.execute(f"UPDATE workspaces SET users = max(users - 1, 0) WHERE id IN ({marks})", ids)


async def renew(db: aiosqlite.Connection, ids: Sequence[int], until: float) -> None:
    marks = ",".join("?" for _ in ids)
    await db.execute(f"UPDATE workspaces SET lease_until = max(coalesce(lease_until, 0), ?) "
                     f"WHERE id IN ({marks})", (until, *ids))


async def discard(db: aiosqlite.Connection, wid: int) -> None:
    """A tree that turned out broken or gone: the sweep deletes what is left of it."""
    await db.execute("UPDATE workspaces SET state = 'removing', users = 0 WHERE id = ?", (wid,))


# A tree is removable when nobody holds it (or the holder's lease ran out), no unfinished job
# runs in it, and it is not among the newest ready trees an SSH host keeps as bases.
_REMOVABLE = """
    state = 'removing' OR (
        (users = 0 OR lease_until < :now)
        AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.workdir = workspaces.path
                        AND j.host = workspaces.host AND j.status IN ('pending', 'queued', 'running'))
        AND id NOT IN (SELECT id FROM (
            SELECT id, row_number() OVER (PARTITION BY project_id, host
                                          ORDER BY last_used_at DESC, id DESC) AS n
            FROM workspaces WHERE host != :local AND state = 'ready') WHERE n <= :keep))
"""


async def removable(db: aiosqlite.Connection, *, now: float, keep: int, local: str) -> bool:
    """Whether the sweep has anything to do (a read: the usual answer costs no write lock)."""
    rows = await db.execute_fetchall(f"SELECT 1 FROM workspaces WHERE {_REMOVABLE} LIMIT 1",
                                     {"now": now, "keep": keep, "local": local})
    return bool(rows)


async def start_removing(db: aiosqlite.Connection, *, now: float, keep: int, local: str) -> list[Workspace]:
    """Mark every removable tree ``removing`` and return them (all of them: an earlier sweep
    may have been cut short)."""
    async with transaction(db):
        await db.execute(f"UPDATE workspaces SET state = 'removing' WHERE {_REMOVABLE}",
                         {"now": now, "keep": keep, "local": local})
        rows = await db.execute_fetchall("SELECT * FROM workspaces WHERE state = 'removing'")
    return [_ws(r) for r in rows]


async def delete(db: aiosqlite.Connection, ids: Sequence[int]) -> None:
    marks = ",".join("?" for _ in ids)
    await db.execute(f"DELETE FROM workspaces WHERE id IN ({marks})", ids)


async def active_setup(db: aiosqlite.Connection, host: str, command: str) -> int | None:
    """A setup job building the same shared environment (same command) still to run or running."""
    rows = await db.execute_fetchall(
        "SELECT id FROM jobs WHERE kind = 'setup' AND host = ? AND command = ? "
        "AND status IN ('queued', 'running') ORDER BY id DESC LIMIT 1", (host, command))
    return rows[0][0] if rows else None
