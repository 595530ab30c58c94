"""Jobs on a commit over SSH: bytes sent and time to a running job for a commit that changes one
file of a 1,000-file project, beside full sends, on a private OpenSSH sshd.

Run: python3 bench/workspace.py [--files 1000] [--file-bytes 2048] [--repeats 5] [--json]

Per repeat, on a host with the project's environments already built (warm-up):

1. ``run --commit A`` with no tree of the project on the host: the whole commit is sent (tar).
2. ``run --commit B``, B = A + one changed file: B's tree is built on A's (hard links + a tar of
   the changed file, one round trip).
3. ``run --host`` of the working tree after the same one-file edit (the existing flow: sha1 of
   every file on both sides, rsync of what differs).
4. ``sync`` of the working tree into an empty directory (rsync of all files; no job).

Time: from calling ``Engine.run`` (what ``evopilot run`` calls) until the job's ``pid`` file
exists on the host, i.e. its command is running (the host is this machine, so the file is
polled directly). Bytes: every byte from client to sshd (and back) through a counting TCP proxy
in front of the sshd, in a separate pass so the proxy does not slow the timed runs; the
engine's connection is open beforehand (commands 1-3 reuse it), rsync opens its own (its SSH
handshake is counted). Target: bytes for 2. under 2x (changed file + file list), the file list
being the project's paths, NUL-separated.

Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evopilot.core.config import parse_config  # noqa: E402
from evopilot.core.engine import Engine  # noqa: E402
from evopilot.core.hosts.sync import sync  # noqa: E402
from bench.common import print_summary  # noqa: E402
from tests.sshd import SshdServer  # noqa: E402

PYPROJECT = "[project]\nname = 'p1k'\nversion = '0.1.0'\nrequires-python = '>=3.10'\ndependencies = []\n"
BENCH = "print('[1/1] ok', flush=True)\n"
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@bench"]


# ---- a counting proxy ---------------------------------------------------------------------------


class CountingProxy:
    """127.0.0.1:port -> the sshd, counting bytes each way; runs its own loop in a thread."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = self.down = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _handle(self, reader, writer) -> None:
        self.connections += 1
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(r, w, direction):
            try:
                while data := await r.read(1 << 16):
                    if direction == "up":
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pump(reader, up_w, "up"), pump(up_r, writer, "down"))

    def snapshot(self) -> tuple[int, int, int]:
        return self.up, self.down, self.connections


# ---- the project --------------------------------------------------------------------------------


def make_project(root: Path, n: int, size: int) -> list[str]:
    rnd = random.Random(1)
    files = []
    for i in range(n - 27):  # + 25 package markers, pyproject.toml and the benchmark
        rel = f"pkg{i % 25}/m{i:04d}.py"
        words = " ".join(f"w{rnd.randrange(10**6)}" for _ in range(size // 8))
        text = f"# module {i}\nTEXT = {words[: size - 40]!r}\n"
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        files.append(rel)
    for i in range(25):
        (root / f"pkg{i}" / "__init__.py").touch()  # not counted: empty package markers
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "run.py").write_text(BENCH)
    files += ["pyproject.toml", "benchmarks/run.py"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    commit(root, "initial")
    return sorted(files + [f"pkg{i}/__init__.py" for i in range(25)])


def commit(root: Path, message: str) -> str:
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-q", "-m", message], check=True)
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def edit(root: Path, rel: str, tag: str) -> int:
    p = root / rel
    first, rest = p.read_text().split("\n", 1)
    p.write_text(f"# {tag}: {first.split(': ')[-1]}\n{rest}")  # a new first line
    return len(p.read_bytes())


# ---- measuring ----------------------------------------------------------------------------------


async def until_running(engine: Engine, call) -> tuple[float, float, int]:
    """(seconds until ``Engine.run`` returned, seconds until the job's pid file exists, job id)."""
    t0 = time.perf_counter()
    (job,) = await call()
    t_run = time.perf_counter() - t0
    job = await engine.job(job.id)
    if not job.job_dir:
        raise RuntimeError(f"job {job.id} did not start: {job.status} {job.error_message}")
    pid = Path(job.job_dir) / "pid"
    while not pid.exists():
        if time.perf_counter() - t0 > 60:
            raise RuntimeError(f"job {job.id} never ran")
        await asyncio.sleep(0.001)
    return t_run, time.perf_counter() - t0, job.id


async def settle(engine: Engine, ids: list[int]) -> None:
    await engine.run_forever(until_done=ids)
    for i in ids:
        j = await engine.job(i)
        if j.status != "succeeded":
            raise RuntimeError(f"job {i} ({j.name}) {j.status}: {j.error_message}")


async def workspace_step(engine: Engine, job_id: int) -> dict:
    """What building the job's tree did (basis, files sent, tar bytes)."""
    (step,) = [s for s in await engine.job_steps(job_id) if s["name"] == "workspace"]
    return json.loads(step["details"])


async def clear_trees(engine: Engine, server: SshdServer) -> None:
    """Forget every tree of the project on the host: the next commit is sent whole."""
    await engine.db.execute("DELETE FROM workspaces")
    shutil.rmtree(Path(server.base_dir) / "trees", ignore_errors=True)


async def one_pass(engine: Engine, host: str, root: Path, server: SshdServer, rep: str,
                   target: str, meter=None) -> dict:
    """The four measurements of one repeat; ``meter()`` gives byte counters (bytes pass)."""
    out: dict = {}

    async def measure(name, call):
        before = meter() if meter else None
        t_run, t_pid, job_id = await until_running(engine, call)
        out[name] = {"run": t_run, "running": t_pid, "job": job_id}
        if meter:
            after = meter()
            out[name].update(up=after[0] - before[0], down=after[1] - before[1])
        await settle(engine, [job_id])

    edit(root, "pkg3/m0003.py", f"A{rep}")
    sha_a = commit(root, f"A{rep}")
    out["changed_file_bytes"] = edit(root, target, f"B{rep}")
    sha_b = commit(root, f"B{rep}")
    await clear_trees(engine, server)
    await measure("commit_full", lambda: engine.run("p1k", ["run.py"], host=host, commit=sha_a, check=False))
    await measure("commit_diff", lambda: engine.run("p1k", ["run.py"], host=host, commit=sha_b, check=False))
    out["diff_step"] = await workspace_step(engine, out["commit_diff"]["job"])
    out["full_payload"] = (await workspace_step(engine, out["commit_full"]["job"]))["bytes"]
    await engine.sync("p1k", host)  # the host has the working tree as it is (not measured)
    edit(root, target, f"W{rep}")  # then the same one-file change, uncommitted
    await measure("worktree_incremental", lambda: engine.run("p1k", ["run.py"], host=host, check=False))
    h = await engine.host(host)
    before = meter() if meter else None
    t0 = time.perf_counter()
    report = await sync(root, h, f"{h.base_dir}/fullsync-{host}-{rep}")
    out["worktree_full_sync"] = {"run": time.perf_counter() - t0, "files": len(report.sent)}
    if meter:
        after = meter()
        out["worktree_full_sync"].update(up=after[0] - before[0], down=after[1] - before[1])
    subprocess.run(["git", "-C", str(root), "checkout", "-q", "--", target], check=True)
    return out


async def run(a, server: SshdServer, tmp: Path) -> dict:
    root = tmp / "p1k"
    root.mkdir()
    files = make_project(root, a.files, a.file_bytes)
    file_list = sum(len(f.encode()) + 1 for f in files)
    proxy = CountingProxy(server.port)
    known = tmp / "known_hosts"
    known.write_text(server.known_hosts_line() + f"[127.0.0.1]:{proxy.port} "
                     + " ".join(server.host_public_key) + "\n")
    lines = ["[engine]", "poll_interval = 0.5", "remote_poll_interval = 0.5"]
    for name, port in (("h1", server.port), ("h1p", proxy.port)):
        cfg = server.host_config(port=port, known_hosts=str(known))
        lines.append(f"[hosts.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.model_dump(exclude_defaults=True).items()]
        lines.append(f"ssh_config = {json.dumps(server.ssh_config)}")
    config = parse_config("\n".join(lines) + "\n")
    engine = await Engine.open(config, tmp / "home")
    try:
        await engine.add_project(root, "p1k")
        t0 = time.perf_counter()
        await engine.host("h1")
        connect = time.perf_counter() - t0
        # warm-up: the commits' shared environment and the working tree's .venv on the host
        for kw in ({"commit": "HEAD"}, {}):
            jobs = await engine.run("p1k", ["run.py"], host="h1", check=False, **kw)
            await settle(engine, [j.id for j in jobs])
        target = "pkg10/m0510.py"
        timed = [await one_pass(engine, "h1", root, server, str(i), target) for i in range(a.repeats)]
        # the bytes pass: the same through the proxy (its own host name, the same directories)
        jobs = await engine.run("p1k", ["run.py"], host="h1p", check=False)  # connects, working tree synced
        await settle(engine, [j.id for j in jobs])
        counted = await one_pass(engine, "h1p", root, server, "bytes", target, meter=proxy.snapshot)
    finally:
        await engine.close()
    return {"files": len(files), "file_list": file_list, "connect": connect, "timed": timed,
            "counted": counted, "project_bytes": sum((root / f).stat().st_size for f in files)}


def report(r: dict) -> list[tuple[str, ...]]:
    rows = []
    med = lambda key, field: statistics.median(t[key][field] for t in r["timed"])  # noqa: E731
    runs = lambda key, field: " ".join(f"{t[key][field] * 1000:.0f}" for t in r["timed"])  # noqa: E731
    c = r["counted"]
    changed = c["changed_file_bytes"]
    target = 2 * (changed + r["file_list"])
    diff = c["commit_diff"]
    rows.append(("1 file changed of", f"{r['files']} files, {r['project_bytes'] / 1e6:.1f} MB",
                 f"changed file {changed} B, file list {r['file_list']} B", ""))
    rows.append(("bytes to the host (run -> job running)", "up", "down", "vs run --commit B"))
    for key, label in (("commit_diff", "run --commit B (tree on A's)"),
                       ("commit_full", "run --commit A (whole commit)"),
                       ("worktree_incremental", "run --host, working tree, 1 file edited"),
                       ("worktree_full_sync", "sync, working tree, empty dir (no job)")):
        rows.append((f"  {label}", f"{c[key]['up']:,}", f"{c[key]['down']:,}",
                     f"{c[key]['up'] / diff['up']:.1f}x" if key != "commit_diff" else ""))
    rows.append(("  of which the tar (B / A)", f"{c['diff_step']['bytes']:,} / {c['full_payload']:,}", "", ""))
    verdict = "PASS" if diff["up"] < target else "FAIL"
    rows.append(("  target: B under 2x (changed file + file list)", f"{diff['up']:,} < {target:,}",
                 f"{diff['up'] / target:.2f} of it", verdict))
    rows.append(("time (median ms; runs)", "run returned", "job running", "vs run --commit B"))
    base = med("commit_diff", "running")
    for key, label in (("commit_diff", "run --commit B (tree on A's)"),
                       ("commit_full", "run --commit A (whole commit)"),
                       ("worktree_incremental", "run --host, working tree, 1 file edited")):
        rows.append((f"  {label}", f"{med(key, 'run') * 1000:.0f}",
                     f"{med(key, 'running') * 1000:.0f}  ({runs(key, 'running')})",
                     f"{med(key, 'running') / base:.1f}x" if key != "commit_diff" else ""))
    rows.append(("  sync, working tree, empty dir (no job)", f"{med('worktree_full_sync', 'run') * 1000:.0f}",
                 f"({runs('worktree_full_sync', 'run')})", f"{med('worktree_full_sync', 'run') / base:.1f}x"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--file-bytes", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="evp-bench-ws-"))
    os.environ["TMUX_TMPDIR"] = str(tmp / "tmux-local")
    os.makedirs(os.environ["TMUX_TMPDIR"], mode=0o700)
    server = SshdServer(tmp / "sshd")
    t0 = time.perf_counter()
    try:
        server.start()
        r = asyncio.run(run(a, server, tmp))
    finally:
        server.close()
        subprocess.run(["tmux", "kill-server"], capture_output=True, stdin=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    print_summary(report(r), connect_s=r["connect"], started=t0, note=f"{a.repeats} repeats, ",
                  raw=r if a.json else None)

if __name__ == "__main__":
    main()
