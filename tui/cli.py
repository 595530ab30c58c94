"""The command line: headless commands print text (or JSON with --json); no command opens the app.

Textual is imported only when the app is opened, so scripts and cron jobs start fast.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from typing import TYPE_CHECKING

from evopilot.core import locations
from evopilot.core.errors import EvopilotError
from evopilot.core.status import JobStatus, check_status

if TYPE_CHECKING:
    from evopilot.core.engine import Engine

# Start-up time: the engine, the config models (pydantic), asyncio, the events and the
# formatting are imported by the commands that use them; `jobs --json` often needs none of them (core/jobs/listing.py).


# ---- output helpers -----------------------------------------------------------------------


def _print_json(data) -> None:
    """A list has one element per line; an object is indented on a terminal and on one line
    for a program. json's C encoder does not indent: `jobs --json` on thousands of jobs, or
    `deps --json` on a large package, would spend most of their time in the Python one."""
    if isinstance(data, list) and data:
        encode = json.JSONEncoder(default=str).encode  # one encoder for every element
        print("[\n" + ",\n".join(map(encode, data)) + "\n]")
    else:
        print(json.dumps(data, indent=2 if sys.stdout.isatty() else None, default=str))


def _table(rows: list[list], header: list[str]) -> None:
    from evopilot.core import formatting

    for line in formatting.table(rows, header, width=_terminal_width()):
        print(line)


def _terminal_width() -> int | None:
    """The width to fit tables to: $COLUMNS, else the terminal's; None when stdout is not a
    terminal (a pipe gets whole values)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else None
    except (OSError, ValueError):
        return None


# ---- commands -----------------------------------------------------------------------------


async def cmd_init(engine: Engine, args) -> int:
    given = getattr(args, "config", None)
    target = Path(given).expanduser() if given else locations.user_config_file()
    example = locations.example_config()
    if target.exists():
        print(f"config: {target} (exists, left as it is)")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
        os.chmod(target, 0o600)
        print(f"config: {target} (written)")
    print(f"database: {locations.db_path(engine.home)}")
    return 0


def _toml_value(v) -> str:
    from evopilot.core.config import dotted_key

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string with ASCII escapes is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        items = ", ".join(f"{dotted_key((k,))} = {_toml_value(x)}" for k, x in v.items())
        return f"{{ {items} }}" if v else "{}"
    return repr(v)  # int or float (repr gives inf/nan as TOML spells them)


def cmd_config_show(args) -> int:
    """Print the merged config; runs without an engine, so it never creates a database."""
    from evopilot.core.config import dotted_key, load_config

    config = load_config(getattr(args, "config", None))
    settings = config.settings()
    if args.json:
        _print_json({"sources": [str(p) for p in config.sources],
                     "values": {s.key: {"value": s.value, "source": str(s.source) if s.source else "default"}
                                for s in settings}})
        return 0
    print("# files merged, each over the ones before it:" if config.sources else "# no config file: defaults only")
    for path in config.sources:
        print(f"#   {path}")
    table = None
    for s in settings:
        if s.path[:-1] != table:
            table = s.path[:-1]
            print(f"\n[{dotted_key(table)}]")
        key = dotted_key(s.path[-1:])
        # TOML has no null: an unset value is shown commented out
        line = f"# {key} is not set" if s.value is None else f"{key} = {_toml_value(s.value)}"
        print(f"{line:<40}  # {s.source or 'default'}")
    return 0


async def cmd_project_add(engine: Engine, args) -> int:
    project, benches = await engine.add_project(args.path, args.name, args.python, force=args.force)
    if args.json:
        _print_json({"project": project.model_dump(), "benchmarks": [b.model_dump() for b in benches]})
    else:
        print(f"added project {project.name} ({project.path}), python {project.python_version}, "
              f"{len(benches)} benchmark(s): {', '.join(b.path for b in benches) or 'none found'}")
    return 0


async def cmd_project_list(engine: Engine, args) -> int:
    projects = await engine.list_projects()
    if args.json:
        _print_json([p.model_dump() for p in projects])
    elif not projects:
        print("no projects: add one with `evopilot project add PATH`")
    else:
        benches = await engine.list_benchmarks()
        counts = {p.id: sum(b.project_id == p.id for b in benches) for p in projects}
        _table([[p.name, p.python_version, counts[p.id], p.path] for p in projects],
               ["NAME", "PYTHON", "BENCHMARKS", "PATH"])
    return 0


async def cmd_project_rm(engine: Engine, args) -> int:
    await engine.remove_project(args.name)
    if not args.json:
        print(f"removed project {args.name} (its jobs are kept)")
    return 0


async def cmd_bench_add(engine: Engine, args) -> int:
    added = await engine.add_benchmarks(args.project, args.files)
    if args.json:
        _print_json([b.model_dump() for b in added])
    else:
        for b in added:
            print(f"added benchmark {b.path}")
    return 0


async def cmd_bench_rm(engine: Engine, args) -> int:
    bench = await engine.remove_benchmark(args.project, args.benchmark)
    if args.json:
        _print_json(bench.model_dump())
    else:
        print(f"removed benchmark {bench.path} from {args.project} (its jobs are kept)")
    return 0


async def cmd_clean(engine: Engine, args) -> int:
    report = await engine.clean(older_than=args.older_than, statuses=args.status)
    if args.json:
        _print_json(report.public())
        return 0
    if not report.jobs:
        print("nothing to clean")
    else:
        print(f"removed {len(report.jobs)} finished job(s), {report.directories} job director"
              f"{'y' if report.directories == 1 else 'ies'} and {report.logs} log cop"
              f"{'y' if report.logs == 1 else 'ies'}: {_size(report.bytes)} freed")
    for job_id, reason in report.kept.items():
        print(f"kept job {job_id}: {reason}")
    return 0


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


async def cmd_bench_list(engine: Engine, args) -> int:
    benches = await engine.list_benchmarks(args.project)
    projects = {p.id: p.name for p in await engine.list_projects()}
    if args.json:
        _print_json([{**b.model_dump(), "project": projects[b.project_id]} for b in benches])
    elif not benches:
        print("no benchmarks")
    else:
        _table([[projects[b.project_id], b.name, b.path] for b in benches], ["PROJECT", "NAME", "PATH"])
    return 0


async def cmd_run(engine: Engine, args) -> int:
    jobs = await engine.run(args.project, args.benchmarks, host=args.host, priority=args.priority,
                            timeout=args.timeout, args=args.args, check=not args.no_check,
                            tty=args.tty, commit=args.commit)
    setup_failed = False
    if not args.wait:
        jobs, setup_failed = await _start_after_local_setup(engine, jobs)
    warnings = {s["details"] for s in await engine.job_steps(jobs[0].id)
                if s["name"] == "preflight" and s["status"] == "warning"} if jobs else set()
    for warning in sorted(warnings):  # the same for every job of the run
        print(f"evopilot: warning: {warning}", file=sys.stderr)
    if args.json and not args.wait:
        _print_json([j.public() for j in jobs])
    elif not args.json:
        for j in jobs:
            at = f" at {j.commit_sha[:12]}" if j.commit_sha else ""
            why = f" ({j.error_message})" if j.status == JobStatus.PENDING and j.error_message else ""
            print(f"job {j.id}: {j.name}{at} on {j.host}, {j.status.value}{why}")
    if not args.wait:
        await _ensure_worker(engine, args)
        return 1 if setup_failed else 0
    return await _wait(engine, [j.id for j in jobs], args.json)


async def _start_after_local_setup(engine: Engine, jobs: list) -> tuple[list, bool]:
    """Local jobs waiting for their project's environment start before `run` returns, as local
    jobs always did: the setup job building it (usually well under a second) is waited for and
    they are dispatched. Only a setup that started: with the queue paused or every slot busy,
    they stay pending for a worker, as a remote host's jobs do. Also returns whether a setup
    failed (the jobs then stay pending with the reason)."""
    from evopilot.core.config import LOCAL

    setups = {j.depends_on for j in jobs if j.host == LOCAL and j.status == JobStatus.PENDING and j.depends_on}
    running = [s for s in sorted(setups) if (await engine.job(s)).status == JobStatus.RUNNING]
    if not running:
        return jobs, False
    await engine.run_forever(until_done=running)
    await engine.dispatch()
    failed = [s for s in running if (await engine.job(s)).status != JobStatus.SUCCEEDED]
    return [await engine.job(j.id) for j in jobs], bool(failed)


async def _ensure_worker(engine: Engine, args) -> None:
    """Work left queued starts without the user keeping a process open: a background worker
    is started if none is alive (core/jobs/background.py). Its failure is a warning: the
    jobs are queued all the same."""
    try:
        session = await engine.ensure_worker(getattr(args, "config", None))
    except EvopilotError as e:
        print(f"evopilot: warning: {e.message}; run `evopilot worker` to start the queued jobs",
              file=sys.stderr)
        return
    if session and not args.json:
        print(f"started a background worker (tmux session {session}; see `evopilot queue`)", file=sys.stderr)


async def cmd_deps(engine: Engine, args) -> int:
    analysis = await engine.deps(args.project, args.benchmark)
    tree = [] if args.json else await engine.deps_tree(args.project, args.benchmark)  # before --fix
    added = await engine.fix_deps(args.project, args.benchmark) if args.fix else []
    return _print_deps(args, analysis, tree, added)


def _print_deps(args, analysis, tree: list[str], added: list[str]) -> int:
    if args.json:
        _print_json({**analysis.model_dump(mode="json"), "ok": analysis.ok,
                     "fix_command": analysis.fix_command(), "added": added})
        return 0
    for line in tree:
        print(line)
    if added:
        print(f"added to pyproject.toml with uv: {', '.join(added)}")
    elif analysis.fix_command():
        print(f"fix: evopilot deps {args.project} {args.benchmark} --fix  (runs `{analysis.fix_command()}`)")
    return 0 if analysis.ok or added else 1


def _deps_without_engine(args) -> int | None:
    """`deps` (not --fix) analysed without opening the engine: the database only says where
    the project and the benchmark are (see core/jobs/listing.py); None: the engine is needed."""
    from evopilot.core.jobs import listing

    if args.fix or getattr(args, "config", None):
        return None  # --fix runs uv as configured
    home = locations.data_home(getattr(args, "home", None))
    if args.json:  # a stored analysis that still holds is printed without loading the analysis
        data = listing.stored_analysis(home, args.project, args.benchmark)
        if data is not None:
            _print_json({**data, "added": []})
            return 0
    found = listing.analyse_benchmark(home, args.project, args.benchmark, tree=not args.json)
    return None if found is None else _print_deps(args, *found, [])


async def cmd_hosts(engine: Engine, args) -> int:
    from evopilot.core import formatting

    rows = await engine.hosts()
    if args.connect:
        rows = [await _connect_row(engine, r["name"]) for r in rows]
    worker = await engine.worker_state()
    if args.json:  # the worker (the database's, as the text's last line) on every host's row
        _print_json([{**r, "worker": worker.public()} for r in rows])
    else:
        _table([[r["name"], r["state"], r["running"], f"{r['free_slots']}/{r['slots']}",
                 r["last_error"] or ""]
                for r in rows], ["HOST", "STATE", "RUNNING", "FREE", "LAST ERROR"])
        for r in rows:
            if "slurm" in r:
                print(formatting.cluster_line(r["name"], r["slurm"]))
        print(f"worker: {_worker_line(worker)}")
    return 0


async def _connect_row(engine: Engine, name: str) -> dict:
    try:
        return await engine.connect_host(name)
    except EvopilotError as e:
        row = next(r for r in await engine.hosts() if r["name"] == name)
        return {**row, "state": "error", "last_error": e.message}


async def cmd_doctor(engine: Engine, args) -> int:
    from evopilot.core import formatting

    names = [args.host] if args.host else engine.config.host_names()
    results = {name: await engine.doctor(name) for name in names}
    if args.json:
        _print_json({n: [{"name": c.name, "ok": c.ok, "ran": c.ran, "detail": c.detail, "fix": c.fix}
                         for c in checks] for n, checks in results.items()})
    else:
        for name, checks in results.items():
            print(f"{name}:")
            for line in formatting.check_lines(checks):
                print(f"  {line}")
    return 0 if all(c.ok or not c.ran for checks in results.values() for c in checks) else 1


async def cmd_sync(engine: Engine, args) -> int:
    status, report = await engine.sync(args.project, args.host, dry_run=args.dry_run)
    if args.json:
        _print_json({"status": "up_to_date" if not report.changed else "modified",
                     "files": report.sent, "deleted": report.deleted, "remote_dir": report.remote_dir,
                     "method": report.method, "dry_run": report.dry_run, "bytes": report.bytes})
        return 0
    if not report.changed:
        print(f"Up to date ({report.remote_dir} on {args.host})")
        return 0
    n = len(report.sent) + len(report.deleted)
    print(f"{n} modified file(s){' (dry run: nothing sent)' if report.dry_run else ''}:")
    for f in report.sent:
        print(f"  {f}")
    for f in report.deleted:
        print(f"  {f} (deleted)")
    if not report.dry_run:
        print(f"synced to {report.remote_dir} on {args.host} with {report.method}")
    return 0


async def _wait(engine: Engine, ids: list[int], as_json: bool) -> int:
    """Drive the engine until ``ids`` have finished, printing each change; 1 if any failed."""
    import asyncio

    from evopilot.core import formatting
    from evopilot.core.events import JobEvent

    events = engine.subscribe()
    shown: dict[int, tuple] = {}

    async def printer() -> None:
        while True:
            ev = await events.get()
            if not isinstance(ev, JobEvent) or ev.job.id not in ids:
                continue
            j = ev.job
            key = (j.status, j.progress_current, j.progress_total)
            if shown.get(j.id) == key:
                continue
            shown[j.id] = key
            print(json.dumps(j.public()) if as_json else formatting.job_line(j), flush=True)

    task = asyncio.create_task(printer())
    try:
        await engine.run_forever(until_done=ids)
        await asyncio.sleep(0)  # let the printer drain
        while not events.empty():
            await asyncio.sleep(0)
    finally:
        task.cancel()
        engine.unsubscribe(events)
    final = [await engine.job(i) for i in ids]
    for j in final:
        if j.status == JobStatus.PENDING:  # blocked by a failed job it waits for
            print(json.dumps(j.public()) if as_json else formatting.job_line(j), flush=True)
    return 0 if all(j.status == JobStatus.SUCCEEDED for j in final) else 1


def _check_limit(args) -> None:
    if args.limit is not None and args.limit < 0:
        raise EvopilotError(f"--limit {args.limit}: expected a count of 0 or more")


async def cmd_jobs(engine: Engine, args) -> int:
    _check_limit(args)
    jobs = await engine.jobs(status=args.status, project=args.project, host=args.host,
                             limit=args.limit, newest_first=args.limit is not None)
    if args.limit is not None:
        jobs.reverse()
    places = await engine.queue_positions()
    _print_jobs([{**j.public(), "position": places.get(j.id)} for j in jobs], args.json)
    return 0


def _print_jobs(jobs: list[dict], as_json: bool) -> None:
    """What `jobs` prints, from each job's public JSON with its queue position (the engine's
    path and the engine-free one print the same)."""
    if as_json:
        _print_json(jobs)
        return
    if not jobs:
        print("no jobs")
        return
    from evopilot.core import formatting

    _table([formatting.jobs_row(j) for j in jobs], formatting.JOBS_HEADER)


async def cmd_logs(engine: Engine, args) -> int:
    if args.lines is not None and args.lines < 0:
        raise EvopilotError(f"--lines {args.lines}: expected a count of 0 or more")
    job = await engine.job(args.job)
    if args.follow:
        job = await _until_started(engine, job, args)
    reader = engine.log_reader(job)
    offset = 0 if args.lines is None else reader.tail_offset(args.lines)
    emit = _JsonLines(offset) if args.json else _raw_out
    if args.follow:
        async for chunk in engine.follow_log(job, offset):
            emit(chunk)
        emit(b"", end=True)
        job = await engine.job(job.id)
        code = "" if job.exit_code is None else f", exit code {job.exit_code}"
        if args.json:
            print(json.dumps({"job": job.id, "status": job.status.value, "exit_code": job.exit_code}), flush=True)
        else:
            print(f"evopilot: job {job.id} {job.status.value}{code}", file=sys.stderr, flush=True)
        return 0 if job.status == JobStatus.SUCCEEDED else 1
    if not reader.exists():
        raise EvopilotError(f"job {job.id}: log file {job.log_path} is missing")
    for chunk in reader.chunks(offset):
        emit(chunk)
    emit(b"", end=True)
    return 0


async def _until_started(engine: Engine, job, args):
    """The job once it has a log to follow: a queued or pending job is waited for (a worker
    starts it; one is started in the background if none is alive)."""
    if job.status in (JobStatus.QUEUED, JobStatus.PENDING) and not job.log_path:
        print(f"evopilot: job {job.id} is {job.status.value}: waiting for it to start", file=sys.stderr, flush=True)
        await _ensure_worker(engine, args)
    import asyncio

    while job.status in (JobStatus.QUEUED, JobStatus.PENDING) and not job.log_path:
        await asyncio.sleep(engine.config.engine.poll_interval)
        job = await engine.job(job.id)
    return job


def _raw_out(chunk: bytes, end: bool = False) -> None:
    """The log's bytes exactly as the job wrote them."""
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


class _JsonLines:
    """``logs --json``: one ``{"offset": BYTE, "line": TEXT}`` per log line, whatever the
    chunks; invalid UTF-8 is replaced, a last line without a newline comes out at the end."""

    def __init__(self, offset: int) -> None:
        self.offset, self.pending = offset, b""

    def __call__(self, chunk: bytes, end: bool = False) -> None:
        data = self.pending + chunk
        lines = data.split(b"\n")
        self.pending = lines.pop()
        if end and self.pending:
            lines.append(self.pending)
            self.pending = b""
        for raw in lines:
            line = raw.removesuffix(b"\r").decode("utf-8", "replace")
            print(json.dumps({"offset": self.offset, "line": line}))
            self.offset += len(raw) + 1
        sys.stdout.flush()


def _job_action(method: str, verb: str) -> Callable[[Engine, argparse.Namespace], Awaitable[int]]:
    async def action(engine: Engine, args) -> int:
        job = await getattr(engine, method)(args.job)
        if args.json:
            _print_json(job.public())
        elif method == "retry":
            print(f"job {job.id}: retry of job {args.job}, {job.status.value}")
        elif job.status.value == verb:  # "job 13 cancelled", not "cancelled, now cancelled"
            print(f"job {job.id} {verb}")
        else:
            print(f"job {job.id}: {verb}, now {job.status.value}")
        if method == "retry":
            await _ensure_worker(engine, args)
        return 0
    return action


async def cmd_attach(engine: Engine, args) -> int:
    return show_attach(await engine.attach_command(args.job, inside_tmux=bool(os.environ.get("TMUX"))), args)


def show_attach(attach, args) -> int:
    """Print the attach command (--json, --print), or leave it for main() to run."""
    if args.json:
        _print_json({"argv": attach.argv, "command": attach.command})
    elif args.print:
        print(attach.command)
    else:
        args.exec_argv = attach.argv  # run by main() once the engine is closed
    return 0


async def cmd_send(engine: Engine, args) -> int:
    job = await engine.send(args.job, args.text)
    if args.json:
        _print_json(job.public())
    else:
        print(f"job {job.id}: sent a line")
    return 0


async def cmd_queue(engine: Engine, args) -> int:
    if args.action is None:
        return await _show_queue(engine, args)
    if args.action in ("pause", "resume"):
        left = await engine.set_queue_paused(args.action == "pause")
        print(f"queue {'paused' if args.action == 'pause' else 'resumed'}")
        if left:
            print(f"jobs queued on {', '.join(left)} start when a worker (`evopilot worker`) or the app runs")
        if args.action == "resume":
            await _ensure_worker(engine, args)
        return 0
    if args.job is None:
        raise EvopilotError(f"queue {args.action} needs a JOB id")
    job = await engine.move(args.job, args.action)
    place = (await engine.queue_positions()).get(job.id)
    print(f"job {job.id}: moved {args.action}" + (f", now #{place} in the queue" if place else ""))
    return 0


async def _show_queue(engine: Engine, args) -> int:
    """Paused or not, who starts the jobs, and the queued jobs in the order they start."""
    from evopilot.core import formatting

    paused = await engine.queue_paused()
    worker = await engine.worker_state()
    jobs = await engine.queue()
    if args.json:
        _print_json({"paused": paused, "worker": worker.public(),
                     "jobs": [{**j.public(), "position": i} for i, j in enumerate(jobs, 1)]})
        return 0
    print(f"queue: {'paused (`evopilot queue resume` to go on)' if paused else 'running'}")
    print(f"worker: {_worker_line(worker)}")
    if not jobs:
        print("no queued jobs")
        return 0
    _table([[i, j.id, j.project or "-", j.name, j.host, j.status.value, j.priority, formatting.outcome(j)]
            for i, j in enumerate(jobs, 1)],
           ["POS", "ID", "PROJECT", "BENCHMARK", "HOST", "STATUS", "PRIORITY", "WAITING FOR"])
    return 0


def _worker_line(w) -> str:
    if w.background == "running":
        return f"background worker in tmux session {w.session} (pid {w.pid})"
    if w.background == "starting":
        return f"background worker starting in tmux session {w.session}"
    if w.loop_alive:
        return f"running ({w.owner})"
    return "none (queued jobs start with the next `evopilot run`, `evopilot worker` or the app)"


async def cmd_worker(engine: Engine, args) -> int:
    import asyncio

    from evopilot.core import formatting
    from evopilot.core.events import HostEvent, JobEvent

    events = engine.subscribe()

    refused: dict[str, str] = {}  # host -> the connection error last printed

    async def printer() -> None:
        while True:
            ev = await events.get()
            if isinstance(ev, JobEvent) and ev.job.status != ev.previous:
                print(json.dumps(ev.job.public()) if args.json else formatting.job_line(ev.job), flush=True)
            elif isinstance(ev, HostEvent):
                # a host that refuses (a changed host key) is retried with backoff: say why
                # once, with the fix, not on every attempt; again if it changes or recurs
                if ev.state == "connected":
                    refused.pop(ev.host, None)
                elif ev.state == "error" and ev.last_error and refused.get(ev.host) != ev.last_error:
                    refused[ev.host] = ev.last_error
                    print(f"evopilot: {ev.last_error}", file=sys.stderr, flush=True)

    def on_error(e: Exception) -> None:
        print(f"evopilot: tick failed, going on: {e}", file=sys.stderr, flush=True)

    task = asyncio.create_task(printer())
    stop = asyncio.Event()
    adopt = asyncio.create_task(engine.adopt_experiments(stop))  # detached experiments run here too
    try:
        if args.background:  # its output goes to worker.log in the data directory
            served = await engine.serve_in_background(on_error)
            print(f"background worker (pid {os.getpid()}): "
                  f"{'idle, leaving' if served else 'another background worker runs, leaving'}", flush=True)
        else:
            await engine.run_forever(until_idle=args.until_idle, on_error=on_error)
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        stop.set()
        await adopt
    stalled = await engine.stalled() if args.until_idle or args.background else []
    for job, error in stalled:  # idle only because nothing else can move
        print(f"evopilot: job {job.id} ({job.name}, {job.status.value}) waits for unreachable "
              f"host {job.host}: {error}", file=sys.stderr, flush=True)
    return 1 if stalled else 0


async def cmd_demo(engine: Engine, args) -> int:
    """Register the bundled example (once) and run all its benchmarks, waiting for them; with
    --evolve, run the evolution example in a git repository of its own under the data dir."""
    if args.evolve:
        from evopilot.tui import evolve_cli

        return await evolve_cli.demo(engine, args)
    name, example = "example", engine.home / "examples" / "solver"
    try:
        await engine.project(name)
    except EvopilotError:
        import shutil

        # a copy: the first run builds the project's .venv (and uv.lock) in its directory,
        # which must not be the installed package's
        shutil.copytree(locations.bundled_example(), example, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".venv", "uv.lock", "__pycache__"))
        await engine.add_project(example, name)
    benches = [b.path for b in await engine.list_benchmarks(name)]
    print(f"running {len(benches)} benchmarks of {example} on the local host "
          f"(data: {engine.home})", flush=True)
    jobs = await engine.run(name, benches)
    code = await _wait(engine, [j.id for j in jobs], False)
    print("\nsee them with `evopilot jobs`, their logs with `evopilot logs JOB`, "
          "or open the app with `evopilot`")
    return code


# ---- parsing ------------------------------------------------------------------------------


CONFIG_SHOW_EPILOG = """\
Files read, lowest precedence first: the user config (config.toml in the user config dir),
./evopilot.toml, $EVOPILOT_CONFIG, --config FILE. Each that exists is merged over the ones
before it: [engine], [projects], [hosts], [keys] and each [hosts.NAME] merge key by key; any
other value (a string, a number, a list, a table such as a host's env) replaces the earlier
one whole. Keys no file sets keep their defaults.

Text: TOML that loads as a config; each line ends with `# FILE` or `# default`, and unset
values are commented out. --json prints
  {"sources": [FILE, ...],                       lowest precedence first
   "values": {"DOTTED.KEY": {"value": VALUE,      null when unset
                             "source": FILE or "default"}, ...}}
Dotted keys quote parts that are not bare TOML keys: hosts."gpu.lab".port, keys."jobs.kill".
"""


class UsageError(Exception):
    """A command line argparse refused: printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line naming the command and its --help (instead of
    the usage block)."""

    def __init__(self, *args, **kw) -> None:
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)

    def error(self, message: str):
        raise UsageError(usage_error(self.prog, message))


def usage_error(prog: str, message: str) -> str:
    """``evopilot run`` + "argument --priority: invalid int value: 'abc'" ->
    "run: --priority: not an integer: 'abc' (see evopilot run --help)"."""
    message = re.sub(r"^argument ", "", message)
    message = message.replace("invalid int value", "not an integer").replace(
        "invalid float value", "not a number")
    command = prog.partition(" ")[2]
    return f"{command + ': ' if command else ''}{message} (see {prog} --help)"


@functools.cache
def _help_width() -> int:
    """shutil.get_terminal_size's answer, without importing shutil (and its compression modules)."""
    columns = os.environ.get("COLUMNS", "")
    if not columns.isdigit() or int(columns) <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return max(int(columns) or 80, 13) - 2


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, asking the terminal's width once (argparse makes one per
    argument added, each asking again: a tenth of `evopilot jobs`'s start-up)."""

    def __init__(self, prog: str, **kw) -> None:
        super().__init__(prog, width=kw.pop("width", None) or _help_width(), **kw)


class _RawFormatter(_Formatter, argparse.RawDescriptionHelpFormatter):
    pass


class _Skipped:
    """Stands for the parser of a command that is not run: whatever is asked of it is
    skipped (see ``_Commands``)."""

    def __getattr__(self, name: str):
        return lambda *args, **kw: self


class _Commands:
    """The subparsers action, building only the chosen command's parser (with its actions):
    argparse builds the ~60 parsers of every command in about a third of `evopilot jobs`'s
    run. ``chosen`` None builds them all (for `--help`, a mistyped command)."""

    def __init__(self, action, chosen: str | None) -> None:
        self.action, self.chosen, self.found = action, chosen, False

    def add_parser(self, name: str, **kw):
        if self.chosen is not None and name != self.chosen:
            return _Skipped()
        self.found = True
        return self.action.add_parser(name, **kw)


_VALUE_OPTIONS = ("--config", "--home")
"""The top-level options that take a value (before the command)."""


def _command(argv: list[str]) -> str | None:
    """The command word of ``argv``, or None when it cannot be told without argparse (help
    asked before it, an abbreviated option, no command)."""
    args = iter(argv)
    for arg in args:
        if arg in _VALUE_OPTIONS:
            next(args, None)
        elif arg in ("--json", "--headless") or arg.partition("=")[0] in _VALUE_OPTIONS:
            continue
        elif arg.startswith("-"):
            return None  # -h, an abbreviation argparse would expand, `--`
        else:
            return arg
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command``, only that command's (see ``_Commands``), or the
    whole one if no command is named so."""
    if command is not None:
        parser = _build_parser(command)
        if parser is not None:
            return parser
    return _build_parser(None)


def _build_parser(command: str | None) -> argparse.ArgumentParser | None:
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="config file merged over $EVOPILOT_CONFIG, ./evopilot.toml and the user "
                             "config (each file that exists is read; later ones win)")
    common.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS,
                        help="data directory (default: $EVOPILOT_HOME or the user data dir)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of text")

    p = _Parser(
        prog="evopilot", parents=[common],
        description="Run benchmarks and experiments in tmux, locally or on SSH hosts. "
                    "With no command, opens the terminal app.",
    )
    p.add_argument("--headless", action="store_true",
                   help="run the engine without a UI (same as `evopilot worker`)")
    sub = _Commands(p.add_subparsers(dest="command", metavar="COMMAND"), command)

    def add(name, func, help_, parent=sub, epilog=None):
        sp = parent.add_parser(name, parents=[common], help=help_, description=help_, epilog=epilog,
                               formatter_class=_RawFormatter if epilog else _Formatter)
        sp.set_defaults(func=func, parser=sp)
        return sp

    add("init", cmd_init, "write a config file (from config.example.toml) and create the database")
    sp = add("demo", cmd_demo, "add the bundled example project and run its benchmarks on this machine")
    sp.add_argument("--evolve", action="store_true",
                    help="run the evolution example instead: evolve a polynomial to fit sin(x) "
                         "(a git repository of it is made in the data directory)")

    conf = sub.add_parser("config", help="show the config in effect").add_subparsers(
        dest="sub", metavar="ACTION", required=True)
    sp = add("show", cmd_config_show, "print the merged config with the file each value came from",
             conf, epilog=CONFIG_SHOW_EPILOG)
    sp.set_defaults(needs_engine=False)

    proj = sub.add_parser("project", help="add, list or remove projects").add_subparsers(
        dest="sub", metavar="ACTION", required=True)
    sp = add("add", cmd_project_add, "register a project directory and discover its benchmarks", proj)
    sp.add_argument("path")
    sp.add_argument("--name", help="project name (default: the directory's name)")
    sp.add_argument("--python", help="Python version for its environment (default: this Python's)")
    sp.add_argument("--force", action="store_true",
                    help="add it even if its directory is already registered under another name")
    add("list", cmd_project_list, "list projects", proj)
    sp = add("rm", cmd_project_rm, "remove a project and its benchmarks (its jobs are kept)", proj)
    sp.add_argument("name")

    bench = sub.add_parser("bench", help="add, list or remove benchmarks").add_subparsers(
        dest="sub", metavar="ACTION", required=True)
    sp = add("add", cmd_bench_add, "add benchmark files to a project", bench)
    sp.add_argument("project")
    sp.add_argument("files", nargs="+", metavar="FILE")
    sp = add("rm", cmd_bench_rm, "remove a benchmark from a project (its jobs are kept)", bench)
    sp.add_argument("project")
    sp.add_argument("benchmark", metavar="BENCH", help="file name or path in the project")
    sp = add("list", cmd_bench_list, "list benchmarks", bench)
    sp.add_argument("project", nargs="?")

    sp = add("run", cmd_run, "queue one job per benchmark; start what fits the host's free slots")
    sp.add_argument("project")
    sp.add_argument("benchmarks", nargs="+", metavar="BENCH", help="file name or path in the project")
    sp.add_argument("--host", default="local", help="host from config (default: local)")
    sp.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    sp.add_argument("--timeout", type=float, metavar="S", help="kill and fail the job after S seconds")
    sp.add_argument("--wait", action="store_true", help="stay until the jobs end; exit 1 if any failed")
    sp.add_argument("--arg", dest="args", action="append", default=[], metavar="ARG",
                    help="argument passed to the benchmark (repeatable; --arg=VALUE for values starting with -)")
    sp.add_argument("--no-check", action="store_true",
                    help="queue even if the dependency analysis finds missing files or packages")
    sp.add_argument("--tty", action="store_true",
                    help="run interactively on the tmux pane's terminal (see attach, send); "
                         "the output still goes to the job's log")
    sp.add_argument("--commit", metavar="REV",
                    help="run on this commit's files (a branch, tag or sha) instead of the working "
                         "tree; the checkout is not touched")

    sp = add("deps", cmd_deps, "show a benchmark's local imports and external packages "
             "(exit 1 when something is missing)")
    sp.add_argument("project")
    sp.add_argument("benchmark", metavar="BENCH")
    sp.add_argument("--fix", action="store_true", help="add the undeclared packages with `uv add`")

    sp = add("jobs", cmd_jobs, "list jobs (reconciles running jobs first)")
    sp.add_argument("--status", action="append", metavar="S",
                    help="only jobs with this status (repeatable): " + ", ".join(s.value for s in JobStatus))
    sp.add_argument("--project")
    sp.add_argument("--host")
    sp.add_argument("--limit", type=int, metavar="N", help="only the newest N jobs (still listed oldest first)")

    sp = add("logs", cmd_logs, "print a job's log")
    sp.add_argument("job", type=int)
    sp.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    sp.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N lines (then follow with -f)")

    for name, method, verb, help_ in [
        ("stop", "stop", "SIGINT sent", "send SIGINT to a running job's process group"),
        ("kill", "kill", "killed", "SIGTERM a job's process group, SIGKILL after a grace period"),
        ("cancel", "cancel", "cancelled", "cancel a queued job"),
        ("retry", "retry", "retried", "queue a new job with the same inputs"),
    ]:
        sp = add(name, _job_action(method, verb), help_)
        sp.add_argument("job", type=int)

    sp = add("attach", cmd_attach, "show a running job's tmux session on this terminal "
             "(inside tmux: switch to it; on an SSH host: ssh -t … tmux attach); detach with C-b d")
    sp.add_argument("job", type=int)
    sp.add_argument("--print", action="store_true", help="only print the command")
    sp = add("send", cmd_send, "type a line (and Enter) into a running interactive (--tty) job")
    sp.add_argument("job", type=int)
    sp.add_argument("text", help="the line; write `send JOB -- TEXT` when it starts with -")

    sp = add("queue", cmd_queue, "show the queue (paused or not, the worker, queued jobs in the "
             "order they start); pause or resume dispatch; move a queued job")
    sp.add_argument("action", nargs="?", choices=["pause", "resume", "front", "back", "up", "down"])
    sp.add_argument("job", type=int, nargs="?")

    sp = add("clean", cmd_clean, "remove finished jobs: their rows, job directories and log copies "
             "(never a queued or running job)")
    sp.add_argument("--older-than", metavar="AGE", help="only jobs that finished longer ago than AGE (7d, 12h, 30m)")
    sp.add_argument("--status", action="append", metavar="S,...",
                    help="only jobs with these statuses (default: every finished one)")

    sp = add("hosts", cmd_hosts, "list hosts with their state, running jobs and free slots, and the "
             "worker that starts queued jobs (--json: each row's `worker`, as in `queue --json`)")
    sp.add_argument("--connect", action="store_true", help="connect to each host first")
    sp = add("doctor", cmd_doctor, "check a host (or all): reachable, host key, auth, tmux, uv, rsync, "
             "python, disk, env paths; a Slurm host: sinfo and a test job end to end; exit 1 if a check fails")
    sp.add_argument("host", nargs="?")
    sp = add("sync", cmd_sync, "send a project's files (git-tracked and untracked-not-ignored) to a host")
    sp.add_argument("project")
    sp.add_argument("--host", required=True)
    sp.add_argument("--dry-run", action="store_true", help="only report what would be sent")

    if command in (None, "evolve"):
        from evopilot.tui import evolve_cli

        evolve_cli.register(sub, add)
    if command in (None, "task", "sweep"):
        from evopilot.tui import task_cli

        task_cli.register(sub, add)

    sp = add("worker", cmd_worker, "run the engine without a UI: dispatch, watch, print changes")
    sp.add_argument("--until-idle", action="store_true", help="exit when nothing is running or queued")
    sp.add_argument("--background", action="store_true",
                    help="as the background worker of this database (the one `run` starts): "
                         "exit at once if another runs; implies --until-idle")
    return p if sub.found else None


async def _main_async(args) -> int:
    from evopilot.core.config import load_config
    from evopilot.core.engine import Engine

    config = load_config(getattr(args, "config", None))
    home = locations.data_home(getattr(args, "home", None))
    engine = await Engine.open(config, home)
    try:
        return await args.func(engine, args)
    except sqlite3.DatabaseError as e:
        raise engine.database_error(e) from None
    finally:
        await engine.close()


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(build_parser(_command(sys.argv[1:] if argv is None else argv)), argv)
    except UsageError as e:
        print(f"evopilot: error: {e}", file=sys.stderr)
        return 2
    args.json = getattr(args, "json", False)
    if args.headless and not getattr(args, "func", None):
        args.func, args.until_idle = cmd_worker, False
    if not getattr(args, "func", None):
        return _open_app(args)
    try:
        if not getattr(args, "needs_engine", True):
            return args.func(args)
        if args.func is cmd_jobs and _jobs_without_engine(args):
            return 0
        if args.func is cmd_deps and (code := _deps_without_engine(args)) is not None:
            return code
        import asyncio

        code = asyncio.run(_main_async(args))
        if getattr(args, "exec_argv", None):
            _exec(args.exec_argv)
        return code
    except EvopilotError as e:
        print(f"evopilot: error: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # `evopilot jobs | head` must end quietly
        return 0


def _jobs_without_engine(args) -> bool:
    """`jobs` read straight from the database when nothing needs reconciling (see
    core/jobs/listing.py); False: the engine is needed."""
    from evopilot.core.jobs import listing

    given = getattr(args, "config", None)
    if given and not Path(given).expanduser().is_file():
        return False  # the engine's path says what is wrong with it
    _check_limit(args)
    status = [check_status(s) for s in args.status or ()]
    jobs = listing.read_jobs(locations.db_path(locations.data_home(getattr(args, "home", None))),
                             status=status, project=args.project, host=args.host, limit=args.limit)
    if jobs is None:
        return False
    _print_jobs(jobs, args.json)
    return True


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse; stray arguments are reported by the command they were given to."""
    args, extra = parser.parse_known_args(argv)
    own = getattr(args, "parser", parser)
    if getattr(args, "command", None) == "queue" and args.action in ("pause", "resume") and args.job is not None:
        extra = [str(args.job), *extra]  # pause and resume take no job
    if extra:
        own.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _exec(argv: list[str]) -> None:
    """Replace this process with ``argv`` (attach: the terminal is the command's now)."""
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        raise EvopilotError(f"cannot run {argv[0]}: {e.strerror}") from None


def _open_app(args) -> int:
    from evopilot.core.config import load_config

    try:
        config = load_config(getattr(args, "config", None))
    except EvopilotError as e:
        print(f"evopilot: error: {e.message}", file=sys.stderr)
        return e.exit_code
    from evopilot.tui.app import EvopilotApp  # Textual only for the app

    home = locations.data_home(getattr(args, "home", None))
    code = EvopilotApp(config, home).run()
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
