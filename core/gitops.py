"""The git plumbing evopilot uses: resolve a revision, read files of a commit, diff two commits,
pack files of a commit into a tar stream.

Every command here only reads the object database: nothing touches the user's branches, index,
working tree or ``.git`` (no ``checkout``, no ``worktree add``, no index file). A project may be a
subdirectory of its repository; a ``Commit`` then stands for that subdirectory's tree.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from evopilot.core.errors import EvopilotError

TAR_BLOCK = 512


@dataclass(frozen=True, slots=True)
class Commit:
    repo: str
    """The repository's top level (git runs there: paths are never relative to a subdirectory)."""
    sha: str
    """Full commit id."""
    prefix: str
    """The project's path inside its repository ("" or ending in "/")."""

    @property
    def treeish(self) -> str:
        """The project's tree in this commit (``SHA:prefix``)."""
        return f"{self.sha}:{self.prefix}"


async def _git(repo: str, *args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    # Literal pathspecs: a file named like a glob is that file, never a pattern.
    env = {**os.environ, "GIT_LITERAL_PATHSPECS": "1", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", repo, *args, env=env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise EvopilotError("git is not installed (needed to run a commit)") from None
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out, err


def _first_line(err: bytes) -> str:
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return lines[0] if lines else "unknown error"


async def resolve(project_dir: str | Path, rev: str, project_name: str) -> tuple[Commit, list[str]]:
    """The commit ``rev`` (branch, tag, sha, ``HEAD~2``...) names in the project's repository,
    and its parents' shas."""
    if not rev or rev.startswith("-") or "\n" in rev or "\0" in rev:
        raise EvopilotError(f"--commit {rev!r}: not a revision")
    code, out, err = await _git(str(project_dir), "rev-parse", "--show-toplevel", "--show-prefix")
    if code != 0:
        raise EvopilotError(f"project {project_name} ({project_dir}) is not in a git repository: "
                            f"--commit needs one ({_first_line(err)})")
    repo, prefix = (out.decode("utf-8", "surrogateescape").split("\n") + [""])[:2]
    code, out, _ = await _git(repo, "rev-list", "--parents", "-n", "1", f"{rev}^{{commit}}", "--")
    if code != 0 or not out.strip():
        raise EvopilotError(f"unknown revision {rev!r} in project {project_name}: "
                            "give a branch, tag or commit sha")
    sha, *parents = out.decode().split()
    return Commit(repo, sha, prefix), parents


async def read(commit: Commit, paths: list[str]) -> dict[str, tuple[str, bytes] | None]:
    """Each path of the project at ``commit``: (object type, contents), or None when absent."""
    if not paths:
        return {}
    request = "".join(f"{commit.treeish}{p}\n" for p in paths).encode("utf-8", "surrogateescape")
    code, out, err = await _git(commit.repo, "cat-file", "--batch", stdin=request)
    if code != 0:
        raise EvopilotError(f"git cat-file failed in {commit.repo}: {_first_line(err)}")
    found: dict[str, tuple[str, bytes] | None] = {}
    pos = 0
    for p in paths:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        if header[-1] == b"missing" or len(header) != 3:
            found[p], pos = None, nl + 1
            continue
        size = int(header[2])
        found[p] = (header[1].decode(), out[nl + 1 : nl + 1 + size])
        pos = nl + 1 + size + 1  # the content is followed by a newline
    return found


async def diff(old: Commit, new: Commit) -> tuple[list[str], list[str]]:
    """Files of the project that differ from ``old`` to ``new``: (added or changed, removed)."""
    code, out, err = await _git(new.repo, "diff-tree", "-r", "-z", "--no-renames", "--name-status",
                                old.treeish, new.treeish)
    if code != 0:
        raise EvopilotError(f"git diff-tree failed in {new.repo}: {_first_line(err)}")
    fields = out.decode("utf-8", "surrogateescape").split("\0")
    changed, removed = [], []
    for status, path in zip(fields[0::2], fields[1::2]):
        (removed if status == "D" else changed).append(path)
    return changed, removed


async def archive(commit: Commit, paths: list[str] | None = None) -> bytes:
    """A tar stream of the project's files at ``commit`` (all, or only ``paths``), with the
    same contents a checkout would give (git's filters and attributes apply)."""
    args = ["archive", "--format=tar", commit.treeish]
    if paths is not None:
        if not paths:
            return b""
        args += ["--", *paths]
    code, out, err = await _git(commit.repo, *args)
    if code != 0:
        raise EvopilotError(f"git archive failed in {commit.repo}: {_first_line(err)}")
    return trim_tar(out)


def trim_tar(data: bytes) -> bytes:
    """Cut the zero padding after a tar stream's end-of-archive blocks (git pads to 10 KiB;
    GNU tar reading a pipe needs only the two zero blocks)."""
    pos, pax_size = 0, None
    while pos + TAR_BLOCK <= len(data):
        header = data[pos : pos + TAR_BLOCK]
        if header.count(0) == TAR_BLOCK:
            return data[: pos + 2 * TAR_BLOCK]
        try:
            size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        except ValueError:
            return data  # not a header we understand: keep the stream as it is
        if pax_size is not None:  # a file over 8 GiB: its size is in the extended header
            size, pax_size = pax_size, None
        body = data[pos + TAR_BLOCK : pos + TAR_BLOCK + size]
        if header[156:157] == b"x":
            for record in body.split(b"\n"):
                if b" size=" in record:
                    pax_size = int(record.split(b"=", 1)[1])
        pos += TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK
    return data
