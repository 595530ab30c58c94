"""Git for attempts: worktrees on branches of their own, their changes, and merges.

The safety rules (the peers' users lost work to each of these):

- only ``git worktree add`` / ``git worktree remove`` on the attempt's own path: never a ``rm -rf``,
  never ``prune`` (other worktrees' records), never a ref other than the attempt's branch, except
  the target branch a merge moves, checked against its old value;
- a branch moved or deleted outside evopilot is reported (``branch_problem``), never overwritten;
- uncommitted work in a worktree is never deleted without ``force``;
- a merge is computed without a working tree (``git merge-tree --write-tree``); a conflict
  changes nothing and names the files; the target branch moves only if it is still where the
  merge was computed from, and where it is checked out, by a fast-forward of that checkout,
  which git refuses when it would overwrite local changes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from evopilot.core import gitops
from evopilot.core.errors import EvopilotError

DIFF_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class DiffStats:
    files: int
    added: int
    removed: int


async def _ok(repo: str | Path, *args: str) -> tuple[bool, str]:
    try:
        return True, (await gitops.git(repo, *args)).decode().strip()
    except EvopilotError as e:
        return False, e.message


async def toplevel(path: str | Path) -> str:
    return (await toplevel_and_prefix(path))[0]


async def toplevel_and_prefix(path: str | Path) -> tuple[str, str]:
    """The repository's top and ``path``'s folder in it ("" or ending in "/")."""
    ok, out = await _ok(path, "rev-parse", "--show-toplevel", "--show-prefix")
    if not ok:
        raise EvopilotError(f"{path} is not in a git repository: attempts need one")
    top, _, prefix = out.partition("\n")
    return top, prefix.strip()


async def branch_of(path: str | Path) -> str | None:
    """The branch checked out at ``path`` (None: a detached HEAD)."""
    ok, out = await _ok(path, "symbolic-ref", "--quiet", "--short", "HEAD")
    return out if ok and out else None


async def current_branch(repo: str | Path) -> str:
    if (branch := await branch_of(repo)) is None:
        raise EvopilotError(f"{repo} has no branch checked out (detached HEAD): set [tasks] target_branch")
    return branch


async def branch_head(repo: str | Path, branch: str) -> str | None:
    """The commit the branch points at; None when there is no such branch."""
    ok, out = await _ok(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    return out if ok and out else None


async def head(worktree: str | Path) -> str:
    return (await gitops.git(worktree, "rev-parse", "HEAD")).decode().strip()


async def identity_env(repo: str | Path) -> dict[str, str]:
    """evopilot's identity for the commits it makes, unless the repository has one of its own."""
    ok, email = await _ok(repo, "config", "user.email")
    return {} if ok and email else dict(gitops.IDENTITY)


async def add(repo: str | Path, path: Path, branch: str, start: str) -> None:
    """A new worktree at ``path`` on a new ``branch`` at ``start``; an existing branch is an error."""
    await gitops.git(repo, "check-ref-format", "--branch", branch)
    if await branch_head(repo, branch) is not None:
        raise EvopilotError(f"branch {branch} exists already in {repo}: not reusing it")
    if path.exists():
        raise EvopilotError(f"{path} exists already: not making a worktree over it")
    path.parent.mkdir(parents=True, exist_ok=True)
    await gitops.git(repo, "worktree", "add", "-b", branch, str(path), start)


async def checked_out(repo: str | Path) -> dict[str, str]:
    """branch -> the worktree that has it checked out (the main one included)."""
    out = (await gitops.git(repo, "worktree", "list", "--porcelain")).decode()
    found, path = {}, None
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree "):]
        elif line.startswith("branch refs/heads/") and path is not None:
            found[line[len("branch refs/heads/"):]] = path
    return found


async def worktree_paths(repo: str | Path) -> set[str]:
    out = (await gitops.git(repo, "worktree", "list", "--porcelain")).decode()
    return {line[len("worktree "):] for line in out.splitlines() if line.startswith("worktree ")}


async def uncommitted(worktree: str | Path) -> list[str]:
    """Changed, staged and untracked (not ignored) paths, as ``git status --porcelain`` has them."""
    out = (await gitops.git(worktree, "status", "--porcelain", "--untracked-files=all")).decode()
    return [line[3:] for line in out.splitlines() if line]


async def commit_all(worktree: str | Path, message: str) -> bool:
    """Commit everything the agent left uncommitted; False when there was nothing."""
    if not await uncommitted(worktree):
        return False
    await gitops.git(worktree, "add", "-A")
    await gitops.git(worktree, "commit", "-q", "--no-verify", "-m", message, env=await identity_env(worktree))
    return True


async def diff_stats(repo: str | Path, base: str, tip: str) -> DiffStats:
    out = (await gitops.git(repo, "diff", "--numstat", base, tip)).decode()
    files = added = removed = 0
    for line in out.splitlines():
        a, r, _ = line.split("\t", 2)
        files += 1
        added += int(a) if a.isdigit() else 0  # '-' for a binary file
        removed += int(r) if r.isdigit() else 0
    return DiffStats(files, added, removed)


async def diff_chunks(where: str | Path, base: str, tip: str | None = None) -> AsyncIterator[bytes]:
    """The diff from ``base`` as git writes it, chunk by chunk (never whole in memory): to ``tip``,
    or with no tip to the working tree of the worktree ``where`` (an agent at work)."""
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", str(where), "diff", "--no-color", "--no-ext-diff", base, *([tip] if tip else []), "--",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while chunk := await proc.stdout.read(DIFF_CHUNK):
            yield chunk
        err = await proc.stderr.read()
        if await proc.wait() != 0:
            raise EvopilotError(f"git diff in {where}: {err.decode(errors='replace').strip()[:200]}")
    finally:
        if proc.returncode is None:  # the reader stopped early (a page was enough)
            proc.kill()
        # What git wrote before it ended (a pipe's worth at most) is read to the pipes' end, so
        # its transport closes now; with reading paused on a full buffer it stayed open until GC.
        await proc.communicate()


def branch_problem(branch: str, recorded: str | None, actual: str | None) -> str | None:
    """Why the branch is not where evopilot left it (None: it is)."""
    if recorded is None:
        return None
    if actual is None:
        return f"branch {branch} was deleted outside evopilot (it was at {recorded[:12]})"
    if actual != recorded:
        return (f"branch {branch} was moved outside evopilot (evopilot left it at {recorded[:12]}, "
                f"it is at {actual[:12]} now)")
    return None


async def remove(repo: str | Path, path: str | Path, *, force: bool) -> None:
    """Remove the attempt's worktree (its branch and commits stay). Uncommitted work is kept
    unless ``force``: the error lists it."""
    path = Path(path)
    if str(path) not in await worktree_paths(repo):
        if path.exists():
            raise EvopilotError(f"{path} is not a worktree of {repo}: not removing it")
        return  # gone already, and git has no record of it
    if path.exists() and not force:
        dirty = await uncommitted(path)
        if dirty:
            more = f" and {len(dirty) - 5} more" if len(dirty) > 5 else ""
            raise EvopilotError(f"{path} has uncommitted work ({', '.join(dirty[:5])}{more}): "
                                "commit it, or archive with --force to delete it")
    await gitops.git(repo, "worktree", "remove", *(["--force"] if force or not path.exists() else []), str(path))


@dataclass(frozen=True, slots=True)
class MergeResult:
    commit: str | None
    conflicts: list[str]


async def merge(repo: str | Path, branch: str, target: str, message: str) -> MergeResult:
    """Merge ``branch`` into ``target`` (a merge commit); on conflict nothing changes and the
    conflicting files are returned."""
    target_sha = await branch_head(repo, target)
    branch_sha = await branch_head(repo, branch)
    if target_sha is None:
        raise EvopilotError(f"target branch {target} does not exist in {repo}")
    if branch_sha is None:
        raise EvopilotError(f"branch {branch} does not exist in {repo}")
    ancestor, _ = await _ok(repo, "merge-base", "--is-ancestor", branch_sha, target_sha)
    if ancestor:
        raise EvopilotError(f"{branch} is already merged into {target}: nothing to merge")
    code, out, err = await _run_git(repo, "merge-tree", "--write-tree", "--name-only", "--no-messages",
                                    target_sha, branch_sha)
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    if code == 1:
        return MergeResult(None, sorted({line for line in lines[1:] if line}))
    if code != 0:
        raise EvopilotError(f"git merge-tree in {repo}: {err.decode(errors='replace').strip()[:200]}")
    commit = (await gitops.git(repo, "commit-tree", lines[0], "-p", target_sha, "-p", branch_sha, "-m", message,
                               env=await identity_env(repo))).decode().strip()
    where = (await checked_out(repo)).get(target)
    if where is None:
        # the old value: a target moved meanwhile fails here instead of being overwritten
        await gitops.git(repo, "update-ref", "-m", f"evopilot: merge {branch}", f"refs/heads/{target}", commit, target_sha)
    else:
        if await branch_head(repo, target) != target_sha:
            raise EvopilotError(f"{target} moved while merging: try again")
        ok, why = await _ok(where, "merge", "--ff-only", "--quiet", commit)
        if not ok:
            raise EvopilotError(f"{target} is checked out in {where} with local changes in the way: {why}")
    return MergeResult(commit, [])


async def _run_git(repo: str | Path, *args: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", str(repo), *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    out, err = await proc.communicate()
    return proc.returncode or 0, out, err
