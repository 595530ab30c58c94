"""`evopilot task ...` and `evopilot sweep ...`: tasks and coding-agent attempts from the command line
(the same API as the Tasks tab: ``engine.tasks``)."""

from __future__ import annotations

import json
import os
import sys

from typing import TYPE_CHECKING

from evopilot.core.errors import EvopilotError
from evopilot.core.status import TASK_STATUSES

if TYPE_CHECKING:  # the CLI builds its parser without loading the engine (start-up time)
    from evopilot.core.engine import Engine

TASK_EPILOG = """\
An attempt is a git worktree on a branch evopilot/<task>-<slug> made from the target branch
(the project's current branch, or [tasks] target_branch), where an agent from [agents.NAME]
runs as a job in tmux with the task as its prompt. When it ends, what it left uncommitted is
committed on its branch, the diff is measured, the test command ([tasks] test_command) runs as a
job, and the task moves to inreview. Agents keep running when evopilot exits.
"""


def register(sub, add) -> None:
    task = sub.add_parser("task", help="tasks and coding-agent attempts (worktrees, agents, review, merge)",
                          description=TASK_EPILOG).add_subparsers(dest="sub", metavar="ACTION", required=True)
    sp = add("add", cmd_add, "add a task to a project's board (status todo)", task)
    sp.add_argument("project")
    sp.add_argument("title")
    sp.add_argument("--description", metavar="TEXT", help="more of the prompt, after the title")
    sp = add("list", cmd_list, "list tasks with their attempts (reconciles finished agents first)", task)
    sp.add_argument("--project")
    sp = add("start", cmd_start, "start an attempt: worktree + branch, setup script, then the agent as a job", task)
    sp.add_argument("task", type=int, metavar="TASK")
    sp.add_argument("--agent", required=True, metavar="A", help="an [agents.NAME] of the config")
    sp.add_argument("--host", default="local", metavar="H", help="where the agent runs (default local); on an SSH host it works in a clone of the branch "
                         "there, and its commits come back when it ends")
    sp.add_argument("--wait", action="store_true",
                    help="stay until the agent and its tests end; exit 1 unless the attempt is ready with tests passed "
                         "(or no test command)")
    sp = add("followup", cmd_followup, "type a prompt into the attempt's live terminal session, or start a new "
             "session in its worktree", task)
    sp.add_argument("attempt", type=int, metavar="ATTEMPT")
    sp.add_argument("prompt", metavar="PROMPT")
    sp = add("attach", cmd_attach, "show the attempt's agent session on this terminal (detach with C-b d)", task)
    sp.add_argument("attempt", type=int, metavar="ATTEMPT")
    sp.add_argument("--print", action="store_true", help="only print the command")
    sp = add("diff", cmd_diff, "print the attempt's changes against the commit it started from", task)
    sp.add_argument("attempt", type=int, metavar="ATTEMPT")
    sp = add("test", cmd_test, "run the test command in the attempt's worktree again (a job)", task)
    sp.add_argument("attempt", type=int, metavar="ATTEMPT")
    sp.add_argument("--wait", action="store_true", help="stay until it ends; exit 1 if the tests fail")
    sp = add("merge", cmd_merge, "merge the attempt's branch into its target branch; on a conflict nothing "
             "changes and the files are listed (exit 1)", task)
    sp.add_argument("attempt", type=int, metavar="ATTEMPT")
    sp = add("archive", cmd_archive, "run the cleanup script and remove the attempt's worktree (its branch stays)",
             task)
    sp.add_argument("attempt", type=int, metavar="ATTEMPT")
    sp.add_argument("--force", action="store_true", help="delete uncommitted work in the worktree too")
    sp = add("move", cmd_move, "move a task to another column: " + ", ".join(TASK_STATUSES), task)
    sp.add_argument("task", type=int, metavar="TASK")
    sp.add_argument("status", metavar="STATUS")

    # `sweep TASK --agents ...` and `sweep status SWEEP`: one parser, told apart by the first word
    sweep = add("sweep", cmd_sweep, "start a matrix of attempts at a task, the champion chosen by tests passed, "
                "then fewest lines changed, lowest cost, shortest time; `sweep status SWEEP` shows one")
    sweep.add_argument("target", metavar="TASK|status", help="the task to sweep, or `status`")
    sweep.add_argument("sweep", nargs="?", type=int, metavar="SWEEP", help="with `status`: the sweep")
    sweep.add_argument("--agents", metavar="A,B", help="agents to run (each with every parameter combination)")
    sweep.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2",
                       help="a parameter's values, filling {NAME} in the agents' commands (repeatable)")
    sweep.add_argument("--max-parallel", type=int, metavar="N", help="agents running at once (default: no cap)")
    sweep.add_argument("--time-budget", type=float, metavar="S", help="stop every agent of the sweep after S seconds")


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _attempt_line(a: dict) -> str:
    tests = {True: "passed", False: "FAILED", None: "-"}[a["tests_passed"]]
    lines = "-" if a["lines_changed"] is None else f"+{a['lines_added']}/-{a['lines_removed']}"
    extra = a["stop_reason"] or a["error_message"] or ""
    return (f"    attempt {a['id']:<4} {a['state']:<8} {a['agent']:<10} {a['branch']}  tests {tests}  "
            f"lines {lines}  ${a['cost_usd']:.2f}{'  archived' if a['archived'] else ''}"
            f"{'  ' + extra if extra else ''}")


async def cmd_add(engine: Engine, args) -> int:
    t = await engine.tasks.add(args.project, args.title, args.description)
    if args.json:
        _print_json({"id": t.id, "title": t.title, "status": t.status, "project": t.project})
    else:
        print(f"task {t.id} added to {t.project} (todo)")
    return 0


async def cmd_list(engine: Engine, args) -> int:
    board = await engine.tasks.board(args.project)
    if args.json:
        _print_json(board)
        return 0
    if not board:
        print("no tasks: add one with `evopilot task add PROJECT TITLE`")
    for t in board:
        print(f"{t['id']:>4}  {t['status']:<10} {t['project']}: {t['title']}")
        for a in t["attempts"]:
            print(_attempt_line(a))
    return 0


async def cmd_start(engine: Engine, args) -> int:
    a = await engine.tasks.start(args.task, args.agent, args.host)
    jobs = await engine.tasks.attempt_jobs(a.id)
    if not args.wait:
        if args.json:
            _print_json((await engine.tasks.attempt(a.id)))
        else:
            print(f"attempt {a.id} of task {a.task_id}: {a.agent} in {a.worktree_path} on {a.branch} "
                  f"(jobs {', '.join(map(str, jobs))})")
        return 0
    if not args.json:
        print(f"attempt {a.id}: {a.agent} on {a.branch}, waiting", flush=True)
    detail = await _wait_attempt(engine, a.id)
    if args.json:
        _print_json(detail)
    else:
        print(_attempt_line(detail).strip())
    return 0 if detail["state"] == "ready" and detail["tests_passed"] is not False else 1


async def _wait_attempt(engine: Engine, attempt_id: int) -> dict:
    """Run the engine until the attempt's agent and tests have ended."""
    while True:
        jobs = await engine.tasks.attempt_jobs(attempt_id)
        await engine.run_forever(until_done=jobs)
        await engine.tasks.reconcile()
        detail = await engine.tasks.attempt(attempt_id)
        if detail["state"] not in ("starting", "running", "testing"):
            return detail


async def cmd_followup(engine: Engine, args) -> int:
    out = await engine.tasks.followup(args.attempt, args.prompt)
    if args.json:
        _print_json(out)
    elif out["typed"]:
        print(f"attempt {args.attempt}: typed into its live session (job {out['job']})")
    else:
        print(f"attempt {args.attempt}: new agent session, job {out['job']}")
    return 0


async def cmd_attach(engine: Engine, args) -> int:
    from evopilot.tui.cli import show_attach  # the module that loaded this one

    return show_attach(await engine.tasks.attach_command(args.attempt, inside_tmux=bool(os.environ.get("TMUX"))),
                       args)


async def cmd_diff(engine: Engine, args) -> int:
    out = sys.stdout.buffer
    async for chunk in await engine.tasks.diff(args.attempt):
        out.write(chunk)
    out.flush()
    return 0


async def cmd_test(engine: Engine, args) -> int:
    job = await engine.tasks.test(args.attempt)
    if args.wait:
        await _wait_attempt(engine, args.attempt)
    detail = await engine.tasks.attempt(args.attempt)
    if args.json:
        _print_json({"attempt": args.attempt, "job": job.id, "tests_passed": detail["tests_passed"]})
    elif args.wait:
        print(f"attempt {args.attempt}: tests {'passed' if detail['tests_passed'] else 'FAILED'} (job {job.id})")
    else:
        print(f"attempt {args.attempt}: tests queued as job {job.id}")
    return 1 if args.wait and not detail["tests_passed"] else 0


async def cmd_merge(engine: Engine, args) -> int:
    out = await engine.tasks.merge(args.attempt)
    if args.json:
        _print_json(out)
    elif out["merged"]:
        print(f"attempt {args.attempt} merged into {out['target_branch']} ({out['commit'][:12]})")
    else:
        print(f"attempt {args.attempt}: conflict merging into {out['target_branch']}; nothing changed. "
              f"Conflicting files:", file=sys.stderr)
        for f in out["conflicts"]:
            print(f"  {f}", file=sys.stderr)
    return 0 if out["merged"] else 1


async def cmd_archive(engine: Engine, args) -> int:
    a = await engine.tasks.archive(args.attempt, force=args.force)
    if args.json:
        _print_json(await engine.tasks.attempt(a.id))
    else:
        print(f"attempt {a.id} archived: worktree removed, branch {a.branch} kept")
    return 0


async def cmd_move(engine: Engine, args) -> int:
    t = await engine.tasks.move(args.task, args.status)
    if args.json:
        _print_json({"id": t.id, "title": t.title, "status": t.status})
    else:
        print(f"task {t.id}: {t.status}")
    return 0


async def cmd_sweep(engine: Engine, args) -> int:
    if args.target == "status":
        if args.sweep is None:
            raise EvopilotError("sweep status needs a SWEEP id")
        return await _sweep_status(engine, args.sweep, args.json)
    if args.sweep is not None:
        raise EvopilotError(f"sweep {args.target}: unexpected argument {args.sweep}")
    if not args.target.isdigit():
        raise EvopilotError(f"sweep {args.target!r}: expected a TASK id or `status SWEEP`")
    if not args.agents:
        raise EvopilotError("sweep TASK needs --agents A,B")
    s = await engine.tasks.sweep(int(args.target), [a.strip() for a in args.agents.split(",") if a.strip()],
                                 args.param, max_parallel=args.max_parallel, time_budget=args.time_budget)
    if args.json:
        return await _sweep_status(engine, s.id, True)
    cells = len((await engine.tasks.sweep_status(s.id, reconcile=False))["rows"])
    print(f"sweep {s.id} of task {s.task_id}: {cells} attempts started; see `evopilot sweep status {s.id}`")
    return 0


async def _sweep_status(engine: Engine, sweep_id: int, as_json: bool) -> int:
    st = await engine.tasks.sweep_status(sweep_id)
    if as_json:
        _print_json(st)
        return 0
    print(f"sweep {st['id']} of task {st['task_id']}: {st['state']}"
          + (f" ({st['error_message']})" if st["error_message"] else ""))
    header = ["", "ATTEMPT", "AGENT", "PARAMS", "STATE", "TESTS", "LINES", "TOKENS", "COST", "SECONDS"]
    rows = [["*" if r["champion"] else "", r["attempt"], r["agent"],
             ",".join(f"{k}={v}" for k, v in r["params"].items()) or "-", r["state"],
             {True: "passed", False: "FAILED", None: "-"}[r["tests_passed"]],
             "-" if r["lines_changed"] is None else r["lines_changed"], r["tokens"], f"${r['cost_usd']:.2f}",
             f"{r['seconds']:.1f}"] for r in st["rows"]]
    from evopilot.core import formatting

    for line in formatting.table(rows, header):
        print(line)
    print(f"champion: attempt {st['champion']}" if st["champion"] else "champion: none yet")
    return 0
