"""The git plumbing everything else uses.

Reading (jobs on a commit, ``core.workspace``): resolve a revision, read files of a commit, diff
two commits, pack files of a commit into a tar stream. Writing (evolution's candidates): a commit
made from changed files in a temporary index, refs under ``refs/evopilot/``, a branch on request.

Nothing here touches the user's working tree, index or current branch (no ``checkout``, no
``worktree add``; a commit is built in a temporary index file). A project may be a subdirectory
of its repository for reading (a ``Commit`` then stands for that subdirectory's tree); commits are
made at the repository root. Commits made with the same inputs and date have the same hash, so
making one again after a crash gives the same commit, not a second one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from evopilot.core.errors import EvopilotError

TAR_BLOCK = 512
IDENTITY = {"GIT_AUTHOR_NAME": "evopilot", "GIT_AUTHOR_EMAIL": "evopilot@localhost",
            "GIT_COMMITTER_NAME": "evopilot", "GIT_COMMITTER_EMAIL": "evopilot@localhost"}


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


async def _start(repo: str, *args: str, stdin: bool = False,
                 env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
    # Literal pathspecs: a file named like a glob is that file, never a pattern; reading never
    # takes the index lock. Options rather than environment: a call without ``env`` passes this
    # process's environment on untouched (copying it cost as much CPU as a short git call).
    try:
        return await asyncio.create_subprocess_exec(
            "git", "--literal-pathspecs", "--no-optional-locks", "-C", repo, *args,
            env={**os.environ, **env} if env else None,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise EvopilotError("git is not installed") from None


async def _git(repo: str, *args: str, stdin: bytes | None = None,
               env: Mapping[str, str] | None = None) -> tuple[int, bytes, bytes]:
    proc = await _start(repo, *args, stdin=stdin is not None, env=env)
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
    # one git process when all is well (a job on a commit of every evolution candidate asks)
    code, out, _ = await _git(str(project_dir), "rev-parse", "--show-toplevel", "--show-prefix",
                              f"{rev}^{{commit}}", f"{rev}^@", "--")
    if code == 0:
        repo, prefix, sha, *parents = out.decode("utf-8", "surrogateescape").split("\n")
        return Commit(repo, sha, prefix), [p for p in parents if p and p != "--"]
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


# ---- writing: evolution's candidates ------------------------------------------------------


async def git(repo: str | Path, *args: str, input: bytes | None = None,
              env: Mapping[str, str] | None = None) -> bytes:
    """Run git in ``repo``; its stdout, or a one-line error."""
    code, out, err = await _git(str(repo), *args, stdin=input, env=env)
    if code != 0:
        raise EvopilotError(f"git {args[0]} in {repo}: {_first_line(err)}")
    return out


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
    same commit hash. File modes are kept from the parent (new files are 100644). The trees on
    the way to the changed files are the parent's (one ``cat-file --batch``) with their entries
    replaced, written with ``mktree``: a few git processes, whatever the size of the project.
    """
    blobs = {}
    for p in sorted(files):
        blobs[p] = (await git(repo, "hash-object", "-w", "--stdin",
                              input=files[p].encode("utf-8", "surrogateescape"))).decode().strip()
    dirs = {""}
    for p in blobs:
        parts = p.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    trees = await _read_trees(repo, parent, sorted(dirs))
    written: dict[str, str] = {}
    for d in sorted(dirs, key=lambda d: d.count("/") + bool(d), reverse=True):  # deepest first
        entries = dict(trees[d])
        for p, sha in blobs.items():
            head, _, name = p.rpartition("/")
            if head == d:
                entries[name] = (entries.get(name, ("100644",))[0], "blob", sha)
        for sub, sha in written.items():
            head, _, name = sub.rpartition("/")
            if head == d and sub:
                entries[name] = ("040000", "tree", sha)
        listing = "".join(f"{mode} {kind} {sha}\t{name}\0" for name, (mode, kind, sha) in entries.items())
        written[d] = (await git(repo, "mktree", "-z", input=listing.encode("utf-8", "surrogateescape"))).decode().strip()
    tree = written[""]
    dates = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    commit = (await git(repo, "commit-tree", tree, "-p", parent, "-F", "-",
                        input=message.encode(), env={**IDENTITY, **dates})).decode().strip()
    return commit, tree


async def _read_trees(repo: str | Path, commit: str, dirs: list[str]) -> dict[str, dict[str, tuple[str, str, str]]]:
    """Each directory's entries at ``commit``: name -> (mode, type, sha); empty when absent."""
    req = "".join(f"{commit}:{d}\n" if d else f"{commit}^{{tree}}\n" for d in dirs)
    out = await git(repo, "cat-file", "--batch", input=req.encode("utf-8", "surrogateescape"))
    trees, pos = {}, 0
    for d in dirs:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        entries: dict[str, tuple[str, str, str]] = {}
        if header[-1] == b"missing" or len(header) != 3:
            trees[d], pos = entries, nl + 1
            continue
        raw = out[nl + 1 : nl + 1 + int(header[2])]
        pos = nl + 1 + int(header[2]) + 1
        if header[1] != b"tree":  # a file where a directory is to be: the directory replaces it
            trees[d] = entries
            continue
        width = len(header[0]) // 2  # the object id's bytes (SHA-1 or SHA-256 repositories)
        i = 0
        while i < len(raw):
            sp = raw.index(b" ", i)
            nul = raw.index(b"\0", sp)
            mode = raw[i:sp].decode().rjust(6, "0")
            kind = "tree" if mode == "040000" else "commit" if mode == "160000" else "blob"
            name = raw[sp + 1 : nul].decode("utf-8", "surrogateescape")
            entries[name] = (mode, kind, raw[nul + 1 : nul + 1 + width].hex())
            i = nul + 1 + width
        trees[d] = entries
    return trees


async def update_ref(repo: str | Path, ref: str, commit: str) -> None:
    await git(repo, "update-ref", ref, commit)


async def diff_text(repo: str | Path, a: str, b: str) -> str:
    return (await git(repo, "diff", "--no-color", a, b)).decode("utf-8", "replace")


async def diff_head(repo: str | Path, a: str, b: str, limit: int) -> tuple[str, bool]:
    """The first ``limit`` bytes of ``diff_text`` (cut at a line end), and whether there was
    more: git is stopped there, so a huge diff is never read whole."""
    proc = await _start(str(repo), "diff", "--no-color", a, b)
    assert proc.stdout is not None and proc.stderr is not None
    out = bytearray()
    while len(out) <= limit and (chunk := await proc.stdout.read(65536)):
        out += chunk
    cut = len(out) > limit
    if cut:
        proc.kill()
        del out[out.rfind(b"\n", 0, limit + 1) + 1:]
    err = await proc.stderr.read()
    if await proc.wait() != 0 and not cut:
        raise EvopilotError(f"git diff in {repo}: {_first_line(err)}")
    return out.decode("utf-8", "replace"), cut


async def branch(repo: str | Path, name: str, commit: str, *, force: bool = False) -> None:
    """A branch ``name`` at ``commit``; an existing branch is moved only with ``force``."""
    if name.startswith("-"):
        raise EvopilotError(f"invalid branch name {name!r}")
    try:
        await git(repo, "check-ref-format", "--branch", name)
    except EvopilotError:
        raise EvopilotError(f"invalid branch name {name!r}") from None
    await git(repo, "branch", *(["--force"] if force else []), name, commit)
