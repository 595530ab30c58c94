"""A warm slot's start, and its end, beside the runner of an earlier commit in the same run.

    .venv/bin/python bench/warm_start.py [--baseline REV] [--jobs N] [--rounds K]

Each runner (``core/jobs/warm_runner.py`` as it is now, and as it was at ``--baseline``) is
started on a FIFO of its own, as ``core.jobs.warm`` starts one, and sent N jobs one after the
other, in K rounds alternating with the other runner. For each job: from the line's write to
the ``started_at`` its wrapper writes (a start), and from the benchmark's last statement to the
wrapper's ``finished_at`` (an end: the job's exit, which the engine cannot see before). The
benchmark does nothing but write the time. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = "import os, time\nopen(os.environ['EVOPILOT_JOB_DIR'] + '/t_end', 'w').write(repr(time.time()))\n"


def run(runner: Path, work: Path, jobs: int) -> tuple[list[float], list[float]]:
    work.mkdir(parents=True)
    fifo = work / "runner.fifo"
    os.mkfifo(fifo, 0o600)
    bench = work / "b.py"
    bench.write_text(BENCH)
    proc = subprocess.Popen([sys.executable, str(runner), str(fifo)], stdin=subprocess.DEVNULL)
    starts, ends = [], []
    try:
        deadline = time.time() + 10
        while True:  # the runner reads its FIFO: a writer can open it
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit(f"{runner}: the runner did not open its FIFO") from None
                time.sleep(0.01)
        time.sleep(0.2)
        for i in range(jobs):
            d = work / f"j{i}"
            d.mkdir()
            spec = {"job_id": i, "job_dir": str(d), "workdir": str(work), "env_dir": sys.prefix,
                    "roots": [str(work)], "argv": [str(bench)], "env": {}, "wake": ""}
            fd = os.open(fifo, os.O_WRONLY)
            sent = time.time()
            os.write(fd, json.dumps(spec).encode() + b"\n")
            os.close(fd)
            while not (d / "exit_code").exists():
                time.sleep(0.0005)
            starts.append(float((d / "started_at").read_text()) - sent)
            ends.append(float((d / "finished_at").read_text()) - float((d / "t_end").read_text()))
            time.sleep(0.01)  # the runner idle again, as between an evaluation's end and the next start
    finally:
        proc.kill()
        proc.wait()
    return starts, ends


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="2bae80a~1", help="the commit whose runner is the baseline")
    ap.add_argument("--jobs", type=int, default=200, help="jobs per runner per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="evp-warmbench-"))
    old = tmp / "warm_runner_baseline.py"
    old.write_bytes(subprocess.run(["git", "show", f"{args.baseline}:core/jobs/warm_runner.py"], cwd=REPO,
                                   check=True, capture_output=True).stdout)
    runners = {"now": REPO / "core" / "jobs" / "warm_runner.py", args.baseline: old}
    got: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in runners}
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for r in range(args.rounds):
        for name, path in runners.items():
            s, e = run(path, tmp / f"{r}-{len(got[name][0])}-{name.replace('~', '_')}", args.jobs)
            got[name][0].extend(s)
            got[name][1].extend(e)

    print(f"{args.rounds} rounds of {args.jobs} jobs each, alternating")
    print(f"{'ms':40s}{'now':>10s}{args.baseline:>14s}{'ratio':>8s}")
    for i, what in enumerate(("start: line to started_at", "end: last statement to finished_at")):
        a, b = got["now"][i], got[args.baseline][i]
        ma, mb = statistics.median(a) * 1000, statistics.median(b) * 1000
        print(f"{what + ', median':40s}{ma:10.3f}{mb:14.3f}{ma / mb:8.2f}")
        print(f"{'  p90':40s}{statistics.quantiles(a, n=10)[-1] * 1000:10.3f}"
              f"{statistics.quantiles(b, n=10)[-1] * 1000:14.3f}")


if __name__ == "__main__":
    main()
