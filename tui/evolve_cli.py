"""`evopilot evolve ...`: code evolution from the command line (the same views as the Archive tab)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI builds its parser without loading the engine (start-up time)
    from evopilot.core.engine import Engine

EVOLVE_EPILOG = """\
An experiment is a TOML file (see examples/evolve/experiment.toml). Starting the same file
again resumes the same experiment. Candidates are commits under refs/evopilot/exp-ID/N in the
project's repository; `evolve best EXP --branch NAME` makes a branch at the best one.
"""


def register(sub, add) -> None:
    evolve = sub.add_parser("evolve", help="code evolution: experiments, candidates, archives",
                            description=EVOLVE_EPILOG).add_subparsers(dest="sub", metavar="ACTION", required=True)
    sp = add("start", cmd_start, "start (or resume) the experiment of a file; runs in the foreground "
             "with a progress line until it ends (Ctrl-C stops it resumably)", evolve)
    sp.add_argument("file")
    sp.add_argument("--iterations", type=int, metavar="N", help="iterations to run (default: budget.iterations)")
    sp.add_argument("--detach", action="store_true", help="leave it to a worker (`evopilot worker`) or the app")
    sp = add("resume", cmd_resume, "resume a stopped or interrupted experiment in the foreground", evolve)
    sp.add_argument("experiment", metavar="EXP", help="id or name")
    sp = add("stop", cmd_stop, "stop a running experiment (its evaluations finish; resume continues)", evolve)
    sp.add_argument("experiment", metavar="EXP")
    add("list", cmd_list, "list experiments", evolve)
    sp = add("status", cmd_status, "an experiment's progress, best, coverage, QD score and spend", evolve)
    sp.add_argument("experiment", metavar="EXP")
    sp = add("show", cmd_show, "a candidate: metrics, parent, island, diff, prompt and answer", evolve)
    sp.add_argument("commit", help="a candidate's commit (4+ hex digits)")
    sp = add("best", cmd_best, "the best candidate; --branch makes a branch at it", evolve)
    sp.add_argument("experiment", metavar="EXP")
    sp.add_argument("--branch", metavar="NAME")
    sp.add_argument("--force", action="store_true", help="move the branch if it exists")
    sp = add("archive", cmd_archive, "an island's archive as a grid (the Archive tab's heatmap as text)", evolve)
    sp.add_argument("experiment", metavar="EXP")
    sp.add_argument("--island", type=int, default=0, metavar="N")
    sp = add("export", cmd_export, "every candidate with its metrics", evolve)
    sp.add_argument("experiment", metavar="EXP")
    sp.add_argument("--format", choices=["csv", "json"], default="json")


async def demo(engine: Engine, args) -> int:
    """`evopilot demo --evolve`: the evolution example, in its own repository, in the foreground."""
    from evopilot.core import locations
    from evopilot.core.errors import EvopilotError

    dest = engine.home / "examples" / "evolve-demo"
    exp = await engine.evolution.demo_repository(locations.bundled_evolve_example(), dest)
    try:
        await engine.project("evolve-demo")
    except EvopilotError:
        await engine.add_project(dest, "evolve-demo")
    row = await engine.evolution.create(exp)
    print(f"evolving {dest}/approx.py to fit sin(x) (experiment {row.id}, {row.iterations_planned} "
          f"iterations, 2 evaluations at once); candidates are commits there under refs/evopilot/",
          flush=True)
    code = await _foreground(engine, row.id, args.json)
    print(f"\nsee `evopilot evolve status {row.id}`, `evopilot evolve export {row.id}`, or the Archive tab "
          f"of `evopilot`")
    return code


async def cmd_start(engine: Engine, args) -> int:
    row = await engine.evolution.create(args.file, args.iterations)
    if args.detach:
        row = await engine.evolution.detach(row.id)
        if args.json:
            print(json.dumps(await engine.evolution.status(row.id)))
        else:
            print(f"experiment {row.id} ({row.name}) detached: a worker (`evopilot worker`) or the app runs it")
        return 0
    return await _foreground(engine, row.id, args.json)


async def cmd_resume(engine: Engine, args) -> int:
    return await _foreground(engine, args.experiment, args.json)


async def _foreground(engine: Engine, ref, as_json: bool) -> int:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    status = await engine.evolution.status(ref, brief=True)
    tty = sys.stderr.isatty() and not as_json

    def progress(info: dict) -> None:
        if tty:
            best = "-" if info["best"] is None else f"{info['best']:g}"
            print(f"\r[{max(0, info['applied'] - 1)}/{status['iterations_planned']}] best {best}  "
                  f"coverage {info['coverage']:.0%}  spent ${info['dollars']:.2f}  "
                  f"mutating {info['mutating']}  evaluating {info['evaluating']}   ",
                  end="", file=sys.stderr, flush=True)

    worker = asyncio.create_task(engine.run_forever())
    try:
        state, reason = await engine.evolution.run(status["id"], stop, progress)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
        if tty:
            print(file=sys.stderr)
    final = await engine.evolution.status(status["id"])
    if as_json:
        print(json.dumps(final))
    else:
        print(_status_text(final))
    return {"finished": 0, "stopped": 130 if stop.is_set() else 0}.get(state, 1)


async def cmd_stop(engine: Engine, args) -> int:
    row = await engine.evolution.stop(args.experiment)
    if args.json:
        print(json.dumps(await engine.evolution.status(row.id, brief=True)))
    else:
        print(f"experiment {row.id} ({row.name}) {row.state}")
    return 0


async def cmd_list(engine: Engine, args) -> int:
    rows = await engine.evolution.list()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no experiments: start one with `evopilot evolve start FILE`")
    else:
        for r in rows:
            print(f"{r['id']:>4}  {r['name']:<24} {r['state']:<9} {r['iterations_done']}/{r['iterations_planned']}")
    return 0


async def cmd_status(engine: Engine, args) -> int:
    st = await engine.evolution.status(args.experiment)
    print(json.dumps(st, indent=2) if args.json else _status_text(st))
    return 0


def _status_text(st: dict) -> str:
    best = st["best"]
    lines = [
        f"experiment {st['id']} ({st['name']}): {st['state']}"
        + (f" — {st['stop_reason']}" if st.get("stop_reason") else ""),
        f"  iterations  {st['iterations_done']}/{st['iterations_planned']}"
        f"  ({', '.join(f'{k} {v}' for k, v in sorted(st['counts'].items())) or 'none yet'})",
        "  best        " + (f"{st['objective']} {best['objective']:g} at {best['commit'][:12]} "
                             f"(iteration {best['iteration']})" if best else "-")
        + (f"; the seed program: {st['seed_objective']:g}" if st.get("seed_objective") is not None else ""),
        f"  coverage    {st['coverage']:.1%}   QD score {st['qd_score']:g}",
        f"  spend       ${st['dollars']:.4f}"
        + "".join(f"\n    {s['provider']}/{s['model']}: ${s['dollars'] or 0:.4f}, {s['requests']} requests, "
                  f"{s['tokens_in']} in / {s['tokens_out']} out tokens" for s in st["spend"]),
    ]
    return "\n".join(lines)


async def cmd_show(engine: Engine, args) -> int:
    c = await engine.evolution.show(args.commit)
    if args.json:
        print(json.dumps(c, indent=2))
        return 0
    print(f"commit {c['commit']}  ({c['experiment']}, iteration {c['iteration']}, island {c['island']})")
    print(f"parent {c['parent'] or '-'}  mutator {c['mutator'] or '-'}  cost ${c['cost']:.4f}")
    print(f"objective {c['objective'] if c['objective'] is not None else '-'}  {c['summary'] or ''}")
    for m in c["metrics"]:
        print(f"  {m['name']} = {m['value']:g}{' ' + m['unit'] if m['unit'] else ''}")
    for title, text in (("diff", c["diff"]), ("prompt", c["prompt"]), ("answer", c["answer"])):
        if text:
            print(f"\n--- {title} ---\n{text.rstrip()}")
    return 0


async def cmd_best(engine: Engine, args) -> int:
    best = await engine.evolution.best(args.experiment, args.branch, force=args.force)
    if args.json:
        print(json.dumps(best))
    else:
        print(f"best: {best['objective']:g} at {best['commit']} (iteration {best['iteration']})"
              + (f"; branch {best['branch']} made" if best.get("branch") else ""))
    return 0


async def cmd_archive(engine: Engine, args) -> int:
    from evopilot.core import formatting

    view = await engine.evolution.cells(args.experiment, args.island)
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"island {view['island']} of 0..{view['islands'] - 1}: {len(view['cells'])} elites, "
          f"{view['objective']} ({'higher' if view['maximize'] else 'lower'} is better)")
    grid = formatting.project(view, formatting.axis_pairs(len(view["descriptors"]))[0])
    if grid is None:
        print("no archive yet (the warm-up freezes the grid's bounds first)")
        return 0
    for y in reversed(range(grid.height)):  # x across, y up; a cell shows the best behind it
        cells = [grid.cells.get((x, y)) for x in range(grid.width)]
        print("|" + "".join("  " if c is None else formatting.RAMP[grid.level(c.objective)] * 2
                                for c in cells) + "|")
    axes = [grid.x] + ([grid.y] if grid.y else [])
    objectives = [c.objective for c in grid.cells.values()]
    print("   ".join(f"{n}: {a.name} {a.lower:g}..{a.upper:g}" for n, a in zip("xy", axes))
          + f"   {formatting.RAMP[0]} worst .. {formatting.RAMP[-1]} best "
            f"({min(objectives):g} .. {max(objectives):g})")
    return 0


async def cmd_export(engine: Engine, args) -> int:
    rows = await engine.evolution.export(args.experiment)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    names = sorted({k for r in rows for k in r["metrics"]})
    import csv

    w = csv.writer(sys.stdout)
    cols = ["commit", "parent", "iteration", "island", "status", "objective", "mutator", "cost", "summary"]
    w.writerow(cols + names)
    for r in rows:
        w.writerow([r[c] for c in cols] + [r["metrics"].get(n, "") for n in names])
    return 0
