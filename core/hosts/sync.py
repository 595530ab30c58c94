"""Send a project's files to a host: rsync over the host's SSH settings, SFTP when rsync is missing.

Which files: in a git work tree, what git tracks plus untracked files it does not ignore
(``git ls-files -co --exclude-standard``); elsewhere every file. Either way ``.git``, ``.venv``
and ``__pycache__`` are never sent, and only regular files (symlinks are followed) are.

How it compares: one remote script hashes (sha1) the listed files under the remote directory,
the local side hashes its own, and the files that differ are the ones sent (rsync ``-I`` with
``--files-from``, so its delta transfer still applies). The remote directory keeps a manifest
(``.evopilot-manifest``, NUL-separated) of what was synced last; a file in that manifest that is
no longer in the local list is deleted remotely. Nothing else there is ever deleted: the remote
``.venv``, outputs and results stay.

Every remote path stays under the host's ``base_dir``: a relative ``remote_dir`` is taken from
there, ``..`` is refused anywhere, and an absolute one must lie inside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.quoting import join, quote

MANIFEST = ".evopilot-manifest"
SKIP_DIRS = frozenset({".git", ".venv", "__pycache__"})
METHODS = ("auto", "rsync", "sftp", "copy")
SFTP_PARALLEL = 8


@dataclass(frozen=True, slots=True)
class UpToDate:
    pass


@dataclass(frozen=True, slots=True)
class Modified:
    """``files``: every path that differs (new, changed or to delete), sorted; ``deleted``: the
    ones that only the remote side still has (from an earlier sync)."""

    count: int
    files: list[str]
    deleted: list[str] = field(default_factory=list)


SyncStatus = UpToDate | Modified


@dataclass(frozen=True, slots=True)
class SyncReport:
    remote_dir: str
    method: str
    """``rsync``, ``sftp``, ``copy`` or ``none`` (nothing to send)."""
    dry_run: bool
    sent: list[str]
    deleted: list[str]
    bytes: int
    """Size of the files sent (or that would be)."""

    @property
    def changed(self) -> bool:
        return bool(self.sent or self.deleted)


# --- local side ---------------------------------------------------------------------------


def _check_rel(path: str) -> str:
    if not path or path.startswith("/") or "\0" in path:
        raise EvopilotError(f"refusing to sync path {path!r}: not a relative path")
    if any(part == ".." for part in path.split("/")):
        raise EvopilotError(f"refusing to sync path {path!r}: '..' would leave the project")
    return path


def _wanted(rel: str, root: Path) -> bool:
    parts = rel.split("/")
    if any(p in SKIP_DIRS for p in parts[:-1]) or rel == MANIFEST:
        return False
    return (root / rel).is_file()


async def _git_files(root: Path) -> list[str] | None:
    """Files git would show, relative to ``root``; None when ``root`` is not in a work tree."""
    if shutil.which("git") is None:
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError:
        return None
    out, _err = await proc.communicate()
    if proc.returncode != 0:
        return None  # not a git work tree
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def _walk_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        rel_dir = os.path.relpath(dirpath, root)
        for f in filenames:
            out.append(f if rel_dir == "." else f"{rel_dir}/{f}".replace(os.sep, "/"))
    return out


async def list_files(local_root: Path) -> list[str]:
    """The files of ``local_root`` to send, relative and sorted."""
    root = Path(local_root)
    if not root.is_dir():
        raise EvopilotError(f"{root}: not a directory")
    files = await _git_files(root)
    if files is None:
        files = await asyncio.to_thread(_walk_files, root)
    return sorted({_check_rel(f) for f in files if _wanted(f, root)})


def _hash_files(root: Path, files: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    hashes, sizes = {}, {}
    for rel in files:
        h = hashlib.sha1()
        size = 0
        try:
            with open(root / rel, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
        except OSError:
            continue  # vanished since listing: skip it this time
        hashes[rel] = h.hexdigest()
        sizes[rel] = size
    return hashes, sizes


def _manifest_bytes(files: list[str]) -> bytes:
    return b"".join(f.encode("utf-8", "surrogateescape") + b"\0" for f in files)


# --- remote side ---------------------------------------------------------------------------


def resolve_remote_dir(host: Host, remote_dir: str) -> str:
    """The absolute remote directory, which must lie strictly inside ``host.base_dir``."""
    base = host.base_dir.rstrip("/")
    if not base:
        raise EvopilotError(f"host {host.name}: not connected (base_dir unknown)")
    if not remote_dir or "\0" in remote_dir or remote_dir.startswith("~"):
        raise EvopilotError(f"remote directory {remote_dir!r} is not valid")
    if any(part == ".." for part in remote_dir.split("/")):
        raise EvopilotError(f"remote directory {remote_dir!r} must not contain '..'")
    path = posixpath.normpath(remote_dir if remote_dir.startswith("/") else f"{base}/{remote_dir}")
    if not path.startswith(base + "/"):
        raise EvopilotError(
            f"remote directory {remote_dir!r} is outside host {host.name}'s base_dir {base}"
        )
    return path


def _status_script(remote: str) -> str:
    d = quote(remote)
    m = quote(MANIFEST)
    return (
        "if command -v rsync >/dev/null 2>&1; then echo R1; else echo R0; fi\n"
        f"if ! cd -- {d} 2>/dev/null; then echo M-; echo --; exit 0; fi\n"
        f"if [ -f {m} ]; then echo \"M$(sha1sum < {m} | cut -c1-40)\"; else echo M-; fi\n"
        "echo --\n"
        # stdin: the local list; plus the manifest's entries, to find what is stale
        f"{{ cat; cat {m} 2>/dev/null; }} | xargs -0 -r sha1sum -z -- 2>/dev/null\n"
        "exit 0\n"
    )


@dataclass(slots=True)
class _Remote:
    has_rsync: bool
    manifest_sha1: str | None
    hashes: dict[str, str]


async def _remote_state(host: Host, remote: str, files: list[str]) -> _Remote:
    res = await host.run(_status_script(remote), stdin=_manifest_bytes(files))
    if not res.ok:
        raise EvopilotError(f"host {host.name}: cannot compare files: {res.error_text()}")
    head, sep, body = res.stdout.partition(b"--\n")
    if not sep:
        raise EvopilotError(f"host {host.name}: unexpected answer while comparing files")
    lines = head.decode("utf-8", "replace").splitlines()
    has_rsync = "R1" in lines
    manifest = next((ln[1:] for ln in lines if ln.startswith("M")), "-")
    hashes: dict[str, str] = {}
    for rec in body.split(b"\0"):
        if len(rec) > 42 and rec[40:42] in (b"  ", b" *"):
            hashes[rec[42:].decode("utf-8", "surrogateescape")] = rec[:40].decode()
    return _Remote(has_rsync, None if manifest == "-" else manifest, hashes)


@dataclass(slots=True)
class _Plan:
    remote: str
    files: list[str]
    send: list[str]
    delete: list[str]
    sizes: dict[str, int]
    state: _Remote
    manifest_current: bool


async def _plan(local_root: Path, host: Host, remote_dir: str) -> _Plan:
    remote = resolve_remote_dir(host, remote_dir)
    files = await list_files(local_root)
    (hashes, sizes), state = await asyncio.gather(
        asyncio.to_thread(_hash_files, Path(local_root), files),
        _remote_state(host, remote, files),
    )
    files = [f for f in files if f in hashes]
    send = [f for f in files if state.hashes.get(f) != hashes[f]]
    local = set(files)
    delete = sorted(_check_rel(f) for f in state.hashes if f not in local)
    current = state.manifest_sha1 == hashlib.sha1(_manifest_bytes(files)).hexdigest()
    return _Plan(remote, files, send, delete, sizes, state, current)


async def sync_status(local_root: Path, host: Host, remote_dir: str) -> SyncStatus:
    """Whether ``remote_dir`` on ``host`` holds exactly the project's current files."""
    plan = await _plan(Path(local_root), host, remote_dir)
    if not plan.send and not plan.delete:
        return UpToDate()
    changed = sorted(plan.send + plan.delete)
    return Modified(count=len(changed), files=changed, deleted=plan.delete)


async def sync(
    local_root: Path, host: Host, remote_dir: str, *, dry_run: bool = False, method: str = "auto"
) -> SyncReport:
    """Make ``remote_dir`` hold the project's files; returns what was (or would be) done.

    ``method``: ``auto`` (rsync when both sides have it, else SFTP for SSH hosts or a plain copy
    for the local host), or force ``rsync``, ``sftp`` or ``copy``.
    """
    if method not in METHODS:
        raise EvopilotError(f"unknown sync method {method!r} (one of {', '.join(METHODS)})")
    root = Path(local_root).resolve()
    plan = await _plan(root, host, remote_dir)
    chosen = _choose_method(host, method, plan.state.has_rsync)
    report = SyncReport(
        remote_dir=plan.remote,
        method=chosen if (plan.send or plan.delete) else "none",
        dry_run=dry_run,
        sent=plan.send,
        deleted=plan.delete,
        bytes=sum(plan.sizes.get(f, 0) for f in plan.send),
    )
    if dry_run or (not plan.send and not plan.delete and plan.manifest_current):
        return report
    await _prepare_remote(host, plan)
    if plan.send:
        if chosen == "rsync":
            await _rsync(root, host, plan.remote, plan.send)
        elif chosen == "sftp":
            await _sftp(root, host, plan.remote, plan.send)
        else:
            await asyncio.to_thread(_copy, root, Path(plan.remote), plan.send)
    return report


def _choose_method(host: Host, method: str, remote_rsync: bool) -> str:
    ssh_host = not host.is_local
    if method == "auto":
        local_ok = shutil.which("rsync") is not None and (not ssh_host or shutil.which("ssh"))
        if local_ok and remote_rsync:
            return "rsync"
        return "sftp" if ssh_host else "copy"
    if method == "sftp" and not ssh_host:
        raise EvopilotError(f"host {host.name}: SFTP is only for SSH hosts")
    if method == "copy" and ssh_host:
        raise EvopilotError(f"host {host.name}: a plain copy is only for the local host")
    if method == "rsync" and (shutil.which("rsync") is None or not remote_rsync):
        raise EvopilotError(f"host {host.name}: rsync is not installed on both sides")
    return method


async def _prepare_remote(host: Host, plan: _Plan) -> None:
    """Create the directory, delete stale files and record the new manifest, in one round trip."""
    d = quote(plan.remote)
    lines = ["set -e", "umask 077", f"mkdir -p -- {d}", f"cd -- {d}"]  # private to the user
    for i in range(0, len(plan.delete), 200):
        lines.append("rm -f -- " + join(plan.delete[i : i + 200]))
    lines.append(f"cat > {quote(MANIFEST + '.tmp')}")
    lines.append(f"mv -f -- {quote(MANIFEST + '.tmp')} {quote(MANIFEST)}")
    res = await host.run("\n".join(lines) + "\n", stdin=_manifest_bytes(plan.files))
    if not res.ok:
        raise EvopilotError(f"host {host.name}: cannot prepare {plan.remote}: {res.error_text()}")


async def _rsync(root: Path, host: Host, remote: str, files: list[str]) -> None:
    # new files and directories private to the user, whatever the remote umask
    argv = ["rsync", "-s", "-L", "-t", "-E", "-I", "--chmod=go-rwx", "--from0", "--files-from=-"]
    if host.is_local:
        argv += [f"{root}/", f"{remote}/"]
    else:
        ssh = host.ssh_command_args()  # type: ignore[attr-defined]
        argv += ["-e", join(ssh[:-1]), f"{root}/", f"{ssh[-1]}:{remote}/"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    _out, err = await proc.communicate(_manifest_bytes(files))
    if proc.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        why = lines[0] if lines else f"exit status {proc.returncode}"
        raise EvopilotError(f"host {host.name}: rsync to {remote} failed: {why.strip()}")


async def _sftp(root: Path, host: Host, remote: str, files: list[str]) -> None:
    import asyncssh

    async with host.sftp() as sftp:  # type: ignore[attr-defined]
        try:
            for d in sorted({posixpath.dirname(f) for f in files} - {""}):
                await sftp.makedirs(f"{remote}/{d}", attrs=asyncssh.SFTPAttrs(permissions=0o700),
                                    exist_ok=True)
            limit = asyncio.Semaphore(SFTP_PARALLEL)

            async def put(rel: str) -> None:
                target = f"{remote}/{rel}"
                tmp = f"{posixpath.dirname(target)}/.{posixpath.basename(target)}.evp-tmp"
                async with limit:
                    await sftp.put(str(root / rel), tmp, preserve=True)
                    await sftp.chmod(tmp, (root / rel).stat().st_mode & 0o700)
                    await sftp.posix_rename(tmp, target)

            await asyncio.gather(*(put(f) for f in files))
        except (asyncssh.SFTPError, OSError) as e:
            raise EvopilotError(f"host {host.name}: SFTP to {remote} failed: {e}") from None


def _copy(root: Path, remote: Path, files: list[str]) -> None:
    for rel in files:
        target = remote / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.evp-tmp")
        shutil.copy2(root / rel, tmp)
        os.replace(tmp, target)
