"""Where a job's files come from: the project's working tree, or a commit.

A job on a commit (``evopilot run ... --commit REV``) runs in a tree of that commit's files on its
host, never in the user's checkout: git only reads objects here (``core.gitops``), so the user's
branches, index and working tree are untouched.

Trees live in ``<data dir>/workspaces/`` locally and ``<base>/trees/`` on SSH hosts, one per
project, host and commit (table ``workspaces``), reused by every job of that commit. A new tree is
built from a *basis*, a ready tree of the same project on that host (one of the commit's parents
when there is one, else the newest): one script hard-links the basis files the two commits share
and unpacks a tar of the files that differ (``git diff-tree`` + ``git archive``), all in one
round trip with no file list and no hashing, so its cost follows the change, not the project.
Without a basis the whole commit is sent once. Writes never reach a basis file: changed files are
left out of the links and unpacked as new files, and a basis file modified since its tree was
built (newer than the tree's stamp) is not linked but sent again.

Trees are shared by hard links: a job must not rewrite its tree's files in place (write new
files, or into ``$EVOPILOT_JOB_DIR``); files it creates stay in its own tree.

Python: the commit's tree root (and ``src/`` when the commit has one) come first on
``PYTHONPATH`` (``core.importroots``). The interpreter, on every host, is a shared uv environment
per environment key (Python version, pyproject.toml, uv.lock at that commit), built by a setup
job only when no environment with that key exists yet (``core.environments``).

A tree is removed once no run holds it and no unfinished job has it as its workdir (``sweep``,
each engine tick); an SSH host keeps its newest trees as bases for the next commits.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import tarfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from evopilot.core import gitops, locations
from evopilot.core.config import LOCAL, Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.db import workspaces as ws_db
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.hosts.sync import MANIFEST
from evopilot.core.quoting import join, quote
from evopilot.core import environments
from evopilot.core.importroots import import_roots
from evopilot.core.models import Project

STAMP = ".evopilot-tree"
"""In a finished tree: its commit sha. Written last; its mtime tells later edits apart."""
LEASE = 30.0
"""Seconds a claim on a tree outlives its run's last sign of life (renewed while building)."""
KEEP_REMOTE = 2
"""Unused trees an SSH host keeps per project, as bases for the next commits."""
MAX_DIFF_FILES = 5000
"""Beyond this many changed files a tree is sent whole (the paths go on git's command line)."""
POLL = 0.05

_OWN = ".evopilot-"  # prefix of the tree's own bookkeeping files (top level)


# ---- shell text (pure) ------------------------------------------------------------------------


def tree_name(project: Project, sha: str, instance: str, wid: int) -> str:
    """A tree's directory name; the instance tag keeps two databases' trees apart on a host."""
    return f"{environments.safe_name(project)}-{project.id}-{sha[:12]}-{instance}-{wid}"


def build_script(tree: str, sha: str, *, basis: tuple[str, str] | None, drop: Sequence[str],
                 payload: bool, env_marker: str | None = None) -> str:
    """Build (or complete) ``tree``: unpack the tar on stdin (``payload``), hard-link the files of
    ``basis`` (its path and commit) except ``drop`` (changed or removed since) and those edited
    since the basis was built, then finish the tree (manifest, stamp) if nothing is missing.

    Prints ``env <marker contents>`` when ``env_marker`` is given, ``basis used|gone|none``, then
    ``ready``, or ``missing`` followed by the NUL-separated files still to send (``basis gone``:
    the basis is not there, so everything is).
    """
    lines = [f"t={quote(tree)}",
             'mkdir -p -- "$t" && cd -- "$t" || { echo "cannot create $t" >&2; exit 3; }']
    if env_marker is not None:
        lines.append(f"printf 'env %s\\n' \"$(cat -- {quote(env_marker)} 2>/dev/null)\"")
    if payload:
        # GNU tar unlinks an existing file before writing it: a linked basis file stays intact
        lines.append("tar -x -m --no-same-owner -f - || { echo 'cannot unpack the files' >&2; exit 4; }")
    if basis is None:
        lines.append("echo 'basis none'")
    else:
        path, basis_sha = basis
        lines += [
            f"b={quote(path)}",
            f'if [ "$(cat -- "$b/{STAMP}" 2>/dev/null)" = {quote(basis_sha)} ] '
            f'&& cp -- "$b/{MANIFEST}" {_OWN}basis 2>/dev/null; then',
            "  echo 'basis used'",
            "  declare -A drop=()",
            f"  for f in {join(drop)}; do drop[$f]=1; done",
            # files edited since the basis was built are sent again (fd 3), the rest linked
            "  while IFS= read -r -d '' f; do",
            '    [ -n "${drop[$f]+x}" ] && continue',
            f'    if [ "$b/$f" -nt "$b/{STAMP}" ]; then printf \'%s\\0\' "$f" >&3; else printf \'%s\\0\' "$f"; fi',
            f"  done < {_OWN}basis > {_OWN}seed 3> {_OWN}missing",
            f'  if ! (cd -- "$b" && xargs -0 -r cp -P -l --parents -t "$t" -- < "$t/{_OWN}seed") 2>/dev/null; then',
            "    while IFS= read -r -d '' f; do  # some links failed (the basis is going away)",
            '      [ -e "$f" ] || [ -L "$f" ] || printf \'%s\\0\' "$f"',
            f"    done < {_OWN}seed >> {_OWN}missing",
            "  fi",
            f"  [ -s {_OWN}missing ] && {{ echo missing; cat {_OWN}missing; exit 0; }}",
            "else",
            "  echo 'basis gone'; echo missing; exit 0",
            "fi",
        ]
    lines += [
        f"rm -f {_OWN}basis {_OWN}seed {_OWN}missing",
        f"find . -mindepth 1 \\( -type f -o -type l \\) ! -path './{_OWN}*' -printf '%P\\0' > {MANIFEST}",
        f"printf '%s' {quote(sha)} > {STAMP}.tmp && mv -f {STAMP}.tmp {STAMP} && echo ready",
    ]
    return "\n".join(lines) + "\n"


def build_here(tree: str, sha: str, *, basis: tuple[str, str] | None, drop: Sequence[str],
               payload: bytes) -> BuildAnswer:
    """``build_script`` done by this process, for a tree on this machine: the same steps and
    answer without a shell and its cp, find, tar and mv processes (evolution builds a tree for
    every candidate). Blocking: run it in a thread."""
    t = Path(tree)
    t.mkdir(parents=True, exist_ok=True)
    if payload:
        with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
            for member in tar:
                target = t / member.name
                if not member.isdir() and (target.is_symlink() or target.exists()):
                    target.unlink()  # as GNU tar does: a linked basis file stays intact
                tar.extract(member, t, filter="fully_trusted")  # git archive of our own commit
    state = "none"
    if basis is not None:
        b, basis_sha = Path(basis[0]), basis[1]
        try:
            stamp = os.stat(b / STAMP)
            listed = (b / MANIFEST).read_bytes() if (b / STAMP).read_text() == basis_sha else None
        except OSError:
            listed = None
        if listed is None:
            return BuildAnswer(None, "gone", False, [])
        state, dropped, edited, failed = "used", set(drop), [], []
        for name in listed.decode("utf-8", "surrogateescape").split("\0"):
            if not name or name in dropped:
                continue
            src, dst = b / name, t / name
            try:
                if os.stat(src).st_mtime_ns > stamp.st_mtime_ns:  # edited since: sent again
                    edited.append(name)
                    continue
            except OSError:
                pass
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst, follow_symlinks=False)
            except FileExistsError:
                pass
            except OSError:  # the basis is going away
                failed.append(name)
        if edited or failed:
            return BuildAnswer(None, state, False, edited + failed)
    files = []
    for root, dirs, names in os.walk(t):
        rel = os.path.relpath(root, t)
        if rel == ".":
            dirs[:] = [d for d in dirs if not d.startswith(_OWN)]
            names = [n for n in names if not n.startswith(_OWN)]
        files += [os.path.normpath(os.path.join(rel, n)) for n in names]
        files += [os.path.normpath(os.path.join(rel, d)) for d in dirs if os.path.islink(os.path.join(root, d))]
    (t / MANIFEST).write_bytes("".join(f + "\0" for f in files).encode("utf-8", "surrogateescape"))
    (t / f"{STAMP}.tmp").write_text(sha)
    os.replace(t / f"{STAMP}.tmp", t / STAMP)
    return BuildAnswer(None, state, True, [])


def check_script(tree: str, env_marker: str | None = None) -> str:
    """Whether a tree the database calls ready is still there (and the environment marker)."""
    env = f"printf 'env %s\\n' \"$(cat -- {quote(env_marker)} 2>/dev/null)\"\n" if env_marker else ""
    return f"{env}if [ -f {quote(tree + '/' + STAMP)} ]; then echo ready; else echo gone; fi\n"


@dataclass(frozen=True, slots=True)
class BuildAnswer:
    env: str | None
    basis: str | None
    """``used``, ``gone``, ``none``, or None (a check of a ready tree)."""
    ready: bool
    missing: list[str] = field(default_factory=list)


def parse_answer(out: bytes) -> BuildAnswer:
    env = basis = None
    ready, missing = False, []
    rest = out
    while rest:
        line, _, rest = rest.partition(b"\n")
        text = line.decode("utf-8", "surrogateescape")
        if text.startswith("env "):
            env = text[4:]
        elif text.startswith("basis "):
            basis = text[6:]
        elif text == "ready":
            ready = True
        elif text == "missing":
            missing = [p.decode("utf-8", "surrogateescape") for p in rest.split(b"\0") if p]
            break
    return BuildAnswer(env, basis, ready, missing)


def remove_script(paths: Sequence[str]) -> str:
    return f"rm -rf -- {join(paths)}\n"


def _read_marker(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


# ---- the service ------------------------------------------------------------------------------


@dataclass
class Placement:
    """Where a run's jobs on one commit go; ``done`` once they are queued."""

    sha: str
    workdir: str
    env_dir: str
    has_src: bool
    setup_id: int | None
    _release: Callable[[Sequence[int]], Awaitable[None]]

    def command(self, bench_path: str, args: Sequence[str]) -> str:
        return environments.run_command(self.env_dir, import_roots(self.workdir, self.has_src),
                                        bench_path, args)

    async def done(self, job_ids: Sequence[int]) -> None:
        """Record the workspace step on the queued jobs and let go of the trees: from now on the
        jobs keep their tree."""
        await self._release(job_ids)


@dataclass(frozen=True, slots=True)
class _Tree:
    path: str
    answer: BuildAnswer
    report: dict


class Workspaces:
    def __init__(
        self, db: aiosqlite.Connection, config: Config, home: Path, instance: str, *,
        host: Callable[[str], Awaitable[Host]],
        connected_host: Callable[[str], Host | None],
        new_job: Callable[..., Awaitable[int]],
        emit_jobs: Callable[[list[int]], Awaitable[None]],
    ) -> None:
        self.db = db
        self.config = config
        self.home = home
        self.instance = instance
        self._host = host
        self._connected_host = connected_host
        self._new_job = new_job
        self._emit_jobs = emit_jobs
        # git processes kept open per repository, and each project's place in its repository:
        # every evolution candidate is a job on a commit
        self._batches: dict[str, gitops.Batch] = {}
        self._tops: dict[str, tuple[str, str]] = {}

    async def close(self) -> None:
        batches, self._batches = list(self._batches.values()), {}
        for b in batches:
            await b.close()

    async def warm(self, project: Project) -> None:
        """Ready the git processes that trees of ``project``'s commits are made with."""
        await self._batch((await self._top(project))[0]).warm()

    async def _top(self, project: Project) -> tuple[str, str]:
        """The project's repository top level and its prefix there (asked of git once)."""
        top = self._tops.get(project.path)
        if top is None:
            top = self._tops[project.path] = await gitops.toplevel(project.path, project.name)
        return top

    def _batch(self, repo: str) -> gitops.Batch:
        if repo not in self._batches:
            self._batches[repo] = gitops.Batch(repo)
        return self._batches[repo]

    async def prepare(
        self, project: Project, benches: Sequence[str], host_name: str, rev: str, *,
        check: Callable[[Path], Awaitable[None]] | None = None,
    ) -> Placement:
        """Resolve ``rev`` and put the commit's tree on ``host_name`` (built or reused), with
        its environment there (or the setup job that builds it). ``check`` (the dependency
        check) gets a local tree of the commit before anything is sent."""
        top = await self._top(project)
        batch = self._batch(top[0])
        commit, parents = await gitops.resolve(project.path, rev, project.name, batch=batch, top=top)
        files = await gitops.read(commit, [*environments.ENV_FILES, "src", *benches], batch=batch)
        absent = [b for b in benches if (files[b] or ("",))[0] != "blob"]
        if absent:
            raise EvopilotError(f"not in commit {commit.sha[:12]} of project {project.name}: "
                                + ", ".join(absent))
        has_src = (files["src"] or ("",))[0] == "tree"
        claims: list[int] = []
        renew = asyncio.create_task(self._renew(claims))
        try:
            local_tree = None
            if host_name == LOCAL or check is not None:
                local_tree = await self._tree(project, commit, parents, await self._host(LOCAL),
                                              str(locations.workspaces_dir(self.home)), claims)
            if check is not None:
                await check(Path(local_tree.path))
            host = await self._host(host_name)
            env = {n: files[n][1] if files[n] and files[n][0] == "blob" else None
                   for n in environments.ENV_FILES}
            key = environments.env_key(project, env)
            env_dir = environments.shared_env_dir(host, project, key)
            marker = f"{env_dir}/{environments.SHARED_MARKER}"
            if host_name == LOCAL:
                tree, have = local_tree, _read_marker(marker)
            else:
                tree = await self._tree(project, commit, parents, host, f"{host.base_dir}/trees",
                                        claims, env_marker=marker)
                have = tree.answer.env
            setup_id = None
            if have != key:
                setup_id = await self._setup(project, host_name, commit.sha, tree.path, env_dir,
                                             key, has_pyproject=env["pyproject.toml"] is not None)
            # the run inserts its jobs next: a fresh lease covers that without the renewing task
            await ws_db.renew(self.db, claims, time.time() + LEASE)
        except BaseException:
            await ws_db.release(self.db, claims)
            raise
        finally:
            renew.cancel()
            # not suppress(CancelledError) around an await: that would also swallow a cancel
            # of this task meanwhile
            await asyncio.gather(renew, return_exceptions=True)

        async def release(job_ids: Sequence[int]) -> None:
            async with jobs_db.transaction(self.db):
                for job_id in job_ids:
                    await jobs_db.add_step(self.db, job_id, "workspace", "tree", "ok",
                                           json.dumps(tree.report))
                await ws_db.release(self.db, claims)

        return Placement(commit.sha, tree.path, env_dir, has_src, setup_id, release)

    async def _renew(self, claims: list[int]) -> None:
        while True:
            await asyncio.sleep(LEASE / 3)
            if claims:
                await ws_db.renew(self.db, claims, time.time() + LEASE)

    async def _tree(self, project: Project, commit: gitops.Commit, parents: list[str], host: Host,
                    root: str, claims: list[int], env_marker: str | None = None) -> _Tree:
        """The commit's tree on ``host``: reused when ready and present, else built."""
        while True:
            claim = await ws_db.claim(
                self.db, project_id=project.id, host=host.name, sha=commit.sha, now=time.time(),
                lease=LEASE, prefer=parents,
                path_for=lambda wid: f"{root}/{tree_name(project, commit.sha, self.instance, wid)}")
            if claim.tree is None:  # another run is building it: wait for that
                await asyncio.sleep(POLL)
                continue
            claims.append(claim.tree.id)
            if claim.basis:
                claims.append(claim.basis.id)
            report = {"host": host.name, "tree": claim.tree.path, "commit": commit.sha}
            if not claim.created:
                answer = parse_answer(await _run(host, check_script(claim.tree.path, env_marker)))
                if answer.ready:
                    return _Tree(claim.tree.path, answer, {**report, "reused": True})
                await ws_db.discard(self.db, claim.tree.id)  # removed behind our back: build anew
                continue
            try:
                answer, sent = await self._build(host, commit, claim.tree.path, claim.basis, env_marker)
            except BaseException:
                await ws_db.discard(self.db, claim.tree.id)  # a run waiting for it builds anew
                raise
            await ws_db.mark_ready(self.db, claim.tree.id)
            return _Tree(claim.tree.path, answer, {**report, "reused": False, **sent})

    async def _build(self, host: Host, commit: gitops.Commit, tree: str,
                     basis: ws_db.Workspace | None, env_marker: str | None) -> tuple[BuildAnswer, dict]:
        changed, removed = [], []
        if basis is not None:
            changed, removed = await gitops.diff(
                gitops.Commit(commit.repo, basis.commit_sha, commit.prefix), commit, batch=self._batch(commit.repo))
            if len(changed) > MAX_DIFF_FILES:
                basis, changed, removed = None, [], []
        payload = await gitops.archive(commit, changed if basis else None, batch=self._batch(commit.repo))
        answer = await _build_step(host, tree, commit.sha, basis=(basis.path, basis.commit_sha) if basis else None,
                                   drop=[*changed, *removed], payload=payload, env_marker=env_marker)
        sent = {"basis": basis.commit_sha if basis else None,
                "sent": changed if basis else "all", "removed": removed, "bytes": len(payload)}
        if not answer.ready:  # the basis went away, or some of its files were edited in place
            again = await gitops.archive(commit, None if answer.basis == "gone" else answer.missing,
                                         batch=self._batch(commit.repo))
            final = await _build_step(host, tree, commit.sha, basis=None, drop=(), payload=again)
            if not final.ready:
                raise EvopilotError(f"host {host.name}: could not build the tree {tree}")
            sent.update(resent=answer.missing or "all", bytes=len(payload) + len(again))
        return answer, sent

    async def _setup(self, project: Project, host_name: str, sha: str, tree: str, env_dir: str,
                     key: str, *, has_pyproject: bool) -> int:
        """The setup job building the shared environment: one already queued, or a new one."""
        cfg = self.config.host(host_name)
        command = environments.shared_setup_command(project, cfg, env_dir, key, has_pyproject,
                                                    local=host_name == LOCAL)
        existing = await ws_db.active_setup(self.db, host_name, command)
        if existing:
            return existing
        if host_name == LOCAL:
            await environments.check_python(cfg.uv_path, project.python_version)
        async with jobs_db.transaction(self.db):
            setup_id = await self._new_job(
                project_id=project.id, kind="setup", name=f"setup {project.name}", command=command,
                workdir=tree, host=host_name, priority=environments.SETUP_PRIORITY, commit_sha=sha,
            )
        await self._emit_jobs([setup_id])
        return setup_id

    async def sweep(self) -> None:
        """Remove the trees no run holds and no unfinished job runs in (SSH hosts keep their
        newest few). Cheap when there is nothing to do: one read."""
        now = time.time()
        if not await ws_db.removable(self.db, now=now, keep=KEEP_REMOTE, local=LOCAL):
            return
        by_host: dict[str, list[ws_db.Workspace]] = defaultdict(list)
        for w in await ws_db.start_removing(self.db, now=now, keep=KEEP_REMOTE, local=LOCAL):
            by_host[w.host].append(w)
        for name, trees in by_host.items():
            if name == LOCAL:
                root = locations.workspaces_dir(self.home).resolve()
                paths = [Path(w.path) for w in trees if w.path and Path(w.path).resolve().is_relative_to(root)]
                await asyncio.to_thread(lambda: [shutil.rmtree(p, ignore_errors=True) for p in paths])
            else:
                host = self._connected_host(name)
                if host is None:  # not connected now: next time
                    continue
                prefix = f"{host.base_dir}/trees/"
                paths = [w.path for w in trees if w.path.startswith(prefix) and ".." not in w.path.split("/")]
                try:
                    if paths and not (await host.run(remove_script(paths))).ok:
                        continue
                except EvopilotError:  # the link dropped: they stay marked, next time
                    continue
            await ws_db.delete(self.db, [w.id for w in trees])


async def _build_step(host: Host, tree: str, sha: str, *, basis: tuple[str, str] | None, drop: Sequence[str],
                      payload: bytes, env_marker: str | None = None) -> BuildAnswer:
    if host.is_local and env_marker is None:
        return await asyncio.to_thread(build_here, tree, sha, basis=basis, drop=drop, payload=payload)
    script = build_script(tree, sha, basis=basis, drop=drop, payload=bool(payload), env_marker=env_marker)
    return parse_answer(await _run(host, script, payload))


async def _run(host: Host, script: str, stdin: bytes | None = None) -> bytes:
    res = await host.run(script, stdin=stdin or None)
    if not res.ok:
        raise EvopilotError(f"host {host.name}: cannot build a commit's tree: {res.error_text()}")
    return res.stdout
