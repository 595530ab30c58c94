"""Attempts on an SSH host: the simplest honest way to give a remote agent a git worktree.

The attempt keeps its local worktree and branch (diffs, merges and archives work there, as for a
local attempt). On the host it gets a clone of its branch, made from a ``git bundle`` of the
branch sent over the SSH connection (the host needs git, not access to the repository): its
agent sessions and tests run in that clone. When a session ends, what the agent left
uncommitted is committed there, and the new commits come back as a bundle of ``since..HEAD``
that the local worktree fetches and fast-forwards to. The branch's history crosses once, at
the start; later only new commits do. While an agent runs, its work is on the host only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from evopilot.core import gitops
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.quoting import quote

IDENTITY_EXPORTS = " ".join(f"{k}={quote(v)}" for k, v in gitops.IDENTITY.items())


def clone_script(remote_dir: str, branch: str) -> str:
    """Make ``remote_dir`` a clone of the bundle on stdin, on ``branch``; refuses an existing dir."""
    d = quote(remote_dir)
    return f"""set -e
d={d}
[ ! -e "$d" ] || {{ echo "$d exists already" >&2; exit 3; }}
mkdir -p "$(dirname "$d")"
cat > "$d.bundle"
git clone -q --branch {quote(branch)} "$d.bundle" "$d"
rm -f "$d.bundle"
"""


def write_script(path: str) -> str:
    return f"mkdir -p \"$(dirname {quote(path)})\" && cat > {quote(path)}"


def collect_script(remote_dir: str, since: str, message: str) -> str:
    """Commit what is uncommitted in the clone, print its HEAD on the first line, then (when it
    moved) a bundle of the commits since ``since``."""
    return f"""set -e
cd {quote(remote_dir)}
if [ -n "$(git status --porcelain --untracked-files=all)" ]; then
  git config user.email >/dev/null || export {IDENTITY_EXPORTS}
  git add -A && git commit -q --no-verify -m {quote(message)}
fi
head=$(git rev-parse HEAD)
printf '%s\\n' "$head"
[ "$head" = {quote(since)} ] || git bundle create -q - HEAD --not {quote(since)}
"""


def remove_script(remote_dir: str, force: bool) -> str:
    """Delete the clone; without ``force`` only when nothing in it is uncommitted (exit 4)."""
    d = quote(remote_dir)
    check = "" if force else (f'[ ! -d {d} ] || [ -z "$(git -C {d} status --porcelain --untracked-files=all)" ] '
                              f"|| {{ git -C {d} status --porcelain --untracked-files=all; exit 4; }}\n")
    return f"set -e\n{check}rm -rf -- {d}\nrm -f -- {d}.prompt-*.md\n"


async def place(host: Host, repo: str, branch: str, remote_dir: str) -> None:
    bundle = await gitops.git(repo, "bundle", "create", "-q", "-", branch)
    res = await host.run(clone_script(remote_dir, branch), stdin=bundle)
    if not res.ok:
        raise EvopilotError(f"cannot make the attempt's clone on {host.name}: {res.error_text()}")


async def write_file(host: Host, path: str, text: str) -> None:
    res = await host.run(write_script(path), stdin=text.encode())
    if not res.ok:
        raise EvopilotError(f"cannot write {path} on {host.name}: {res.error_text()}")


async def bring_back(host: Host, remote_dir: str, since: str, worktree: Path, message: str) -> str:
    """The clone's new commits into the local worktree (a fast-forward); its head."""
    res = await host.run(collect_script(remote_dir, since, message))
    if not res.ok:
        raise EvopilotError(f"cannot read the work in {remote_dir} on {host.name}: {res.error_text()}")
    line, _, bundle = res.stdout.partition(b"\n")
    head = line.decode().strip()
    if head == since:
        return head
    with tempfile.NamedTemporaryFile(suffix=".bundle") as f:
        f.write(bundle)
        f.flush()
        await gitops.git(worktree, "fetch", "-q", f.name, "HEAD")
    await gitops.git(worktree, "merge", "--ff-only", "-q", head)
    return head


async def remove(host: Host, remote_dir: str, *, force: bool) -> None:
    res = await host.run(remove_script(remote_dir, force))
    if res.exit_status == 4:
        dirty = res.stdout.decode(errors="replace").split("\n")
        raise EvopilotError(f"{remote_dir} on {host.name} has uncommitted work "
                            f"({', '.join(x[3:] for x in dirty[:5] if x)}): archive --force deletes it")
    if not res.ok:
        raise EvopilotError(f"cannot remove {remote_dir} on {host.name}: {res.error_text()}")
