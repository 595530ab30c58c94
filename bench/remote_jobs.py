"""Remote jobs over SSH: dispatch, watching and log streaming against seed 001's way (one `ssh`
process per command), each beside its baseline in the same run, on a private OpenSSH sshd.

Run: python3 bench/remote_jobs.py [--dispatch-jobs 100] [--watch-jobs 200] [--ticks 30]
         [--baseline-ticks 2] [--log-mb 100] [--repeats 2] [--chunks-mib 4,16,64 (16: the default)] [--json]

1. dispatch: ``engine.submit("sleep 60", host="h1")`` x N, then ``tick_host("h1")`` until all
   are running (one start script); baseline: per job one ``ssh`` process running the same start
   script for that job alone (mkdir, write run.sh, ``tmux new-session -d``), sequentially.
2. watch: N jobs printing ``[i/1000]`` every 0.5 s; ``tick_host("h1", dispatch_jobs=False)``
   x ticks with 0.5 s between; round trips counted by wrapping the host object's ``run`` (every
   probe, read_ranges and start goes through it: one call = one SSH channel = one round trip);
   baseline: per job per tick one ``ssh`` process running ``tail -n 20 <log>`` (seed 001 polls
   each job's status every 2 s), progress parsed the same way.
3. log streaming: a job whose host-side log is replaced by a 100 MB file (hard link; the host is
   this machine), mirrored by back-to-back monitor ticks; baseline: ``ssh host cat file >
   /dev/null``; plus ``host.read_ranges`` alone per chunk size.

Takes ~5 minutes on 2 cores, most of it the ``ssh`` baselines. Results: bench/RESULTS.md.

CPU: "client" = ``getrusage`` self + children of this process (for the baseline that includes
the ``ssh`` processes); "host" = utime+stime+cutime+cstime of the sshd listener and every live
process under it (per-connection sshd, the bash/tail/find/tmux-client commands it ran), i.e.
the work the SSH side did for us. Jobs run under the tmux server, which is not under sshd, so
their own CPU is in neither figure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evopilot.core.config import EngineConfig, parse_config  # noqa: E402
from evopilot.core.engine import Engine  # noqa: E402
from evopilot.core.hosts.ssh import ssh_command_args  # noqa: E402
from evopilot.core.quoting import quote  # noqa: E402
from evopilot.core.jobs import parse, scripts  # noqa: E402
from bench.common import print_summary  # noqa: E402
from tests.sshd import SshdServer, _descendants  # noqa: E402

HOST = "h1"
MIB = 1024 * 1024
DEFAULT_CHUNK = EngineConfig().log_chunk_bytes
TICK_GAP = 0.5
PRINTER = 'for i in $(seq 1000); do echo "[$i/1000] step $i"; sleep 0.5; done'
CLK = os.sysconf("SC_CLK_TCK")


# ---- measuring ----------------------------------------------------------------------------


def client_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(b")") + 2:].split()
    return sum(int(x) for x in fields[11:15]) / CLK  # utime stime cutime cstime


def host_cpu(server: SshdServer) -> float:
    """CPU of sshd and everything it ran (reaped children included), in seconds."""
    root = server.proc.pid
    return sum(_proc_cpu(p) for p in [root, *_descendants(root)])


class Meter:
    """Wall, client CPU and host CPU over a block (host snapshots outside the client window)."""

    def __init__(self, server: SshdServer) -> None:
        self.server = server

    def __enter__(self) -> "Meter":
        self.h0 = host_cpu(self.server)
        self.c0, self.t0 = client_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.client = client_cpu() - self.c0
        self.host = host_cpu(self.server) - self.h0


class RunCounter:
    """Wraps ``host.run``: every SshHost command (probe, read_ranges, start...) is one channel."""

    def __init__(self, host) -> None:
        self.calls = 0
        self.bytes_out = 0
        self.times: dict[str, list[float]] = {}
        self._run = host.run

        async def run(script, **kw):
            self.calls += 1
            kind = ("probe" if script.startswith("tmux list-sessions") else
                    "read" if script.startswith("s=$(stat") else "other")
            t0 = time.perf_counter()
            res = await self._run(script, **kw)
            self.times.setdefault(kind, []).append(time.perf_counter() - t0)
            self.bytes_out += len(res.stdout)
            return res

        host.run = run


def ssh_argv(server: SshdServer) -> list[str]:
    return ssh_command_args(HOST, server.host_config(), ssh_config=[server.ssh_config])


def ssh_run(argv: list[str], script: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    res = subprocess.run([*argv, "bash -c " + quote(script)], stdin=subprocess.DEVNULL,
                         stdout=stdout, stderr=subprocess.PIPE)
    if res.returncode != 0:
        raise RuntimeError(f"ssh failed ({res.returncode}): {res.stderr.decode(errors='replace')}")
    return res


def config_toml(server: SshdServer, chunk: int | None = None) -> str:
    cfg = server.host_config()
    lines = []
    if chunk:
        lines += ["[engine]", f"log_chunk_bytes = {chunk}"]
    lines.append(f"[hosts.{HOST}]")
    for key, value in cfg.model_dump(exclude_defaults=True).items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += ["max_parallel = 300", f"ssh_config = {json.dumps(server.ssh_config)}"]
    return "\n".join(lines) + "\n"


async def tick(engine: Engine, host, **kw) -> None:
    host.last_error = None
    await engine.tick_host(HOST, **kw)
    if host.last_error:  # tick_host records a host error instead of raising it
        raise RuntimeError(f"tick failed: {host.last_error}")


async def count(engine: Engine, status: str) -> int:
    return await engine.count_jobs(status=[status], host=HOST)


async def end_running_jobs(engine: Engine, host) -> None:
    """SIGTERM every running job's process group in one command, then tick until none runs."""
    jobs = await engine.jobs(status=["running"], host=HOST, reconcile=False)
    script = "".join(f"pg=$(cat {quote(j.job_dir)}/pid 2>/dev/null) && kill -TERM -- -$pg 2>/dev/null\n"
                     for j in jobs) + "true\n"
    await host.run(script)
    deadline = time.monotonic() + 60
    while await count(engine, "running"):
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not end after SIGTERM")
        await asyncio.sleep(0.3)
        await tick(engine, host, dispatch_jobs=False)


# ---- 1. dispatch --------------------------------------------------------------------------


async def bench_dispatch(engine: Engine, host, server: SshdServer, n: int) -> dict:
    counter_calls0 = host._bench_counter.calls
    with Meter(server) as m:
        ids = [(await engine.submit("sleep 60", name="sleep", host=HOST)).id for _ in range(n)]
        t_sub = time.perf_counter() - m.t0
        ticks = 0
        while await count(engine, "running") < n:
            await tick(engine, host)
            ticks += 1
    trips = host._bench_counter.calls - counter_calls0
    # confirmation (not timed): every job's process started (pid file seen by a probe)
    t0 = time.perf_counter()
    while True:
        await tick(engine, host, dispatch_jobs=False)
        jobs = [await engine.job(i) for i in ids]
        if all(j.pgid for j in jobs):
            break
        if time.perf_counter() - t0 > 30:
            raise RuntimeError("jobs did not start")
    confirm = m.wall + (time.perf_counter() - t0)
    assert all(j.status == "running" for j in jobs), [j.status for j in jobs]
    return {"wall": m.wall, "submit": t_sub, "dispatch": m.wall - t_sub, "ticks": ticks,
            "trips": trips, "client": m.client, "host": m.host, "confirmed": confirm}


def baseline_dispatch(server: SshdServer, n: int, kex: str | None = None) -> tuple[dict, list[str]]:
    """``kex``: force this key exchange (OpenSSH 9.2's default sntrup761x25519 costs the client
    ~0.2 s of CPU per connection here; curve25519-sha256 is the cheap one)."""
    argv = ssh_argv(server)
    if kex:
        argv = [*argv[:-1], "-o", f"KexAlgorithms={kex}", argv[-1]]
    tag = "k" if kex else "b"
    base = Path(server.dir) / "baseline" / "jobs"
    dirs = []
    with Meter(server) as m:
        for i in range(1, n + 1):
            d = str(base / f"{tag}-{i}")
            spec = scripts.StartSpec(i, d, f"evp{tag}-{i}", scripts.wrapper(
                job_id=i, job_dir=d, workdir="/tmp", command="sleep 60",
                done_channel="evpb-done"))
            out = ssh_run(argv, scripts.start([spec])).stdout
            if not scripts.parse_start(out).get(i):
                raise RuntimeError(f"baseline job {i} did not start: {out!r}")
            dirs.append(d)
    return {"wall": m.wall, "trips": n, "client": m.client, "host": m.host}, dirs


# ---- 2. watch -----------------------------------------------------------------------------


async def bench_watch(engine: Engine, host, server: SshdServer, n: int, ticks: int) -> tuple[dict, list]:
    ids = [(await engine.submit(PRINTER, name="printer", host=HOST)).id for _ in range(n)]
    while await count(engine, "running") < n:
        await tick(engine, host)
    await asyncio.sleep(1.0)
    for _ in range(2):  # warm-up: pids recorded, logs caught up from 0
        await tick(engine, host, dispatch_jobs=False)
        await asyncio.sleep(TICK_GAP)
    c = host._bench_counter
    per_tick, walls = [], []
    calls0, bytes0 = c.calls, c.bytes_out
    c.times.clear()
    with Meter(server) as m:
        for _ in range(ticks):
            before, t0 = c.calls, time.perf_counter()
            await tick(engine, host, dispatch_jobs=False)
            walls.append(time.perf_counter() - t0)
            per_tick.append(c.calls - before)
            await asyncio.sleep(TICK_GAP)
    jobs = [await engine.job(i) for i in ids]
    assert all(j.status == "running" and j.progress_current for j in jobs)
    mirrored = sum(j.log_offset for j in jobs)
    return {"trips": (c.calls - calls0) / ticks, "trips_min": min(per_tick), "trips_max": max(per_tick),
            "client": m.client / ticks, "host": m.host / ticks,
            "tick_wall": sum(walls) / ticks, "tick_wall_max": max(walls),
            "bytes": (c.bytes_out - bytes0) / ticks, "mirrored": mirrored,
            "probe_ms": _mean_ms(c.times.get("probe")), "read_ms": _mean_ms(c.times.get("read")),
            "progress": sorted({j.progress_current for j in jobs})}, jobs


def _mean_ms(xs: list[float] | None) -> float:
    return 1000 * sum(xs) / len(xs) if xs else 0.0


def baseline_watch(server: SshdServer, jobs: list, ticks: int) -> dict:
    argv = ssh_argv(server)
    walls = []
    with Meter(server) as m:
        for _ in range(ticks):
            t0 = time.perf_counter()
            seen = 0
            for j in jobs:
                out = ssh_run(argv, f"tail -n 20 {quote(j.job_dir)}/log").stdout
                seen += parse.parse_progress(out) is not None
            assert seen == len(jobs), seen
            walls.append(time.perf_counter() - t0)
    return {"trips": len(jobs), "client": m.client / ticks, "host": m.host / ticks,
            "tick_wall": sum(walls) / ticks, "tick_wall_max": max(walls)}


# ---- 3. log streaming ---------------------------------------------------------------------


def make_log(path: Path, size: int) -> str:
    """A log of ``size`` bytes of ~100-byte progress lines; returns its sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        written, i = 0, 0
        while written < size:
            block = b"".join(b"[%d/2000000] step %d loss=0.%06d %s\n" % (i + k, i + k, (i + k) % 999983, b"x" * 50)
                             for k in range(10000))
            i += 10000
            block = block[: size - written]
            f.write(block)
            h.update(block)
            written += len(block)
    return h.hexdigest()


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def baseline_cat(server: SshdServer, path: Path) -> dict:
    with Meter(server) as m:
        ssh_run(ssh_argv(server), f"cat {quote(str(path))}", stdout=subprocess.DEVNULL)
    size = path.stat().st_size
    return {"wall": m.wall, "mbps": size / MIB / m.wall, "client": m.client, "host": m.host, "trips": 1}


async def bench_mirror(server: SshdServer, tmp: Path, big: Path, digest: str, chunk: int) -> dict:
    """A fresh engine with ``log_chunk_bytes = chunk``; its job's host-side log becomes ``big``;
    back-to-back monitor ticks until the local mirror holds all of it."""
    home = tmp / f"home-chunk-{chunk}"
    engine = await Engine.open(parse_config(config_toml(server, chunk)), home)
    try:
        host = await engine.host(HOST)
        c = RunCounter(host)
        job = await engine.submit("sleep 600", name="biglog", host=HOST)
        while not (job := await engine.job(job.id)).pgid:
            await tick(engine, host)
            await asyncio.sleep(0.1)
        log = Path(job.job_dir) / scripts.LOG
        os.link(big, log.with_name("log.big"))
        os.replace(log.with_name("log.big"), log)  # the wrapper's tail -f keeps the old inode
        size = big.stat().st_size
        calls0, ticks = c.calls, 0
        with Meter(server) as m:
            while (await engine.job(job.id)).log_offset < size:
                await tick(engine, host, dispatch_jobs=False)
                ticks += 1
        trips = c.calls - calls0
        if sha256(job.log_path) != digest:
            raise RuntimeError(f"the mirror of the {size}-byte log differs from the host's")
        job = await engine.job(job.id)
        await host.run(f"kill -TERM -- -{job.pgid}; true")
        os.unlink(job.log_path)
        return {"chunk": chunk, "wall": m.wall, "mbps": size / MIB / m.wall, "ticks": ticks,
                "trips": trips, "client": m.client, "host": m.host, "identical": True,
                "progress": (job.progress_current, job.progress_total)}
    finally:
        await engine.close()


async def bench_read_ranges(host, server: SshdServer, big: Path, chunk: int) -> dict:
    """``host.read_ranges`` alone, one range per call, as the monitor asks for one log."""
    size, off, trips = big.stat().st_size, 0, 0
    with Meter(server) as m:
        while off < size:
            (data,) = await host.read_ranges([(str(big), off, chunk)])
            off += len(data)
            trips += 1
    return {"chunk": chunk, "wall": m.wall, "mbps": size / MIB / m.wall, "trips": trips,
            "per_trip_ms": m.wall / trips * 1000, "client": m.client, "host": m.host}


# ---- main ---------------------------------------------------------------------------------


def kill_groups(dirs: list[str]) -> None:
    for d in dirs:
        try:
            pg = int(Path(d, scripts.PID).read_text())
            os.killpg(pg, signal.SIGKILL)
        except (OSError, ValueError):
            pass


async def run(a, server: SshdServer, tmp: Path) -> dict:
    out: dict = {}
    t0 = time.perf_counter()
    engine = await Engine.open(parse_config(config_toml(server)), tmp / "home")
    baseline_dirs: list[str] = []
    try:
        host = await engine.host(HOST)  # connect once: a running engine keeps its connection
        out["connect"] = time.perf_counter() - t0
        out["remote_poll_interval"] = engine.config.engine.remote_poll_interval
        host._bench_counter = RunCounter(host)

        print(f"1. dispatch {a.dispatch_jobs} jobs ...", flush=True)
        out["dispatch"] = await bench_dispatch(engine, host, server, a.dispatch_jobs)
        out["dispatch_base"], baseline_dirs = baseline_dispatch(server, a.dispatch_jobs)
        out["dispatch_base_kex"], more = baseline_dispatch(server, a.dispatch_jobs, "curve25519-sha256")
        baseline_dirs += more
        await end_running_jobs(engine, host)
        await host.run("".join(f"pg=$(cat {quote(d)}/pid 2>/dev/null) && kill -TERM -- -$pg\n"
                               for d in baseline_dirs) + "true\n")

        print(f"2. watch {a.watch_jobs} jobs for {a.ticks} ticks ...", flush=True)
        out["watch"], jobs = await bench_watch(engine, host, server, a.watch_jobs, a.ticks)
        print(f"   baseline: {a.baseline_ticks} ticks of {a.watch_jobs} ssh processes ...", flush=True)
        out["watch_base"] = baseline_watch(server, jobs, a.baseline_ticks)
        await end_running_jobs(engine, host)

        print(f"3. stream a {a.log_mb} MB log ...", flush=True)
        big = tmp / "big.log"
        digest = make_log(big, a.log_mb * 1000 * 1000)
        subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # page cache warm
        cats, mirrors, ranges = [], [], []
        for _ in range(a.repeats):
            cats.append(baseline_cat(server, big))
            mirrors.append(await bench_mirror(server, tmp, big, digest, DEFAULT_CHUNK))
        out["cipher"] = host._conn.get_extra_info("recv_cipher")
        for mib in a.chunks_mib:
            ranges.append(await bench_read_ranges(host, server, big, mib * MIB))
        with Meter(server) as m:
            ssh_run(ssh_argv(server), "true")
        out["ssh_true"] = m.wall
        for mib in a.chunks_mib:
            if mib * MIB != DEFAULT_CHUNK:
                mirrors.append(await bench_mirror(server, tmp, big, digest, mib * MIB))
        cats.append(baseline_cat(server, big))
        out.update(cat=cats, mirror=mirrors, ranges=ranges, log_bytes=big.stat().st_size)
    finally:
        kill_groups(baseline_dirs)
        await engine.close()
    return out


def report(a, r: dict) -> list[tuple[str, str, str, str, str]]:
    """Rows: what, evopilot, baseline, ratio, verdict."""
    rows = []
    d, db = r["dispatch"], r["dispatch_base"]
    ratio = db["wall"] / d["wall"]
    rows.append((f"1. dispatch {a.dispatch_jobs} jobs: wall s", f"{d['wall']:.2f}", f"{db['wall']:.2f}",
                 f"{ratio:.1f}x faster", "PASS" if ratio >= 10 else "FAIL"))
    dk = r["dispatch_base_kex"]
    rk = dk["wall"] / d["wall"]
    rows.append(("   baseline with curve25519 kex: wall s", "", f"{dk['wall']:.2f}", f"{rk:.1f}x faster",
                 "PASS" if rk >= 10 else "FAIL"))
    rows.append(("   of which submit / start script s", f"{d['submit']:.2f} / {d['dispatch']:.2f}", "", "", ""))
    rows.append(("   round trips", str(d["trips"]), str(db["trips"]), "", ""))
    rows.append(("   client CPU s / host CPU s", f"{d['client']:.2f} / {d['host']:.2f}",
                 f"{db['client']:.2f} / {db['host']:.2f}", f"kex: {dk['client']:.2f} / {dk['host']:.2f}", ""))
    rows.append(("   until every pid seen by a probe s", f"{d['confirmed']:.2f}", "", "", ""))
    w, wb = r["watch"], r["watch_base"]
    rows.append((f"2. watch {a.watch_jobs} jobs: round trips/tick",
                 f"{w['trips']:.2f} ({w['trips_min']}-{w['trips_max']})", f"{wb['trips']}",
                 f"{wb['trips'] / w['trips']:.0f}x fewer", "PASS" if w["trips_max"] <= 2 else "FAIL"))
    rows.append(("   client CPU ms/tick", f"{w['client'] * 1000:.0f}", f"{wb['client'] * 1000:.0f}",
                 f"{wb['client'] / w['client']:.1f}x less", ""))
    rows.append(("   host CPU ms/tick", f"{w['host'] * 1000:.0f}", f"{wb['host'] * 1000:.0f}",
                 f"{wb['host'] / max(w['host'], 1e-9):.1f}x less", ""))
    rows.append(("   tick wall ms (mean / max)", f"{w['tick_wall'] * 1000:.0f} / {w['tick_wall_max'] * 1000:.0f}",
                 f"{wb['tick_wall'] * 1000:.0f} / {wb['tick_wall_max'] * 1000:.0f}", "", ""))
    rows.append(("   probe / read_ranges round trip ms", f"{w['probe_ms']:.0f} / {w['read_ms']:.0f}", "", "", ""))
    rows.append(("   bytes fetched/tick", f"{w['bytes']:.0f}", "", "", ""))
    cat = max(c["mbps"] for c in r["cat"])
    default = [m for m in r["mirror"] if m["chunk"] == DEFAULT_CHUNK]
    best_default = max(m["mbps"] for m in default)
    ok = best_default >= cat / 2
    mb = r["log_bytes"] / 1e6
    rows.append((f"3. {mb:.0f} MB log, {DEFAULT_CHUNK // MIB} MiB chunks (default): MiB/s (best)",
                 f"{best_default:.0f}", f"{cat:.0f}",
                 f"{best_default / cat:.2f}", "PASS" if ok else "FAIL"))
    rows.append(("   runs MiB/s", " ".join(f"{m['mbps']:.0f}" for m in default),
                 " ".join(f"{c['mbps']:.0f}" for c in r["cat"]), "", ""))
    m0, c0 = default[0], r["cat"][0]
    rows.append(("   ticks / round trips", f"{m0['ticks']} / {m0['trips']}", "1 / 1", "", ""))
    rows.append(("   client CPU s / host CPU s", f"{m0['client']:.2f} / {m0['host']:.2f}",
                 f"{c0['client']:.2f} / {c0['host']:.2f}", "", ""))
    for m in r["mirror"]:
        if m["chunk"] != DEFAULT_CHUNK:
            rows.append((f"   monitor, {m['chunk'] // MIB} MiB chunks: MiB/s", f"{m['mbps']:.0f}", f"{cat:.0f}",
                         f"{m['mbps'] / cat:.2f}", "meets" if m["mbps"] >= cat / 2 else "below"))
    for g in r["ranges"]:
        rows.append((f"   read_ranges alone, {g['chunk'] // MIB} MiB: MiB/s (ms/trip)",
                     f"{g['mbps']:.0f} ({g['per_trip_ms']:.0f})", f"{cat:.0f}", f"{g['mbps'] / cat:.2f}", ""))
    rows.append(("   ssh connect alone (`ssh host true`) s", "", f"{r['ssh_true']:.2f}", "", ""))
    rows.append((f"   cipher negotiated by the engine: {r['cipher']}", "", "", "", ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dispatch-jobs", type=int, default=100)
    ap.add_argument("--watch-jobs", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--baseline-ticks", type=int, default=2)
    ap.add_argument("--log-mb", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2, help="runs of ssh cat and the default monitor")
    ap.add_argument("--chunks-mib", type=lambda s: [int(x) for x in s.split(",")], default=sorted({4, DEFAULT_CHUNK // MIB, 64}))
    ap.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    a = ap.parse_args()
    a.chunks_mib = sorted(set(a.chunks_mib) | {DEFAULT_CHUNK // MIB})  # the default is always measured

    tmp = Path(tempfile.mkdtemp(prefix="evp-bench-remote-"))
    os.environ["TMUX_TMPDIR"] = str(tmp / "tmux-local")  # local tmux, if anything uses it
    os.makedirs(os.environ["TMUX_TMPDIR"], mode=0o700)
    server = SshdServer(tmp / "sshd")
    t0 = time.perf_counter()
    try:
        server.start()
        r = asyncio.run(run(a, server, tmp))
    finally:
        server.close()  # drops connections, stops sshd, kills its tmux server (and the jobs)
        subprocess.run(["tmux", "kill-server"], capture_output=True, stdin=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    print_summary([("", "evopilot", "baseline", "ratio", "target"), *report(a, r)], connect_s=r["connect"],
                  started=t0, raw=r if a.json else None)

if __name__ == "__main__":
    main()
