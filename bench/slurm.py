"""Slurm hosts on a private single-node cluster (tests/slurm.py: 16 CPUs advertised on this
machine, scheduler on its 1-second tick), each measure beside its baseline in the same run.

Run: python3 bench/slurm.py [--jobs 100] [--watch-jobs 200] [--ticks 10] [--latency-jobs 20] [--json]

1. submission: N jobs of ``true`` through evopilot (``engine.submit`` x N, then one dispatch):
   as one job array, and with arrays off (one ``sbatch`` per job, still in one script); the
   time dispatch takes, and until evopilot shows all finished. Baselines: plain
   ``sbatch --array=0-(N-1)`` and N plain ``sbatch`` in a bash loop, until squeue shows all
   finished (polled every 0.1 s).
2. round trips per tick: N jobs of ``sleep 300`` submitted (16 run, the rest pending), then
   ``tick_host`` x ticks; round trips counted by wrapping the host's ``run`` (every probe, read
   and submission goes through it). Target: 2 (one squeue + the job directories' files, one
   read of new log bytes). Twice: Slurm's commands here (the local host reads logs directly),
   and through a private sshd as the login node.
3. end to status: jobs of ``sleep 1..5 s`` under the worker loop with the default
   ``remote_poll_interval`` (1 s); for each, the time from its wrapper's end (``finished_at``,
   written before its exit code and before Slurm's end) to the event saying it finished.
   Target: under 2 ticks.
4. slurmctld down: 3 jobs of ``sleep 90`` running (one then exits 3), slurmctld killed (6 s after the last
   submission, see notes-slurm.md), then ``tick_host`` x ticks: Slurm's commands bounded
   (``core.hosts.slurm.SLURM_TIMEOUT``) against the baseline of unbounded ones (Slurm gives up
   by itself, ~9 s each), and a healthy tick beside them; then slurmctld is started again and
   the jobs must end with their true status. ``--down-only`` runs only this part.

Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evopilot.core.config import parse_config  # noqa: E402
from evopilot.core.engine import Engine  # noqa: E402
from evopilot.core.events import JobEvent  # noqa: E402
from evopilot.core.hosts import slurm  # noqa: E402
from evopilot.core.jobs import sbatch  # noqa: E402
from tests.slurm import SlurmCluster  # noqa: E402
from tests.sshd import SshdServer  # noqa: E402


def config(cluster: SlurmCluster, base: Path, poll: float, sshd: SshdServer | None = None) -> str:
    """The cluster as host ``c``: here, or through ``sshd`` as its login node."""
    where = "local = true\n" if sshd is None else (
        f'hostname = "{sshd.host}"\nport = {sshd.port}\nuser = "{sshd.user}"\n'
        f'identity_file = "{sshd.identity_file}"\nuse_agent = false\nknown_hosts = "{sshd.known_hosts}"\n'
        f'ssh_config = "{sshd.ssh_config}"\n')
    return (f"[engine]\nremote_poll_interval = {poll}\npoll_interval = 0.1\n"
            f'[hosts.c]\nkind = "slurm"\n{where}partition = "{cluster.partition}"\n'
            f'base_dir = "{base}"\nmax_queued = 1000\nenv = {{ SLURM_CONF = "{cluster.conf}" }}\n')


def wait_idle(cluster: SlurmCluster) -> None:
    while cluster.cmd("squeue", "-h", "-t", "pending,running,completing", "-o", "%i").strip():
        time.sleep(0.1)


async def evopilot_submission(cluster: SlurmCluster, tmp: Path, n: int, arrays: bool) -> dict:
    sbatch.ARRAY_MIN = 2 if arrays else 10**9
    home = Path(tempfile.mkdtemp(dir=tmp))
    engine = await Engine.open(parse_config(config(cluster, home / "base", 0.2)), home)
    try:
        ids = [(await engine.submit("true", name=f"t{i}", host="c", workdir=str(tmp))).id for i in range(n)]
        t0 = time.perf_counter()
        await engine.dispatch()
        submitted = time.perf_counter() - t0
        await engine.run_forever(until_done=ids)
        done = time.perf_counter() - t0
        jobs = [await engine.job(i) for i in ids]
        assert all(j.status == "succeeded" for j in jobs), [j.error_message for j in jobs]
        assert len({j.slurm_id.split("_")[0] for j in jobs}) == (1 if arrays else n)
    finally:
        await engine.close()
        sbatch.ARRAY_MIN = 2
    wait_idle(cluster)
    return {"submit_s": submitted, "all_done_s": done}


def plain_submission(cluster: SlurmCluster, tmp: Path, n: int, arrays: bool) -> dict:
    out = f"--output={tmp}/plain-%A_%a.out" if arrays else f"--output={tmp}/plain-%j.out"
    loop = (f"sbatch --parsable --array=0-{n - 1} {out} --wrap=true" if arrays else
            f"for i in $(seq {n}); do sbatch --parsable {out} --wrap=true; done")
    t0 = time.perf_counter()
    ids = subprocess.run(["bash", "-c", loop], env=cluster.env(), capture_output=True, text=True,
                         check=True).stdout.split()
    submitted = time.perf_counter() - t0
    while True:
        states = cluster.cmd("squeue", "-h", "-r", "--states=all", "-j", ",".join(ids), "-o", "%T").split()
        if len(states) == n and all(s == "COMPLETED" for s in states):
            break
        time.sleep(0.1)
    return {"submit_s": submitted, "all_done_s": time.perf_counter() - t0}


async def round_trips(cluster: SlurmCluster, tmp: Path, n: int, ticks: int,
                      sshd: SshdServer | None = None) -> dict:
    home = Path(tempfile.mkdtemp(dir=tmp))
    engine = await Engine.open(parse_config(config(cluster, home / "base", 1.0, sshd)), home)
    try:
        for i in range(n):
            await engine.submit("echo '[1/2] up'; sleep 300", name=f"w{i}", host="c", workdir=str(tmp))
        await engine.dispatch()
        host = await engine.host("c")
        calls = []
        real = host.run

        async def counted(*a, **kw):
            calls.append(1)
            return await real(*a, **kw)

        host.run = counted
        per_tick, took = [], []
        for _ in range(ticks):
            calls.clear()
            t0 = time.perf_counter()
            await engine.tick_host("c", dispatch_jobs=False)
            took.append(time.perf_counter() - t0)
            per_tick.append(len(calls))
            await asyncio.sleep(0.5)
        running = sum(j.error_message is None for j in await engine.jobs(reconcile=False))
    finally:
        await engine.close()
        cluster.cmd("scancel", "-u", "root")
        wait_idle(cluster)
    return {"jobs": n, "running_in_slurm": running, "round_trips_per_tick": per_tick,
            "tick_ms_median": statistics.median(took) * 1000}


async def end_to_status(cluster: SlurmCluster, tmp: Path, n: int) -> dict:
    home = Path(tempfile.mkdtemp(dir=tmp))
    poll = 1.0
    engine = await Engine.open(parse_config(config(cluster, home / "base", poll)), home)
    seen: dict[int, float] = {}
    q = engine.subscribe()
    try:
        ids = [(await engine.submit(f"sleep {1 + (i % 5) + i / n:.2f}", name=f"l{i}", host="c",
                                    workdir=str(tmp))).id for i in range(n)]

        async def watch():
            while True:
                ev = await q.get()
                if isinstance(ev, JobEvent) and ev.job.status.finished and ev.job.id not in seen:
                    seen[ev.job.id] = time.time()

        watcher = asyncio.create_task(watch())
        await engine.run_forever(until_done=ids)
        await asyncio.sleep(0.1)
        watcher.cancel()
        lat = []
        for i in ids:
            job = await engine.job(i)
            assert job.status == "succeeded", job.error_message
            ended = float(Path(job.job_dir, "finished_at").read_text().replace(",", "."))
            lat.append(seen[i] - ended)
    finally:
        await engine.close()
    return {"jobs": n, "poll_s": poll, "median_s": statistics.median(lat), "max_s": max(lat),
            "median_ticks": statistics.median(lat) / poll, "max_ticks": max(lat) / poll}


async def controller_down(tmp: Path, ticks: int) -> dict:
    cluster = SlurmCluster(tmp / "down")
    cluster.start()
    home = Path(tempfile.mkdtemp(dir=tmp))
    engine = await Engine.open(parse_config(config(cluster, home / "base", 1.0)), home)
    bounded = slurm.SLURM_TIMEOUT

    async def timed() -> float:
        t0 = time.perf_counter()
        await engine.tick_host("c", dispatch_jobs=False)
        return time.perf_counter() - t0

    try:
        ids = [(await engine.submit(cmd, name=f"d{i}", host="c", workdir=str(tmp))).id
               for i, cmd in enumerate(["sleep 90", "sleep 90", "sleep 90; exit 3"])]
        await engine.dispatch()
        healthy = [await timed() for _ in range(ticks)]
        await asyncio.sleep(6)
        cluster.kill_slurmctld()
        down = [await timed() for _ in range(ticks)]
        error = engine.hosts_registry.known("c").last_error
        running = [(await engine.job(i)).status.value for i in ids]
        slurm.SLURM_TIMEOUT = 3600  # the baseline: Slurm's commands as they were, unbounded
        unbounded = [await timed() for _ in range(ticks)]
        slurm.SLURM_TIMEOUT = bounded
        cluster.start_slurmctld()
        await engine.run_forever(until_done=ids)
        ended = [(await engine.job(i)).status.value for i in ids]
    finally:
        slurm.SLURM_TIMEOUT = bounded
        await engine.close()
        cluster.stop()
    return {"healthy_s": healthy, "down_bounded_s": down, "down_unbounded_s": unbounded,
            "error": error, "while_down": running, "after": ended}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--watch-jobs", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--latency-jobs", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--down-ticks", type=int, default=3)
    ap.add_argument("--down-only", action="store_true")
    args = ap.parse_args()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="evs-"))
    os.chmod(tmp, 0o755)
    raw: dict = {"down": await controller_down(tmp, args.down_ticks)}
    down = raw["down"]
    print(f"4. slurmctld down, 3 jobs running, {args.down_ticks} ticks each (load {os.getloadavg()[0]:.2f}):\n"
          f"  healthy tick          {statistics.median(down['healthy_s']):6.2f} s median\n"
          f"  down, bounded ({slurm.SLURM_TIMEOUT} s)  {statistics.median(down['down_bounded_s']):6.2f} s median "
          f"{[round(t, 2) for t in down['down_bounded_s']]}\n"
          f"  baseline, unbounded   {statistics.median(down['down_unbounded_s']):6.2f} s median "
          f"{[round(t, 2) for t in down['down_unbounded_s']]}\n"
          f"  ratio x{statistics.median(down['down_unbounded_s']) / statistics.median(down['down_bounded_s']):.1f}; "
          f"host error: {down['error']!r}; jobs while down {down['while_down']}, after {down['after']}")
    if args.down_only:
        if args.json:
            print(json.dumps(raw))
        return
    cluster = SlurmCluster(tmp / "c")
    cluster.start()
    try:
        raw["evopilot_array"] = await evopilot_submission(cluster, tmp, args.jobs, True)
        raw["evopilot_sbatch_each"] = await evopilot_submission(cluster, tmp, args.jobs, False)
        raw["plain_array"] = plain_submission(cluster, tmp, args.jobs, True)
        raw["plain_sbatch_each"] = plain_submission(cluster, tmp, args.jobs, False)
        raw["round_trips"] = await round_trips(cluster, tmp, args.watch_jobs, args.ticks)
        sshd = SshdServer(tmp / "sshd")
        sshd.start()
        try:
            raw["round_trips_ssh"] = await round_trips(cluster, tmp, args.watch_jobs, args.ticks, sshd)
        finally:
            sshd.close()
        raw["end_to_status"] = await end_to_status(cluster, tmp, args.latency_jobs)
    finally:
        cluster.stop()
    load = os.getloadavg()
    print(f"single-node Slurm 16 CPUs advertised, {os.cpu_count()} cores, load {load[0]:.2f}, "
          f"run {time.perf_counter() - started:.0f} s")
    n = args.jobs
    print(f"\n1. {n} jobs of `true`: submit / until all finished")
    for key, label in (("evopilot_array", "evopilot, one job array"),
                       ("evopilot_sbatch_each", f"evopilot, {n} sbatch (one script)"),
                       ("plain_array", "baseline: plain sbatch --array"),
                       ("plain_sbatch_each", f"baseline: {n} plain sbatch in a loop")):
        r = raw[key]
        print(f"  {label:40s} {r['submit_s'] * 1000:8.0f} ms {r['all_done_s']:8.2f} s")
    a, e = raw["evopilot_array"], raw["evopilot_sbatch_each"]
    print(f"  array vs sbatch each (evopilot): submit x{e['submit_s'] / a['submit_s']:.1f} faster, "
          f"all done x{e['all_done_s'] / a['all_done_s']:.2f}")
    rt = raw["round_trips"]
    print(f"\n2. {rt['jobs']} jobs ({rt['running_in_slurm']} running, the rest pending), round trips "
          f"per tick (target 2):")
    for key, label in (("round_trips", "Slurm here (logs read directly)"),
                       ("round_trips_ssh", "through a login node over SSH")):
        rt = raw[key]
        print(f"  {label:34s} {rt['round_trips_per_tick']}, tick {rt['tick_ms_median']:.0f} ms median")
    lt = raw["end_to_status"]
    print(f"\n3. end to status, {lt['jobs']} jobs, tick {lt['poll_s']:g} s: median {lt['median_s']:.2f} s "
          f"({lt['median_ticks']:.2f} ticks), max {lt['max_s']:.2f} s ({lt['max_ticks']:.2f} ticks; target < 2)")
    if args.json:
        print(json.dumps(raw))


if __name__ == "__main__":
    asyncio.run(main())
