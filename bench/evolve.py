"""Code evolution's loop against the issue's targets, beside OpenEvolve 0.4.0 in the same run.

Run (from the repository root; the peer is optional, in a venv of its own):

    python3 -m venv /tmp/oe-venv && /tmp/oe-venv/bin/pip install openevolve==0.4.0
    .venv/bin/python bench/evolve.py [CASE ...] [--openevolve /tmp/oe-venv/bin/python]

Cases (default: all):

- ``overhead``: 200 iterations, an evaluator that does nothing (the example's fit of 200
  points), the ``llm`` mutator against a stand-in answering at once, 4 slots, 4 answers in
  flight. Per iteration: the gap between consecutive placements (median, mean), CPU.
- ``utilisation``: the same with evaluations of 0.5 s; busy evaluation time / (4 x the run). Once
  on a new project (its environment built in the run), once with the environment built before.
- ``mutator``: evaluations of 0.5 s and answers that take 1 s, with 4 and with 8 in flight, each
  answer one candidate or two (``choices = 2``: one request, the API's ``n``).
- ``growth``: 1,000 iterations as ``overhead``; iterations 901-1,000 beside 1-100.
- ``resume``: ``evopilot evolve start`` of 100 iterations (answers of 1 s, evaluations of
  0.5 s) killed with SIGKILL at 10 random moments, each followed by ``evolve resume``; then
  the candidates beside an uninterrupted run's, evaluations and requests per iteration, and
  the processes of each killed run still alive 2 s after its kill.
- ``repro``: two runs with the same seed and one slot (llm stand-in with 1 and 2 candidates
  per answer, params); their candidate commits.

The stand-in (``--stand-in``, started by the bench in its own process) stands in for a paid
OpenAI-compatible API on 127.0.0.1: it answers each chat completion, after an optional delay,
with a SEARCH/REPLACE edit of one coefficient of the current program (chosen from the request's
seed, or from the prompt when there is none), and logs every request with whether the client
was still there to receive its answer.

An evaluation's time is its evaluator's: for evopilot the job from its start (the ``started_at``
its wrapper writes just before it starts the benchmark process; the process's own start in
``/proc`` is in 10 ms ticks, which made spans up to 10 ms longer and gaps between them shorter)
to the benchmark's end, for OpenEvolve the ``evaluate()`` call; both append their start and end
to a timeline file. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "evolve"
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@bench"]
ISSUE_PEER = {"overhead_ms": 25.0, "inner_ms": 12.0, "utilisation": 0.835, "mutator_utilisation": 0.32}
TARGETS = {"overhead_ms": 25.0, "utilisation": 0.95, "mutator_utilisation": 0.90, "growth": 1.2}


# ---- the stand-in for a paid API -------------------------------------------------------------

_CURRENT = re.compile(r"Current [Pp]rogram[^\n]*\n(?:[^\n`]*\n)?```[a-z]*\n(.*?)```", re.S)
_COEF = re.compile(r"^([A-Z]) = (-?[0-9.e+-]+)$", re.M)


def stand_in_answer(prompt: str, seed: int | None) -> str:
    """One coefficient of the current program scaled by a factor in [0.7, 1.3)."""
    m = _CURRENT.search(prompt)
    coefs = _COEF.findall(m.group(1) if m else prompt)
    rng = random.Random(seed if seed is not None else prompt)
    name, value = coefs[rng.randrange(len(coefs))]
    new = float(value) * rng.uniform(0.7, 1.3) + rng.uniform(-0.01, 0.01)
    return (f"Tune {name}.\n<<<<<<< SEARCH\n{name} = {value}\n=======\n{name} = {new:.6g}\n"
            f">>>>>>> REPLACE\n")


def serve_stand_in(delay: float, log_path: str) -> None:
    log = open(log_path, "a", buffering=1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body are two writes: with Nagle's algorithm the body waited for the
        # client's delayed ACK, ~40 ms per answer on a kept-alive connection (not "at once")
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received = time.time()
            prompt = body["messages"][-1]["content"]
            seed = body.get("seed")
            answers = [stand_in_answer(prompt, seed + i if seed is not None else f"{prompt}{i}")
                       for i in range(body.get("n", 1))]  # one per choice asked for
            if delay:
                time.sleep(delay)
            # a client killed meanwhile has closed its socket: its answer is never delivered
            r, _, _ = select.select([self.connection], [], [], 0)
            gone = bool(r) and self.connection.recv(1, socket.MSG_PEEK) == b""
            with lock:
                log.write(json.dumps({"seed": seed, "received": received, "delivered": not gone}) + "\n")
            if gone:
                self.close_connection = True
                return
            data = json.dumps({
                "id": "stand-in", "object": "chat.completion", "created": int(received),
                "model": body.get("model", "stand-in"),
                "choices": [{"index": i, "message": {"role": "assistant", "content": a},
                             "finish_reason": "stop"} for i, a in enumerate(answers)],
                "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": sum(map(len, answers)) // 4,
                          "total_tokens": (len(prompt) + sum(map(len, answers))) // 4},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed client's socket
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


class StandIn:
    """The stand-in in its own process (it must not share the measured process's CPU time)."""

    def __init__(self, delay: float, log_path: Path) -> None:
        self.log_path = log_path
        self.proc = subprocess.Popen([sys.executable, __file__, "--stand-in", str(delay), str(log_path)],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split()[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


# ---- the evaluator, the same for both ------------------------------------------------------

FIT = '''
N = 200
xs = [math.pi * i / (N - 1) for i in range(N)]
errors = [approx(x) - math.sin(x) for x in xs]
mse = sum(e * e for e in errors) / N
metrics = {"objective": -mse, "bias": sum(errors) / N, "max_error": max(abs(e) for e in errors)}
'''

EVOPILOT_EVAL = '''"""The bench's evaluator: the example's fit, lasting DELAY seconds from the job's start."""
import json, math, os, sys, time
# the job's start as its wrapper wrote it, just before it started this process
with open(os.path.join(os.environ["EVOPILOT_JOB_DIR"], "started_at")) as f:
    T0 = float(f.read())
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from approx import approx
{fit}
time.sleep(max(0.0, T0 + {delay} - time.time()))
with open(os.environ["EVOBENCH_TIMELINE"], "a") as f:
    f.write(f"{{T0}} {{time.time()}}\\n")
with open(os.environ["EVOPILOT_RESULTS"], "w") as f:
    json.dump(metrics, f)
'''

OPENEVOLVE_EVAL = '''"""The bench's evaluator for OpenEvolve: the same fit, lasting DELAY seconds."""
import math, time

def evaluate(program_path):
    t0 = time.time()
    ns = {{}}
    with open(program_path) as f:
        exec(compile(f.read(), program_path, "exec"), ns)
    approx = ns["approx"]
{fit}
    time.sleep(max(0.0, t0 + {delay} - time.time()))
    with open({timeline!r}, "a") as f:
        f.write(f"{{t0}} {{time.time()}}\\n")
    return {{"combined_score": -mse, "bias": metrics["bias"], "max_error": metrics["max_error"]}}
'''


def timeline(path: Path) -> list[tuple[float, float]]:
    if not path.exists():
        return []
    return [tuple(map(float, line.split())) for line in path.read_text().splitlines() if line.strip()]


def turnovers(spans: list[tuple[float, float]]) -> list[float]:
    """For each evaluation's end, the wait until the next evaluation not yet matched starts
    (the time a slot stood empty), skipping ends that no later start follows."""
    starts = sorted(s for s, _ in spans)
    out, i = [], 0
    for end in sorted(e for _, e in spans):
        while i < len(starts) and starts[i] < end:
            i += 1
        if i == len(starts):
            break
        out.append(starts[i] - end)
        i += 1
    return out


def busy_share(spans: list[tuple[float, float]], slots: int, start: float, end: float) -> float:
    return sum(min(e, end) - max(s, start) for s, e in spans if e > start and s < end) / (slots * (end - start))


# ---- evopilot ------------------------------------------------------------------------------


def make_project(dest: Path, delay: float) -> Path:
    """The example as a git repository with the bench's evaluator (the same commits each time)."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    (dest / "benchmarks" / "eval.py").write_text(EVOPILOT_EVAL.format(fit=FIT, delay=delay))
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=dest, check=True)
    dates = {"GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_DATE": "1700000000 +0000"}
    subprocess.run([*GIT, "commit", "-qm", "seed"], cwd=dest, check=True, env={**os.environ, **dates})
    return dest


def experiment_toml(path: Path, *, name: str, url: str | None, iterations: int, parallel: int,
                    in_flight: int, seed: int = 1, choices: int = 1) -> Path:
    # the loop's window (iterations under way) is min(2 x parallel + answers in flight x choices,
    # islands x in_flight per island): with more than 4 candidates mutating, per island enough
    # that the window does not cap them (the default 4 per island, 8 in all, did in earlier runs)
    mutating = in_flight * choices
    per_island = 4 if mutating <= 4 else -(-(2 * parallel + mutating) // 2)
    mutator = (f'kind = "llm"\nbase_url = "{url}"\nmodel = "stand-in"\napi_key_env = ""\nchoices = {choices}\n'
               if url else 'kind = "params"\nchanges = 2\nscale = 0.3\n')
    path.write_text(f'''name = "{name}"
project = "evo-bench"
files = ["approx.py"]
seed = {seed}
notes = "approx(x) should match sin(x) on [0, pi]."
mutations_in_flight = {in_flight}

[evaluation]
stages = [{{ benchmark = "benchmarks/eval.py" }}]
timeout_s = 60
parallel = {parallel}

[descriptors]
metrics = ["bias", "max_error"]
bins = [8, 8]
lower = [-1.0, 0.0]
upper = [1.0, 2.0]

[islands]
count = 2
migration_interval = 10
in_flight = {per_island}

[[mutators]]
{mutator}
[budget]
iterations = {iterations}
''')
    return path


def engine_config(path: Path, slots: int, timeline_path: Path) -> Path:
    path.write_text(f"[hosts.local]\nmax_parallel = {slots}\n"
                    f"env = {{ EVOBENCH_TIMELINE = {json.dumps(str(timeline_path))} }}\n")
    return path


def cpu() -> tuple[float, float]:
    """CPU seconds of this process, and of the children it waited for (git, bash, tmux clients;
    not the jobs, which run under the tmux server)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


class Probe:
    """Timestamps of each iteration's stages, taken by wrapping the loop's methods (bench only)."""

    def __init__(self) -> None:
        from evopilot.core.evolution import loop

        self.marks: dict[int, dict[str, float]] = {}
        self._orig = {}
        cls = loop.EvolutionLoop
        for name, before, after in (("_mutate", "mutate", None), ("_commit", "answered", "committed"),
                                    ("_evaluate", "submitting", "submitted"), ("_apply", None, "placed")):
            self._wrap(cls, name, before, after)

    def _wrap(self, cls, name, before, after) -> None:
        orig = getattr(cls, name, None)
        if orig is None:  # an older loop (bench run against an earlier commit): no such stage
            return
        self._orig[name] = orig
        marks = self.marks

        async def wrapped(this, it, *args):
            # `_mutate` takes a group of iterations (one answer for them all): each is marked
            group = it if isinstance(it, list) else [it]
            if before:
                for g in group:
                    marks.setdefault(g.number, {})[before] = time.time()
            result = await orig(this, it, *args)
            if after:
                for g in group:
                    marks.setdefault(g.number, {})[after] = time.time()
            return result
        setattr(cls, name, wrapped)

    def close(self) -> None:
        from evopilot.core.evolution import loop

        for name, f in self._orig.items():
            setattr(loop.EvolutionLoop, name, f)


async def run_evopilot(work: Path, *, iterations: int, delay: float, answer_delay: float,
                       slots: int = 4, in_flight: int = 4, choices: int = 1, seed: int = 1, llm: bool = True,
                       profile: str | None = None, env_ready: bool = False) -> dict:
    """One experiment run in this process, as `evolve start` runs it (the engine's worker loop
    beside the experiment's loop). ``env_ready``: the benchmark is run once first on the seed's
    commit, as an earlier experiment on the project would have (its environment is built)."""
    from evopilot.core.config import load_config
    from evopilot.core.engine import Engine

    work.mkdir(parents=True)
    tl = work / "timeline"
    root = make_project(work / "evo-bench", delay)
    stand_in = StandIn(answer_delay, work / "requests.jsonl") if llm else None
    home = work / "home"
    os.environ["EVOPILOT_HOME"] = str(home)
    cfg_path = engine_config(work / "evopilot.toml", slots, tl)
    engine = await Engine.open(load_config(cfg_path), home)
    probe = Probe()
    try:
        await engine.add_project(str(root))
        if env_ready:
            (job,) = await engine.submitter.run("evo-bench", ["benchmarks/eval.py"], check=False, commit="HEAD")
            await engine.run_forever(until_done=[job.id])
            done = await engine.job(job.id)
            if done.status != "succeeded":
                raise SystemExit(f"the run building the environment {done.status}: see {done.log_path}")
            tl.unlink()  # its evaluation is not the run's
        exp = experiment_toml(work / "exp.toml", name="bench", url=stand_in.url if stand_in else None,
                              iterations=iterations, parallel=slots, in_flight=in_flight, seed=seed,
                              choices=choices)
        row = await engine.evolution.create(exp, iterations)
        worker = asyncio.create_task(engine.run_forever())
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile(time.process_time)  # CPU, not waiting
            prof.enable()
        c0, t0 = cpu(), time.time()
        state, reason = await engine.evolution.run(row.id, asyncio.Event())
        t1, c1 = time.time(), cpu()
        used = (c1[0] - c0[0], c1[1] - c0[1])
        if prof:
            prof.disable()
            prof.dump_stats(profile)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        assert state == "finished", (state, reason)
        with sqlite3.connect(home / "evopilot.db") as db:
            its = db.execute("SELECT number, status, candidate_hash, last_error FROM evolution_iterations "
                             "WHERE experiment_id = ? ORDER BY number", (row.id,)).fetchall()
            jobs = db.execute("SELECT origin_id, started_at, finished_at FROM jobs WHERE kind = 'evaluation'").fetchall()
        return {"start": t0, "end": t1, "cpu": used, "marks": probe.marks, "iterations": its,
                "timeline": timeline(tl), "requests": stand_in.requests() if stand_in else [],
                "jobs": len(jobs), "home": home}
    finally:
        probe.close()
        await engine.close()
        if stand_in:
            stand_in.close()


def evopilot_figures(r: dict, slots: int) -> dict:
    placed = sorted((n, m["placed"]) for n, m in r["marks"].items() if "placed" in m)
    times = [t for _, t in placed]
    gaps = [b - a for a, b in zip(times, times[1:])]
    tl = sorted(r["timeline"])
    n = len(placed) - 1  # iteration 0 is the seed
    stages = {}
    for key, a, b in (("mutate (prompt + answer)", "mutate", "answered"), ("commit", "answered", "committed"),
                      ("committed -> submitting", "committed", "submitting"),
                      ("submitting (tree, job)", "submitting", "submitted")):
        vals = [m[b] - m[a] for m in r["marks"].values() if a in m and b in m]
        if vals:
            stages[key] = statistics.median(vals) * 1000
    return {
        "iterations": n, "wall_s": r["end"] - r["start"],
        "per_iteration_ms": (times[-1] - times[0]) / n * 1000 if n else 0.0,
        "median_gap_ms": statistics.median(gaps) * 1000 if gaps else 0.0,
        "cpu_per_iteration_ms": sum(r["cpu"]) / max(n, 1) * 1000,
        "cpu_self_ms": r["cpu"][0] / max(n, 1) * 1000, "cpu_children_ms": r["cpu"][1] / max(n, 1) * 1000,
        "utilisation_run": busy_share(tl, slots, r["start"], r["end"]) if tl else 0.0,
        "utilisation_evals": busy_share(tl, slots, tl[0][0], tl[-1][1]) if tl else 0.0,
        "evaluations": len(tl), "stages_ms": stages,
        "turnover_ms": statistics.median(turnovers(tl)) * 1000 if len(tl) > 1 else 0.0,
        "statuses": _count(s for _, s, _, _ in r["iterations"][1:]),
        "errors": _count(e for _, s, _, e in r["iterations"][1:] if s in ("failed", "skipped")),
    }


def _count(items) -> dict:
    out: dict = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


# ---- OpenEvolve (in its own venv) ----------------------------------------------------------


def peer_main(spec: dict) -> None:
    """Run OpenEvolve 0.4.0 once (called under its venv's python) and print the figures."""
    import logging

    from openevolve.config import load_config
    from openevolve.controller import OpenEvolve
    from openevolve.database import ProgramDatabase

    work = Path(spec["work"])
    tl = work / "timeline"
    (work / "evaluator.py").write_text(OPENEVOLVE_EVAL.format(
        fit="\n".join("    " + line for line in FIT.strip().splitlines()), delay=spec["delay"],
        timeline=str(tl)))
    # its defaults, but for the stand-in, 4 workers, 2 islands (as evopilot's runs) and no cascade
    (work / "config.yaml").write_text(f"""max_iterations: {spec["iterations"]}
random_seed: 1
log_level: WARNING
llm:
  api_base: {spec["url"]}
  api_key: none
  models: [{{name: stand-in, weight: 1.0}}]
  timeout: 60
evaluator:
  parallel_evaluations: {spec["slots"]}
  cascade_evaluation: false
database:
  num_islands: 2
  migration_interval: 10
""")
    cfg = load_config(str(work / "config.yaml"))
    added: list[float] = []
    orig_add = ProgramDatabase.add

    def add(self, program, *a, **kw):
        out = orig_add(self, program, *a, **kw)
        added.append(time.time())
        return out
    ProgramDatabase.add = add
    controller = OpenEvolve(initial_program_path=str(EXAMPLE / "approx.py"),
                            evaluation_file=str(work / "evaluator.py"), config=cfg,
                            output_dir=str(work / "out"))
    logging.getLogger().setLevel(logging.WARNING)
    t0 = time.time()
    asyncio.run(controller.run(iterations=spec["iterations"]))
    t1 = time.time()
    print(json.dumps({"start": t0, "end": t1, "added": added, "timeline": timeline(tl)}))


def run_peer(python: str, work: Path, *, iterations: int, delay: float, answer_delay: float,
             slots: int = 4) -> dict | None:
    work.mkdir(parents=True)
    stand_in = StandIn(answer_delay, work / "requests.jsonl")
    try:
        spec = {"work": str(work), "iterations": iterations, "delay": delay, "slots": slots, "url": stand_in.url}
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([python, __file__, "--peer", json.dumps(spec)], capture_output=True, text=True,
                             cwd=work, timeout=1800)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            print(f"OpenEvolve failed: {out.stderr[-2000:]}", file=sys.stderr)
            return None
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["cpu"] = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
        r["requests"] = stand_in.requests()
        return r
    finally:
        stand_in.close()


def peer_figures(r: dict, slots: int) -> dict:
    times = sorted(r["added"])
    gaps = [b - a for a, b in zip(times, times[1:])]
    n = len(times) - 1
    tl = sorted(r["timeline"])
    return {
        "iterations": n, "wall_s": r["end"] - r["start"],
        "per_iteration_ms": (times[-1] - times[0]) / n * 1000 if n else 0.0,
        "median_gap_ms": statistics.median(gaps) * 1000 if gaps else 0.0,
        "cpu_per_iteration_ms": r["cpu"] / max(n, 1) * 1000,
        "utilisation_run": busy_share(tl, slots, r["start"], r["end"]) if tl else 0.0,
        "utilisation_evals": busy_share(tl, slots, tl[0][0], tl[-1][1]) if tl else 0.0,
        "evaluations": len(tl),
        "turnover_ms": statistics.median(turnovers(tl)) * 1000 if len(tl) > 1 else 0.0,
    }


# ---- cases ---------------------------------------------------------------------------------

ROWS = [("wall_s", "run, s", "{:.2f}"), ("per_iteration_ms", "per iteration (first to last placed), ms", "{:.1f}"),
        ("median_gap_ms", "median gap between placements, ms", "{:.1f}"),
        ("cpu_per_iteration_ms", "CPU per iteration, ms", "{:.1f}"),
        ("utilisation_run", "utilisation, whole run", "{:.3f}"),
        ("utilisation_evals", "utilisation, first eval start to last end", "{:.3f}"),
        ("turnover_ms", "median wait of a freed slot, ms", "{:.1f}"),
        ("evaluations", "evaluations", "{}")]


def table(title: str, ours: dict, peer: dict | None) -> None:
    print(f"\n{title}")
    print(f"{'':46}{'evopilot':>12}{'OpenEvolve':>12}")
    for key, label, fmt in ROWS:
        p = fmt.format(peer[key]) if peer else "-"
        print(f"{label:46}{fmt.format(ours[key]):>12}{p:>12}")
    print(f"  evopilot CPU per iteration: {ours['cpu_self_ms']:.1f} ms in its process, "
          f"{ours['cpu_children_ms']:.1f} ms in the git/bash/tmux processes it waited for")
    if ours.get("stages_ms"):
        print("  evopilot stage medians, ms: " + ", ".join(f"{k} {v:.1f}" for k, v in ours["stages_ms"].items()))
    print(f"  evopilot iterations: {ours['statuses']}" + "".join(f"\n    {n} x {e}" for e, n in ours["errors"].items()))


async def case_run(args, tmp: Path, name: str, *, iterations: int, delay: float, answer_delay: float,
                   in_flight: int = 4, choices: int = 1, peer: bool = True,
                   env_ready: bool = False) -> tuple[dict, dict | None]:
    r = await run_evopilot(tmp / f"{name}-evopilot", iterations=iterations, delay=delay,
                           answer_delay=answer_delay, in_flight=in_flight, choices=choices, profile=args.profile,
                           env_ready=env_ready)
    ours = evopilot_figures(r, 4)
    if not (peer and args.openevolve):
        return ours, None
    p = run_peer(args.openevolve, tmp / f"{name}-openevolve", iterations=iterations, delay=delay,
                 answer_delay=answer_delay)
    return ours, peer_figures(p, 4) if p else None


async def case_overhead(args, tmp: Path) -> dict:
    ours, peer = await case_run(args, tmp, "overhead", iterations=args.iterations, delay=0.0, answer_delay=0.0)
    table(f"overhead: {args.iterations} iterations, evaluator that does nothing, answers at once, 4 slots", ours, peer)
    met = ours["per_iteration_ms"] < TARGETS["overhead_ms"]
    print(f"  target: under {TARGETS['overhead_ms']:g} ms per iteration over the run: {'met' if met else 'NOT met'} "
          f"(median gap between placements {ours['median_gap_ms']:.1f} ms)")
    return {"evopilot": ours, "openevolve": peer}


async def case_utilisation(args, tmp: Path) -> dict:
    out = {}
    # a new project's first experiment builds the environment candidates run in (uv sync, ~0.2 s
    # here) while every slot waits: once with it, once with it built before, as by an earlier
    # experiment on the project (OpenEvolve's evaluator runs in an environment the user made)
    for env_ready, name, how in ((False, "utilisation", "a new project"),
                                 (True, "utilisation-env-ready", "its environment built before")):
        ours, peer = await case_run(args, tmp, name, iterations=args.iterations, delay=0.5, answer_delay=0.0,
                                    peer=not env_ready, env_ready=env_ready)
        table(f"utilisation: {args.iterations} iterations, evaluations of 0.5 s, answers at once, 4 slots, {how}",
              ours, peer)
        print(f"  target: >= {TARGETS['utilisation']:.0%}: "
              f"{'met' if ours['utilisation_run'] >= TARGETS['utilisation'] else 'NOT met'}"
              f" (bound with the seed evaluated alone: {(ours['iterations'] + 1) / (ours['iterations'] + 4):.3f})")
        out[name] = {"evopilot": ours, "openevolve": peer}
    return out


async def case_mutator(args, tmp: Path) -> dict:
    out = {}
    for in_flight in args.in_flight:
        for choices in args.choices:
            # OpenEvolve has one answer per worker and one candidate per answer: only beside the
            # 4-in-flight run of single answers
            peer = in_flight == 4 and choices == 1
            ours, theirs = await case_run(args, tmp, f"mutator{in_flight}x{choices}", iterations=args.iterations,
                                          delay=0.5, answer_delay=1.0, in_flight=in_flight, choices=choices,
                                          peer=peer)
            bound = min(1.0, in_flight * choices * 0.5 / 4)
            table(f"mutator: {args.iterations} iterations, evaluations of 0.5 s, answers of 1 s, {in_flight} in "
                  f"flight, {choices} candidate{'s' if choices > 1 else ''} each (`choices`; OpenEvolve: 4 workers, "
                  "each answer then evaluation)", ours, theirs if peer else None)
            print(f"  bound by the answers' rate: {bound:.2f}; target >= {TARGETS['mutator_utilisation']:.0%}: "
                  f"{'met' if ours['utilisation_run'] >= TARGETS['mutator_utilisation'] else 'NOT met'}")
            out[f"{in_flight}x{choices}"] = {"evopilot": ours, "openevolve": theirs if peer else None}
    return out


async def case_growth(args, tmp: Path) -> dict:
    n = args.growth_iterations
    r = await run_evopilot(tmp / "growth-evopilot", iterations=n, delay=0.0, answer_delay=0.0, profile=args.profile)
    placed = {k: m["placed"] for k, m in r["marks"].items() if "placed" in m}
    first, last = placed[100] - placed[1], placed[n] - placed[n - 99]
    ours = {"first_s": first, "last_s": last, "ratio": last / first, **evopilot_figures(r, 4)}
    peer = None
    if args.openevolve:
        p = run_peer(args.openevolve, tmp / "growth-openevolve", iterations=n, delay=0.0, answer_delay=0.0)
        if p:
            t = sorted(p["added"])
            peer = {"first_s": t[100] - t[1], "last_s": t[n] - t[n - 99]}
            peer["ratio"] = peer["last_s"] / peer["first_s"]
    print(f"\ngrowth: {n} iterations as `overhead`; seconds for iterations 1-100 and {n - 99}-{n}")
    print(f"{'':46}{'evopilot':>12}{'OpenEvolve':>12}")
    for key, label in (("first_s", "iterations 1-100, s"), ("last_s", f"iterations {n - 99}-{n}, s"),
                       ("ratio", "ratio")):
        print(f"{label:46}{ours[key]:>12.2f}{(peer[key] if peer else float('nan')):>12.2f}")
    print(f"  target: ratio <= {TARGETS['growth']}: {'met' if ours['ratio'] <= TARGETS['growth'] else 'NOT met'}")
    return {"evopilot": ours, "openevolve": peer}


async def case_repro(args, tmp: Path) -> dict:
    out = {}
    for name, llm, choices in (("llm", True, 1), ("llm-choices-2", True, 2), ("params", False, 1)):
        runs = []
        for k in range(2):
            r = await run_evopilot(tmp / f"repro-{name}-{k}", iterations=30, delay=0.0, answer_delay=0.0,
                                   slots=1, llm=llm, choices=choices)
            runs.append([(n, s, c) for n, s, c, _ in r["iterations"]])
        same = runs[0] == runs[1]
        commits = sum(1 for n, _, c in runs[0] if c and n)
        what = f"llm stand-in mutator, {choices} candidate{'s' if choices > 1 else ''} per answer" if llm \
            else "params mutator"
        print(f"\nrepro ({what}, seed 1, one slot, 30 iterations): "
              f"{commits} candidate commits; identical: {same}")
        out[name] = {"identical": same, "commits": commits}
    return out


# ---- resume: kill -9 at random moments -----------------------------------------------------


def marked_processes(marker: str) -> list[str]:
    """Processes whose environment carries ``marker`` (every process an evopilot run started
    outside tmux inherits it)."""
    found = []
    needle = marker.encode() + b"\0"
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "environ").read_bytes() + b"\0":
                cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{d.name}: {cmdline[:120]}")
        except OSError:
            pass
    return found


def applied(w: Path) -> int:
    try:
        with sqlite3.connect(w / "home" / "evopilot.db") as db:
            return db.execute("SELECT count(*) FROM evolution_iterations WHERE status IN "
                              "('placed', 'skipped', 'failed')").fetchone()[0]
    except sqlite3.Error:
        return 0


def case_resume(args, tmp: Path) -> dict:
    rng = random.Random(args.seed)
    targets = sorted(rng.sample(range(1, 96), 10))
    work = tmp / "resume"
    out = {}
    for label in ("reference", "killed"):
        w = work / label
        w.mkdir(parents=True)
        tl = w / "timeline"
        root = make_project(w / "evo-bench", 0.5)
        stand_in = StandIn(1.0, w / "requests.jsonl")
        env = {**os.environ, "EVOPILOT_HOME": str(w / "home"), "TMUX_TMPDIR": str(w / "tmux")}
        (w / "tmux").mkdir()
        # the tmux server starts here, without the runs' marker, and outlives each run
        subprocess.run(["tmux", "new-session", "-d", "-s", "keep", "sleep 100000"], env=env, check=True)
        cfg = engine_config(w / "evopilot.toml", 4, tl)
        exp = experiment_toml(w / "exp.toml", name="resume", url=stand_in.url, iterations=100, parallel=4,
                              in_flight=4)
        evopilot = [sys.executable, "-m", "evopilot"]
        subprocess.run([*evopilot, "project", "add", str(root), "--config", str(cfg)], env=env, check=True,
                       capture_output=True)
        kills, survivors = [], []
        try:
            t0 = time.time()
            for k in range(11 if label == "killed" else 1):
                cmd = ["evolve", "start", str(exp)] if k == 0 else ["evolve", "resume", "resume"]
                marker = f"EVOBENCH_RUN={label}-{k}"
                name, value = marker.split("=")
                proc = subprocess.Popen([*evopilot, *cmd, "--config", str(cfg), "--json"],
                                        env={**env, name: value}, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                if label == "killed" and k < 10:
                    # a random moment: once a random number of iterations is applied, a random
                    # fraction of a second later (mutating, committing, evaluating or placing)
                    while applied(w) < targets[k] and proc.poll() is None:
                        time.sleep(0.02)
                    time.sleep(rng.uniform(0.0, 1.0))
                    if proc.poll() is not None:
                        raise RuntimeError(f"run {k} ended before its kill: {proc.stderr.read()[-500:]}")
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    kills.append({"target": targets[k], "applied": applied(w)})
                    time.sleep(2.0)
                    survivors.append(marked_processes(marker))
                else:
                    stdout, stderr = proc.communicate(timeout=600)
                    assert proc.returncode == 0, stderr[-2000:]
            wall = time.time() - t0
        finally:
            stand_in.close()
            subprocess.run(["tmux", "kill-server"], env=env, stderr=subprocess.DEVNULL)
        with sqlite3.connect(w / "home" / "evopilot.db") as db:
            its = db.execute("SELECT id, number, status, candidate_hash, last_error, payload, answer IS NOT NULL "
                             "FROM evolution_iterations ORDER BY number").fetchall()
            evals = dict(db.execute("SELECT origin_id, count(*) FROM jobs WHERE kind = 'evaluation' "
                                    "GROUP BY origin_id").fetchall())
        seeds = {json.loads(p).get("seed"): n for _, n, _, _, _, p, _ in its}
        per_it: dict[int, list[dict]] = {}
        for req in stand_in.requests():
            per_it.setdefault(seeds.get(req["seed"]), []).append(req)
        out[label] = {
            "wall_s": wall, "kills": kills, "survivors": survivors,
            "iterations": [(n, s, c) for _, n, s, c, _, _, _ in its],
            "numbers_ok": [n for _, n, *_ in its] == list(range(101)),
            "evaluated_twice": sum(1 for v in evals.values() if v > 1),
            "requests": sum(len(v) for v in per_it.values()),
            "answers_stored": sum(a for *_, a in its),
            "abandoned": sum(1 for v in per_it.values() for r in v if not r["delivered"]),
            "delivered_twice": sum(1 for v in per_it.values() if sum(r["delivered"] for r in v) > 1),
            "lost": [(n, e) for _, n, s, _, e, _, _ in its if s == "failed"],
        }
    ref, killed = out["reference"], out["killed"]
    print("\nresume: `evolve start` of 100 iterations (answers 1 s, evaluations 0.5 s, 4 slots, 4 in flight),"
          " SIGKILL at 10 random moments, `evolve resume` after each")
    for i, (kk, left) in enumerate(zip(killed["kills"], killed["survivors"])):
        print(f"  kill {i + 1}: {kk['applied']} iterations applied; "
              f"processes of the run alive 2 s later: {len(left)}" + "".join(f"\n      {p}" for p in left))
    same = ref["iterations"] == killed["iterations"]
    if not same:
        first = next(i for i, (a, b) in enumerate(zip(ref["iterations"], killed["iterations"])) if a != b)
        print(f"  first difference at iteration {first}: {ref['iterations'][first]} vs {killed['iterations'][first]}")
    print(f"  iterations 0-100 each once: {killed['numbers_ok']}; candidates identical to the uninterrupted "
          f"run's: {same}")
    print(f"  evaluated twice: {killed['evaluated_twice']}; failed iterations: {killed['lost']}")
    print(f"  requests at the stand-in: {killed['requests']} (uninterrupted run: {ref['requests']}); answers "
          f"stored: {killed['answers_stored']}; requests whose client was killed before the answer: "
          f"{killed['abandoned']}; iterations whose answer was delivered twice: {killed['delivered_twice']}")
    print(f"  wall: {killed['wall_s']:.1f} s with the kills (2 s pause after each), {ref['wall_s']:.1f} s without")
    return out


# ---- main ----------------------------------------------------------------------------------

CASES = {"overhead": case_overhead, "utilisation": case_utilisation, "mutator": case_mutator,
         "growth": case_growth, "repro": case_repro}


def int_list(text: str) -> list[int]:
    """A comma-separated list of numbers (an argument)."""
    return [int(x) for x in text.split(",")]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--stand-in":
        serve_stand_in(float(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=[*CASES, "resume"])
    ap.add_argument("--openevolve", metavar="PYTHON", help="a python with openevolve 0.4.0 installed")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--growth-iterations", type=int, default=1000)
    ap.add_argument("--in-flight", type=int_list, default=[4, 8],
                    help="answers in flight in the mutator case (comma-separated)")
    ap.add_argument("--choices", type=int_list, default=[1, 2],
                    help="candidates per answer in the mutator case (the llm mutator's `choices`)")
    ap.add_argument("--seed", type=int, default=7, help="for the kill moments")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the evopilot run(s) into FILE")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID`: where a stuck run is
    sys.path.insert(0, str(REPO))
    tmp = Path(tempfile.mkdtemp(prefix="evp-evobench-"))
    os.environ["TMUX_TMPDIR"] = str(tmp)  # a private tmux server
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"peer: {'OpenEvolve via ' + args.openevolve if args.openevolve else 'none (the issue figures)'}")
    results = {}
    try:
        for case in args.cases:
            if case == "resume":
                results[case] = case_resume(args, tmp)
            else:
                results[case] = asyncio.run(CASES[case](args, tmp))
    finally:
        subprocess.run(["tmux", "kill-server"], stderr=subprocess.DEVNULL)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
