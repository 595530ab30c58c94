"""Kill drill: `kill -9` the worker again and again while it dispatches; no job may be lost or run twice.

Run: python3 bench/kill_drill.py [--jobs 300] [--slots 20] [--seconds 1] [--kills 40]
                                 [--min-interval 0.3] [--max-interval 1.2] [--json]

Queues ``--jobs`` jobs of ``sleep --seconds`` (each first appends its id to a ledger file), then
``--kills`` times starts `evopilot worker` and SIGKILLs it after a random interval, then runs
`evopilot worker --until-idle` to the end. Prints the jobs by final status, the jobs lost, the
jobs run twice (ids twice in the ledger) and the succeeded jobs that never ran (targets: 0, 0, 0).
Everything runs under a fresh data directory and a private tmux server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evopilot.core.config import parse_config  # noqa: E402
from evopilot.core.engine import Engine  # noqa: E402
from evopilot.core.quoting import quote  # noqa: E402


async def queue(cfg_text: str, home: Path, n: int, command: str) -> None:
    engine = await Engine.open(parse_config(cfg_text), home)
    try:
        for _ in range(n):
            await engine.submit(command, name="drill")
    finally:
        await engine.close()


def drill(a: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="evp-drill-"))
    home, ledger, cfg = work / "home", work / "ledger", work / "c.toml"
    cfg_text = f"[hosts.local]\nmax_parallel = {a.slots}\n"
    cfg.write_text(cfg_text)
    env = {**os.environ, "EVOPILOT_HOME": str(home), "TMUX_TMPDIR": str(work)}
    env.pop("TMUX", None)
    os.environ.update(TMUX_TMPDIR=str(work))  # the queueing engine talks to the same server
    os.environ.pop("TMUX", None)
    command = f"printf '%s\\n' \"$EVOPILOT_JOB_ID\" >> {quote(str(ledger))}; sleep {a.seconds:g}"
    asyncio.run(queue(cfg_text, home, a.jobs, command))
    worker = [sys.executable, "-m", "evopilot", "worker", "--config", str(cfg)]
    rng = random.Random(a.seed)
    t0 = time.perf_counter()
    try:
        for _ in range(a.kills):
            p = subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(a.min_interval, a.max_interval))
            p.kill()
            p.wait()
        subprocess.run([*worker, "--until-idle"], env=env, stdout=subprocess.DEVNULL, check=True,
                       timeout=a.jobs * a.seconds + 600)
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, stderr=subprocess.DEVNULL)
    total = time.perf_counter() - t0
    db = sqlite3.connect(home / "evopilot.db")
    rows = db.execute("SELECT id, status, error_message FROM jobs").fetchall()
    db.close()
    runs = collections.Counter(int(w) for w in ledger.read_text().split()) if ledger.exists() else {}
    statuses = collections.Counter(status for _, status, _ in rows)
    return {
        "jobs": len(rows), "statuses": dict(statuses), "total_s": round(total, 1),
        "lost": statuses.get("lost", 0),
        "run_twice": sum(1 for c in runs.values() if c > 1),
        "succeeded_never_ran": sum(1 for i, s, _ in rows if s == "succeeded" and i not in runs),
        "errors": sorted({e for _, s, e in rows if s != "succeeded" and e})[:5],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--slots", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--min-interval", type=float, default=0.3)
    ap.add_argument("--max-interval", type=float, default=1.2)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    a = ap.parse_args()
    r = drill(a)
    if a.json:
        print(json.dumps(r))
        return
    print(f"{a.jobs} jobs of `sleep {a.seconds:g}` with {a.slots} slots; worker killed -9 {a.kills} "
          f"times at {a.min_interval:g}-{a.max_interval:g} s, then `worker --until-idle`; {r['total_s']} s")
    print(f"statuses: {r['statuses']}")
    print(f"jobs lost: {r['lost']} (target 0)")
    print(f"jobs run twice: {r['run_twice']} (target 0)")
    print(f"succeeded but never ran: {r['succeeded_never_ran']} (target 0)")
    for e in r["errors"]:
        print(f"  error: {e}")


if __name__ == "__main__":
    main()
