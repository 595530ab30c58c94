"""The git plumbing everything else uses: read files of a commit, make a commit from changed
files without a checkout, name commits under refs of our own, diff and branch.

Nothing here touches the user's working tree, index or branches (a commit is built in a
temporary index file); commits made with the same inputs and date have the same hash, so making
one again after a crash gives the same commit, not a second one.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from evopilot.core.errors import EvopilotError

IDENTITY = {"GIT_AUTHOR_NAME": "evopilot", "GIT_AUTHOR_EMAIL": "evopilot@localhost",
            "GIT_COMMITTER_NAME": "evopilot", "GIT_COMMITTER_EMAIL": "evopilot@localhost"}


async def git(repo: str | Path, *args: str, input: bytes | None = None,
              env: Mapping[str, str] | None = None) -> bytes:
    """Run git in ``repo``; its stdout, or a one-line error."""
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", str(repo), *args,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await proc.communicate(input)
    if proc.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines() or [f"exit status {proc.returncode}"]
        raise EvopilotError(f"git {args[0]} in {repo}: {lines[-1]}")
    return out


async def rev_parse(repo: str | Path, rev: str) -> str:
    """The full sha of the commit ``rev`` names (a branch, tag or sha)."""
    if rev.startswith("-"):
        raise EvopilotError(f"not a revision: {rev!r}")
    try:
        return (await git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")).decode().strip()
    except EvopilotError:
        if not (Path(repo) / ".git").exists():
            raise EvopilotError(f"{repo} is not a git repository") from None
        raise EvopilotError(f"no commit {rev!r} in {repo}") from None


async def read_files(repo: str | Path, commit: str, paths: list[str]) -> dict[str, str]:
    """The text of ``paths`` at ``commit`` (one git process); a missing path is an error."""
    req = "".join(f"{commit}:{p}\n" for p in paths).encode()
    out = await git(repo, "cat-file", "--batch", input=req)
    files, pos = {}, 0
    for p in paths:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].decode()
        if header.endswith(" missing"):
            raise EvopilotError(f"{p}: not in commit {commit[:12]}")
        size = int(header.rsplit(" ", 1)[1])
        files[p] = out[nl + 1 : nl + 1 + size].decode("utf-8", "surrogateescape")
        pos = nl + 1 + size + 1
    return files


async def tree_of(repo: str | Path, commit: str) -> str:
    return (await git(repo, "rev-parse", f"{commit}^{{tree}}")).decode().strip()


async def commit_files(repo: str | Path, parent: str, files: Mapping[str, str], message: str,
                       date: str) -> tuple[str, str]:
    """A commit of ``parent`` with ``files`` (path -> new text) replaced; (commit, tree).

    ``date`` (git's "unix-seconds +0000" form) fixes both dates, so the same change gives the
    same commit hash. File modes are kept from the parent (new files are 100644).
    """
    paths = sorted(files)
    modes = {}
    for line in (await git(repo, "ls-tree", "-z", parent, "--", *paths)).split(b"\0"):
        if line:
            meta, path = line.split(b"\t", 1)
            modes[path.decode("utf-8", "surrogateescape")] = meta.split()[0].decode()
    blobs = []
    for p in paths:
        sha = (await git(repo, "hash-object", "-w", "--stdin",
                         input=files[p].encode("utf-8", "surrogateescape"))).decode().strip()
        blobs.append(f"{modes.get(p, '100644')},{sha},{p}")
    with tempfile.TemporaryDirectory(prefix="evp-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        await git(repo, "read-tree", parent, env=env)
        args = [a for b in blobs for a in ("--cacheinfo", b)]
        await git(repo, "update-index", "--add", *args, env=env)
        tree = (await git(repo, "write-tree", env=env)).decode().strip()
    dates = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    commit = (await git(repo, "commit-tree", tree, "-p", parent, "-F", "-",
                        input=message.encode(), env={**IDENTITY, **dates})).decode().strip()
    return commit, tree


async def update_ref(repo: str | Path, ref: str, commit: str) -> None:
    await git(repo, "update-ref", ref, commit)


async def diff(repo: str | Path, a: str, b: str) -> str:
    return (await git(repo, "diff", "--no-color", a, b)).decode("utf-8", "replace")


async def branch(repo: str | Path, name: str, commit: str, *, force: bool = False) -> None:
    """A branch ``name`` at ``commit``; an existing branch is moved only with ``force``."""
    if name.startswith("-"):
        raise EvopilotError(f"invalid branch name {name!r}")
    try:
        await git(repo, "check-ref-format", "--branch", name)
    except EvopilotError:
        raise EvopilotError(f"invalid branch name {name!r}") from None
    await git(repo, "branch", *(["--force"] if force else []), name, commit)
