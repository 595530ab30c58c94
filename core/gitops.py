"""The git plumbing everything else uses.

Reading (jobs on a commit, ``core.workspace``): resolve a revision, read files of a commit, diff
two commits, pack files of a commit into a tar stream. Writing (evolution's candidates): a commit
made from changed files in a temporary index, refs under ``refs/evopilot/``, a branch on request.

Nothing here touches the user's working tree, index or current branch (no ``checkout``, no
``worktree add``; a commit is built in a temporary index file). A project may be a subdirectory
of its repository for reading (a ``Commit`` then stands for that subdirectory's tree); commits are
made at the repository root. Commits made with the same inputs and date have the same hash, so
making one again after a crash gives the same commit, not a second one.

Objects are read and written through a ``Batch``: long-lived ``cat-file --batch``, ``hash-object
--stdin-paths``, ``mktree --batch`` and ``update-ref --stdin`` processes of one repository, each
started at its first use. An owner that makes many calls (evolution's loop, the workspaces of an
engine) keeps one open: a candidate then costs no new git process at all (a git process costs
~3 ms of CPU and ~6 ms here, and evolution made ~9 per candidate). The module's functions take
one as ``batch``; without, they open one for the call and close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Mapping
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


def _error_line(err: bytes) -> str:
    """The line that says what went wrong (git may say what it was doing first)."""
    lines = err.decode("utf-8", "replace").strip().splitlines()
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[0] if lines else "unknown error"


class _Proc:
    """One long-lived git process answering requests on stdin, one at a time."""

    def __init__(self, repo: str, args: tuple[str, ...]) -> None:
        self.repo, self.args = repo, args
        self.proc: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()

    async def ask(self, request: bytes, answer: Callable[[asyncio.StreamReader], Awaitable]):
        async with self.lock:
            return await self.ask_locked(request, answer)

    async def ask_locked(self, request: bytes, answer: Callable[[asyncio.StreamReader], Awaitable]):
        """``ask``, by a caller holding ``lock``."""
        proc = await self._started()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(request)
            await proc.stdin.drain()
            return await answer(proc.stdout)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
            await self._reset()  # it died (update-ref exits on a failed update)
            err = await proc.stderr.read() if proc.stderr else b""
            raise EvopilotError(f"git {self.args[0]} in {self.repo}: {_error_line(err) if err else e}") from None
        except BaseException:  # cancelled half-way: its answer would go to the next request
            await self._reset()
            raise

    async def start(self) -> None:
        async with self.lock:
            await self._started()

    async def _started(self) -> asyncio.subprocess.Process:
        if self.proc is not None and self.proc.returncode is not None:
            self.proc = None  # it went away between requests (killed): start another
        if self.proc is None:
            self.proc = await _start(self.repo, *self.args, stdin=True)
        return self.proc

    async def _reset(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # end of input: each of these exits (update-ref with nothing pending)
        with contextlib.suppress(Exception):
            await proc.communicate()


async def _line(out: asyncio.StreamReader) -> bytes:
    line = await out.readuntil(b"\n")
    return line[:-1]


class Batch:
    """Long-lived git processes of the repository at ``repo`` (see the module's docstring).
    Safe to share between tasks; a request cancelled half-way restarts its process."""

    def __init__(self, repo: str | Path) -> None:
        self.repo = str(repo)
        self._cat = _Proc(self.repo, ("cat-file", "--batch"))
        # --no-filters: the bytes as given, as ``hash-object --stdin`` stores them
        self._blob = _Proc(self.repo, ("hash-object", "-w", "--no-filters", "--stdin-paths"))
        self._commit = _Proc(self.repo, ("hash-object", "-w", "-t", "commit", "--stdin-paths"))
        self._tree = _Proc(self.repo, ("mktree", "-z", "--batch"))
        self._refs = _Proc(self.repo, ("update-ref", "--stdin"))
        self._procs = (self._cat, self._blob, self._commit, self._tree, self._refs)
        self._tmp: str | None = None
        self._plain: bool | None = None

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def warm(self) -> None:
        """Start every process and ask the settings now (while there is time: a run waiting
        for its seed's evaluation), not at the first candidate."""
        for p in self._procs:
            await p.start()
        await self.plain_checkout()

    async def close(self) -> None:
        for p in self._procs:
            await p.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def plain_checkout(self) -> bool:
        """Whether a checkout writes every blob's bytes as they are, whatever the tree holds:
        no line-ending conversion, no attributes file outside the trees, git's own tar umask.
        Asked of git once per batch."""
        if self._plain is None:
            code, out, _ = await _git(self.repo, "config", "-z", "--get-regexp",
                                      r"^(core\.autocrlf|core\.attributesfile|tar\.umask)$")
            # "key\nvalue" each; a key alone is a boolean set true. Any of these set changes
            # what git archive writes, but core.autocrlf set false.
            converting = False
            for item in filter(None, out.split(b"\0")):
                key, _, value = item.partition(b"\n")
                off = key == b"core.autocrlf" and value.strip().lower() in (b"false", b"0", b"no", b"off")
                converting = converting or not off
            code2, info, _ = await _git(self.repo, "rev-parse", "--git-path", "info/attributes")
            config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
            files = [Path(self.repo, info.decode().strip()), config / "git" / "attributes",
                     Path("/etc/gitattributes")]
            self._plain = code in (0, 1) and code2 == 0 and not converting and \
                not any(f.exists() for f in files)
        return self._plain

    async def cat(self, names: list[str]) -> list[tuple[str, str, bytes] | None]:
        """Each object name's (id, type, contents), or None when it names nothing."""
        async def answer(out: asyncio.StreamReader):
            got = []
            for _ in names:
                header = (await _line(out)).split()
                if len(header) != 3:  # "<name> missing" (or ambiguous)
                    got.append(None)
                    continue
                data = await out.readexactly(int(header[2]) + 1)  # the contents, then a newline
                got.append((header[0].decode(), header[1].decode(), data[:-1]))
            return got

        if not names:
            return []
        if any("\n" in n for n in names):
            raise EvopilotError("a path with a newline cannot be read from git")
        return await self._cat.ask("".join(f"{n}\n" for n in names).encode("utf-8", "surrogateescape"), answer)

    async def _write(self, proc: _Proc, name: str, data: bytes) -> str:
        """An object written from ``data`` through a file (``--stdin-paths`` reads paths): one
        file per kind of object, written again under its process's lock."""
        async with proc.lock:
            if self._tmp is None:
                # in memory where there is a tmpfs: rewriting a small file on ext4 costs ~0.3 ms
                shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
                self._tmp = tempfile.mkdtemp(prefix="evopilot-git-", dir=shm)
            path = os.path.join(self._tmp, name)
            with open(path, "wb") as f:
                f.write(data)
            return (await proc.ask_locked(f"{path}\n".encode(), _line)).decode()

    async def blob(self, data: bytes) -> str:
        return await self._write(self._blob, "blob", data)

    async def commit(self, text: bytes) -> str:
        return await self._write(self._commit, "commit", text)

    async def mktree(self, listing: str) -> str:
        """A tree from ``mktree -z`` entries ("mode type id\tname\0" each)."""
        return (await self._tree.ask(listing.encode("utf-8", "surrogateescape") + b"\0", _line)).decode()

    async def update_ref(self, ref: str, new: str) -> None:
        async def answer(out: asyncio.StreamReader) -> None:
            for expect in (b"start: ok", b"commit: ok"):
                if await _line(out) != expect:
                    raise ValueError(f"update-ref said something else than {expect!r}")

        if "\n" in ref or " " in ref:
            raise EvopilotError(f"invalid ref name {ref!r}")
        await self._refs.ask(f"start\nupdate {ref} {new}\ncommit\n".encode(), answer)


@contextlib.asynccontextmanager
async def _using(repo: str | Path, batch: Batch | None):
    """``batch``, or one opened for this call."""
    if batch is not None:
        yield batch
        return
    async with Batch(repo) as b:
        yield b


async def resolve(project_dir: str | Path, rev: str, project_name: str, *,
                  batch: Batch | None = None, top: tuple[str, str] | None = None) -> tuple[Commit, list[str]]:
    """The commit ``rev`` (branch, tag, sha, ``HEAD~2``...) names in the project's repository,
    and its parents' shas. With ``batch`` (of the repository at ``top``: its top level and the
    project's prefix in it) a full commit id is read from it: no new git process."""
    if not rev or rev.startswith("-") or "\n" in rev or "\0" in rev:
        raise EvopilotError(f"--commit {rev!r}: not a revision")
    if batch is not None and top is not None and len(rev) in (40, 64) and all(c in "0123456789abcdef" for c in rev):
        (got,) = await batch.cat([f"{rev}^{{commit}}"])
        if got is not None:
            return Commit(top[0], got[0], top[1]), [h[7:] for h in _header(got[2]) if h.startswith("parent ")]
    # one git process when all is well
    code, out, _ = await _git(str(project_dir), "rev-parse", "--show-toplevel", "--show-prefix",
                              f"{rev}^{{commit}}", f"{rev}^@", "--")
    if code == 0:
        repo, prefix, sha, *parents = out.decode("utf-8", "surrogateescape").split("\n")
        return Commit(repo, sha, prefix), [p for p in parents if p and p != "--"]
    repo, prefix = await toplevel(project_dir, project_name)
    code, out, _ = await _git(repo, "rev-list", "--parents", "-n", "1", f"{rev}^{{commit}}", "--")
    if code != 0 or not out.strip():
        raise EvopilotError(f"unknown revision {rev!r} in project {project_name}: "
                            "give a branch, tag or commit sha")
    sha, *parents = out.decode().split()
    return Commit(repo, sha, prefix), parents


async def toplevel(project_dir: str | Path, project_name: str) -> tuple[str, str]:
    """The top level of the project's repository, and the project's prefix in it."""
    code, out, err = await _git(str(project_dir), "rev-parse", "--show-toplevel", "--show-prefix")
    if code != 0:
        raise EvopilotError(f"project {project_name} ({project_dir}) is not in a git repository: "
                            f"--commit needs one ({_error_line(err)})")
    repo, prefix = (out.decode("utf-8", "surrogateescape").split("\n") + [""])[:2]
    return repo, prefix


async def read(commit: Commit, paths: list[str], *, batch: Batch | None = None) -> dict[str, tuple[str, bytes] | None]:
    """Each path of the project at ``commit``: (object type, contents), or None when absent."""
    async with _using(commit.repo, batch) as b:
        got = await b.cat([f"{commit.treeish}{p}" for p in paths])
    return {p: (g[1], g[2]) if g else None for p, g in zip(paths, got)}


async def diff(old: Commit, new: Commit, *, batch: Batch | None = None) -> tuple[list[str], list[str]]:
    """Files of the project that differ from ``old`` to ``new``: (added or changed, removed), as
    ``git diff-tree -r --no-renames`` lists them (a mode change is a change)."""
    changed: list[str] = []
    removed: list[str] = []
    async with _using(new.repo, batch) as b:
        async def walk(a: str | None, z: str | None, path: str) -> None:
            """Compare the trees with ids ``a`` and ``z`` (None: absent) under ``path``."""
            got = iter(await _entries(b, [t for t in (a, z) if t is not None]))
            ta = next(got) if a is not None else {}
            tz = next(got) if z is not None else {}
            for name in sorted({*ta, *tz}):
                ea, ez = ta.get(name), tz.get(name)
                if ea == ez:
                    continue
                sub = f"{path}{name}"
                tree_a = ea is not None and ea[1] == "tree"
                tree_z = ez is not None and ez[1] == "tree"
                if tree_a or tree_z:
                    await walk(ea[2] if tree_a else None, ez[2] if tree_z else None, sub + "/")
                if ea is not None and not tree_a and (ez is None or tree_z):
                    removed.append(sub)
                elif ez is not None and not tree_z:
                    changed.append(sub)

        got = await b.cat([old.treeish, new.treeish])
        if any(g is None or g[1] != "tree" for g in got):
            raise EvopilotError(f"git: no tree at {old.treeish} or {new.treeish} in {new.repo}")
        await walk(got[0][0], got[1][0], "")
    return sorted(changed), sorted(removed)


async def _entries(batch: Batch, trees: list[str]) -> list[dict[str, tuple[str, str, str]]]:
    """Each tree's entries: name -> (mode, type, id); empty when absent or not a tree."""
    return [_tree_entries(got) for got in await batch.cat(trees)]


def _tree_entries(got: tuple[str, str, bytes] | None) -> dict[str, tuple[str, str, str]]:
    entries: dict[str, tuple[str, str, str]] = {}
    if got is None or got[1] != "tree":
        return entries
    raw, width, i = got[2], len(got[0]) // 2, 0  # the object id's bytes (SHA-1 or SHA-256)
    while i < len(raw):
        sp = raw.index(b" ", i)
        nul = raw.index(b"\0", sp)
        mode = raw[i:sp].decode().rjust(6, "0")
        kind = "tree" if mode == "040000" else "commit" if mode == "160000" else "blob"
        entries[raw[sp + 1 : nul].decode("utf-8", "surrogateescape")] = (mode, kind, raw[nul + 1 : nul + 1 + width].hex())
        i = nul + 1 + width
    return entries


async def archive(commit: Commit, paths: list[str] | None = None, *, batch: Batch | None = None) -> bytes:
    """A tar stream of the project's files at ``commit`` (all, or only ``paths``), with the
    same contents a checkout would give (git's filters and attributes apply). With ``batch``,
    a few regular files that no attribute or line-ending setting can touch are packed from
    their objects here, without a ``git archive`` process (evolution sends a candidate's changed
    files for every evaluation)."""
    args = ["archive", "--format=tar", commit.treeish]
    if paths is not None:
        if not paths:
            return b""
        if batch is not None and (packed := await _pack_plain(commit, paths, batch)) is not None:
            return packed
        args += ["--", *paths]
    code, out, err = await _git(commit.repo, *args)
    if code != 0:
        raise EvopilotError(f"git archive failed in {commit.repo}: {_error_line(err)}")
    return trim_tar(out)


async def _pack_plain(commit: Commit, paths: list[str], batch: Batch) -> bytes | None:
    """``git archive``'s tar of ``paths`` made from their blobs, or None where git could give
    other bytes or modes: a setting that converts line endings or names attributes, a
    ``.gitattributes`` in any directory above a file, a file that is not a regular one."""
    if not await batch.plain_checkout():
        return None
    full = [commit.prefix + p for p in paths]
    dirs = sorted({f[: i + 1] for f in full for i, c in enumerate(f) if c == "/"} | {""})
    got = await batch.cat([commit.sha, *(f"{commit.sha}:{n}" for n in (*dirs, *full))])
    if got[0] is None or got[0][1] != "commit":
        return None
    listings = {d: _tree_entries(g) for d, g in zip(dirs, got[1:])}
    if any(".gitattributes" in entries for entries in listings.values()):
        return None
    members, blobs = [], got[1 + len(dirs):]
    for f, blob in zip(full, blobs):
        d, _, name = f.rpartition("/")
        entry = listings[d + "/" if d else ""].get(name)
        if entry is None or entry[0] not in ("100644", "100755") or blob is None or blob[0] != entry[2]:
            return None
        members.append(entry)
    when = _commit_time(got[0][2])
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, (mode, _, _), blob in zip(paths, members, blobs):
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(blob[2]), when
            info.mode = 0o775 if mode == "100755" else 0o664  # git's default tar.umask, 002
            tar.addfile(info, io.BytesIO(blob[2]))
    return trim_tar(out.getvalue())


def _header(commit: bytes) -> list[str]:
    """A commit object's header lines (tree, parent..., author, committer)."""
    return commit.split(b"\n\n", 1)[0].decode("utf-8", "surrogateescape").split("\n")


def _commit_time(commit: bytes) -> int:
    return next((int(h.rsplit(" ", 2)[1]) for h in _header(commit) if h.startswith("committer ")), 0)


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


# git's worktree commands read every other worktree's admin directory, and fail ("failed to read
# .git/worktrees/X/commondir") while another `worktree add` is half-way through making one:
# this process runs one at a time per repository (per event loop: a lock belongs to one).
_worktree_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _worktree_lock(repo: str) -> asyncio.Lock:
    locks = _worktree_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(os.path.abspath(repo), asyncio.Lock())


async def git(repo: str | Path, *args: str, input: bytes | None = None,
              env: Mapping[str, str] | None = None) -> bytes:
    """Run git in ``repo``; its stdout, or a one-line error."""
    one_at_a_time = _worktree_lock(str(repo)) if args[:1] == ("worktree",) else contextlib.nullcontext()
    async with one_at_a_time:
        code, out, err = await _git(str(repo), *args, stdin=input, env=env)
    if code != 0:
        raise EvopilotError(f"git {args[0]} in {repo}: {_error_line(err)}")
    return out


async def read_files(repo: str | Path, commit: str, paths: list[str], *,
                     batch: Batch | None = None) -> dict[str, str]:
    """The text of ``paths`` at ``commit``; a missing path is an error."""
    async with _using(repo, batch) as b:
        got = await b.cat([f"{commit}:{p}" for p in paths])
    files = {}
    for p, g in zip(paths, got):
        if g is None:
            raise EvopilotError(f"{p}: not in commit {commit[:12]}")
        files[p] = g[2].decode("utf-8", "surrogateescape")
    return files


async def tree_of(repo: str | Path, commit: str, *, batch: Batch | None = None) -> str:
    async with _using(repo, batch) as b:
        (got,) = await b.cat([f"{commit}^{{tree}}"])
    if got is None:
        raise EvopilotError(f"git: no commit {commit} in {repo}")
    return got[0]


def commit_text(tree: str, parent: str, message: str, date: str) -> bytes:
    """A commit object as ``git commit-tree TREE -p PARENT`` writes it with evopilot's identity,
    both dates ``date`` and ``message`` on stdin (taken as it is)."""
    name = f"{IDENTITY['GIT_AUTHOR_NAME']} <{IDENTITY['GIT_AUTHOR_EMAIL']}> {date}"
    return f"tree {tree}\nparent {parent}\nauthor {name}\ncommitter {name}\n\n{message}".encode()


async def commit_files(repo: str | Path, parent: str, files: Mapping[str, str], message: str,
                       date: str, *, batch: Batch | None = None) -> tuple[str, str]:
    """A commit of ``parent`` with ``files`` (path -> new text) replaced; (commit, tree).

    ``date`` (git's "unix-seconds +0000" form) fixes both dates, so the same change gives the
    same commit hash. File modes are kept from the parent (new files are 100644). The trees on
    the way to the changed files are the parent's with their entries replaced, written with
    ``mktree``; the commit object is written as ``commit-tree`` would (``commit_text``).
    """
    async with _using(repo, batch) as b:
        blobs = {p: await b.blob(files[p].encode("utf-8", "surrogateescape")) for p in sorted(files)}
        dirs = {""}
        for p in blobs:
            parts = p.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        order = sorted(dirs)
        trees = dict(zip(order, await _entries(b, [f"{parent}:{d}" if d else f"{parent}^{{tree}}" for d in order])))
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
            written[d] = await b.mktree("".join(f"{mode} {kind} {sha}\t{name}\0" for name, (mode, kind, sha) in entries.items()))
        tree = written[""]
        return await b.commit(commit_text(tree, parent, message, date)), tree


async def update_ref(repo: str | Path, ref: str, commit: str, *, batch: Batch | None = None) -> None:
    async with _using(repo, batch) as b:
        await b.update_ref(ref, commit)


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
        raise EvopilotError(f"git diff in {repo}: {_error_line(err)}")
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
