"""Warm evaluation slots (core/jobs/warm.py, core/jobs/warm_runner.py): a local evaluation job
started by its environment's long-lived runner is still a job in every way a user relies on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from evopilot.core import environments
from evopilot.core.hosts import probe
from evopilot.core.jobs import scripts, warm, warm_runner
from evopilot.core.models import Job
from tests.conftest import REPO, wait_until

# Reports what a job sees of its interpreter, then waits for a file when asked, then exits.
EVAL = """
import json, os, sys, time
report = {"argv": sys.argv, "cwd": os.getcwd(), "name": __name__, "path": sys.path[:3],
          "pythonpath": os.environ.get("PYTHONPATH"), "venv": os.environ.get("VIRTUAL_ENV"),
          "exe": sys.executable, "stdin": sys.stdin.read(), "leader": os.getpgid(0) == os.getpid(),
          "results": os.environ["EVOPILOT_RESULTS"] == os.environ["EVOPILOT_JOB_DIR"] + "/results.json"}
print(json.dumps(report), flush=True)
print("to stderr", file=sys.stderr)
json.dump({"score": 1.5}, open(os.environ["EVOPILOT_RESULTS"], "w"))
if len(sys.argv) > 2:
    print("[1/2] waiting", flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.05)
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture(autouse=True)
def no_job_left(tmp_path):
    """A warm job outlives its runner's tmux server (the suite's cleanup): a test that fails
    while its jobs wait takes them down here."""
    yield
    for wrapper in tmp_path.glob("**/jobs/*/wrapper_pid"):
        d = wrapper.parent
        if (d / "exit_code").exists():
            continue
        for path, kill in ((d / "pid", os.killpg), (wrapper, os.kill)):
            try:
                kill(int(path.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def _job(**kw) -> Job:
    base = dict(id=7, project_id=1, kind="evaluation", name="c", benchmark_path="b.py", args=[],
                command=environments.run_command("/e", ["/w"], "b.py", ["1"]), workdir="/w", host="local",
                status="queued", priority=0, seq=1.0, timeout_s=None, tmux_session=None, job_dir=None,
                pid=None, pgid=None, exit_code=None, progress_current=0, progress_total=0,
                results_path=None, error_message=None, log_path=None, log_offset=0, requested=None,
                retry_of=None, created_at="", started_at=None, finished_at=None, updated_at="")
    return Job(**{**base, **kw})


def test_run_command_parses_back_exactly_and_nothing_else_does():
    cmd = environments.run_command("/x y/env", ["/a b", "/a b/src"], "bench/b.py", ["--n", "it's", ""])
    assert environments.parse_run_command(cmd) == ("/x y/env", ["/a b", "/a b/src"], "bench/b.py", ["--n", "it's", ""])
    for other in ("echo hi", cmd + "; rm -rf /", cmd.replace("/x y/env/bin/python", "/usr/bin/python3"),
                  "X=1 " + cmd):
        assert environments.parse_run_command(other) is None, other


def test_only_batch_evaluations_with_the_environments_command_go_warm():
    args = dict(job_dir="/d/jobs/i-7", jobs_dir="/d/jobs", prefix="evp", host_env={}, wake="/d/jobs/i.done",
                stamp=lambda python: "1:2:3" if python == "/e/bin/python" else None)
    w = warm.plan(_job(), **args)
    assert w is not None and w.python == "/e/bin/python" and warm.is_runner(w.session)
    rebuilt = warm.plan(_job(), **{**args, "stamp": lambda python: "1:2:4"})
    assert rebuilt.session != w.session, "an environment built again gets a runner of its own"
    assert warm.plan(_job(command=environments.run_command("/gone", ["/w"], "b.py", [])), **args) is None
    assert w.fifo == f"/d/jobs/{w.session}.fifo" and w.line.endswith(b"\n") and w.line.count(b"\n") == 1
    assert json.loads(w.line)["argv"] == ["b.py", "1"]
    assert warm.plan(_job(kind="benchmark"), **args) is None
    assert warm.plan(_job(mode="tty"), **args) is None
    assert warm.plan(_job(command="echo hi"), **args) is None
    assert warm.plan(_job(), **{**args, "host_env": {"PYTHONHASHSEED": "0"}}) is None  # read at start-up only
    assert warm.plan(_job(), **{**args, "host_env": {"TOKEN": "x" * 5000}}) is None  # over PIPE_BUF
    assert not warm.is_runner("evp-i-7")


def test_the_runner_writes_the_job_files_the_probe_reads():
    assert (warm_runner.LOG, warm_runner.PID, warm_runner.EXIT_CODE, warm_runner.STARTED, warm_runner.FINISHED,
            warm_runner.HANGUP, warm_runner.NOSPACE, warm_runner.RESULTS, warm_runner.WARM_WRAPPER) == (
        probe.LOG, probe.PID, probe.EXIT_CODE, probe.STARTED, probe.FINISHED, probe.HANGUP, probe.NOSPACE,
        scripts.RESULTS, probe.WARM_WRAPPER)


def _engine_run(home: Path, root: Path, jobs: list[list[str]], config: str = "", wait: bool = True,
                timeout: float | None = None) -> list[Job]:
    """Queue evaluation jobs of ``ev.py`` (one per argument list) and run them to their end, or
    only start them (``wait`` False: the engine closes, the jobs run on)."""
    from evopilot.core.config import parse_config
    from evopilot.core.engine import Engine

    async def main() -> list[Job]:
        engine = await Engine.open(parse_config("[hosts.local]\nmax_parallel = 4\n" + config), home)
        try:
            if not await engine.list_projects():
                await engine.add_project(str(root))
            queued = [(await engine.submitter.run("proj", ["ev.py"], args=a, check=False, kind="evaluation",
                                                  timeout=timeout))[0] for a in jobs]
            if wait:
                await engine.run_forever(until_done=[j.id for j in queued])
            return [await engine.job(j.id) for j in queued]
        finally:
            await engine.close()

    return asyncio.run(main())


def _runner_pids() -> list[int]:
    out = subprocess.run(["tmux", "list-panes", "-a", "-F", "#{session_name} #{pane_pid}"],
                         capture_output=True, text=True).stdout
    return [int(pid) for name, pid in (line.split() for line in out.splitlines()) if warm.is_runner(name)]


def _sessions() -> list[str]:
    return subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True).stdout.split()


def _report(job: Job) -> dict:
    return json.loads(Path(job.log_path).read_text().splitlines()[0])


def test_an_evaluation_in_a_warm_slot_sees_what_a_new_interpreter_sees(ready_project, home):
    root = ready_project({"benchmarks/ev.py": EVAL})
    ok, bad = _engine_run(home, root, [["0"], ["3"]])
    assert (ok.status, ok.exit_code, ok.metrics) == ("succeeded", 0, {"score": 1.5})
    assert (bad.status, bad.exit_code) == ("failed", 3)
    assert warm.is_runner(ok.tmux_session) and ok.tmux_session == bad.tmux_session
    assert len(_runner_pids()) == 1 and _sessions() == [ok.tmux_session], "no session of their own"
    assert Path(ok.log_path).read_text().splitlines()[1:] == ["to stderr"]
    # the same command run the normal way, by bash in the job's directory
    env = {**os.environ, "EVOPILOT_JOB_ID": "1", "EVOPILOT_JOB_DIR": str(home), "EVOPILOT_RESULTS": f"{home}/results.json"}
    cold = subprocess.run(["bash", "-c", ok.command], cwd=ok.workdir, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                          capture_output=True, text=True)
    assert _report(ok) == json.loads(cold.stdout.splitlines()[0])
    assert _report(ok)["name"] == "__main__" and _report(ok)["leader"] and _report(ok)["argv"][1:] == ["0"]
    assert ("start", "ok", ok.tmux_session) in _steps(home, ok.id)


# A file left open at module level, in a module with a function (the two reference each other
# through the module's globals: only a collection frees them): a new interpreter's shutdown
# closes it and writes its buffer.
LEFT_OPEN = """
import os
def helper():
    return 1
out = open(os.path.join(os.environ["EVOPILOT_JOB_DIR"], "left-open.txt"), "w")
out.write("buffered, never flushed by the benchmark\\n")
"""


def test_a_file_left_open_by_an_evaluation_in_a_warm_slot_is_written_at_its_end(ready_project, home):
    root = ready_project({"benchmarks/ev.py": LEFT_OPEN})
    (job,) = _engine_run(home, root, [[]])
    assert (job.status, warm.is_runner(job.tmux_session)) == ("succeeded", True)
    assert Path(job.job_dir, "left-open.txt").read_text() == "buffered, never flushed by the benchmark\n"


def _steps(home: Path, job_id: int) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(home / "evopilot.db") as db:
        return db.execute("SELECT name, status, details FROM job_steps WHERE job_id = ? ORDER BY id",
                          (job_id,)).fetchall()


def _cli_jobs(cli, *args) -> dict[int, dict]:
    return {j["id"]: j for j in json.loads(cli("jobs", "--json", *args)[1])}


def test_stop_kill_and_timeout_of_jobs_in_a_warm_slot(ready_project, home, tmp_path, cli):
    root = ready_project({"benchmarks/ev.py": EVAL})
    cfg = tmp_path / "c.toml"
    cfg.write_text("[engine]\nkill_grace = 0.5\npoll_interval = 0.1\n")
    never = str(tmp_path / "never")
    stop, kill = _engine_run(home, root, [["0", never], ["0", never]], wait=False)
    for j in (stop, kill):
        wait_until(lambda j=j: Path(j.log_path).exists() and "[1/2]" in Path(j.log_path).read_text(),
                   what="the jobs run")  # the log appears as the job starts: later on a busy machine
    runner = _runner_pids()
    assert cli("stop", str(stop.id), "--config", cfg)[0] == 0
    wait_until(lambda: _cli_jobs(cli, "--config", cfg)[stop.id]["status"] != "running", what="stopped")
    assert cli("kill", str(kill.id), "--config", cfg)[0] == 0
    jobs = _cli_jobs(cli, "--config", cfg)
    assert (jobs[stop.id]["status"], jobs[stop.id]["exit_code"]) == ("cancelled", 130)
    assert "KeyboardInterrupt" in cli("logs", str(stop.id), "--config", cfg)[1]
    assert (jobs[kill.id]["status"], jobs[kill.id]["exit_code"]) == ("killed", 143)
    assert _runner_pids() == runner, "the slot outlives the jobs killed in it"
    (late_attach,) = _engine_run(home, root, [["0", never]], wait=False)
    code, _, err = cli("attach", str(late_attach.id), "--config", cfg)
    assert code != 0 and "warm evaluation slot" in err and f"evopilot logs {late_attach.id}" in err
    assert cli("kill", str(late_attach.id), "--config", cfg)[0] == 0
    # a timeout: killed by the engine that watches it, the slot again left alone
    (late,) = _engine_run(home, root, [["0", never]], config="[engine]\nkill_grace = 0.5\npoll_interval = 0.1\n",
                          timeout=1)
    assert late.status == "failed" and late.error_message.startswith("timeout")
    assert _runner_pids() == runner


def test_a_runner_killed_under_its_jobs_leaves_them_to_end_and_a_dead_wrapper_loses_its_job(ready_project, home, tmp_path):
    """The runner is only a starter: killed with -9, its jobs run on to their exit codes and the
    next start gets a new runner. A job's own wrapper killed with -9 is a vanished job: lost,
    its processes taken down."""
    root = ready_project({"benchmarks/ev.py": EVAL})
    conf = "[engine]\nkill_grace = 0.5\nlost_grace = 0.5\npoll_interval = 0.1\n"
    release, never = tmp_path / "release", tmp_path / "never"
    survivor, orphan = _engine_run(home, root, [["4", str(release)], ["0", str(never)]], config=conf, wait=False)
    for j in (survivor, orphan):
        wait_until(lambda j=j: Path(j.log_path).exists() and "[1/2]" in Path(j.log_path).read_text(),
                   what="the jobs run")  # the log appears as the job starts: later on a busy machine
    (runner,) = _runner_pids()
    pgid = int((Path(orphan.job_dir) / "pid").read_text())
    os.kill(int((Path(orphan.job_dir) / "wrapper_pid").read_text()), signal.SIGKILL)

    from evopilot.core.config import parse_config
    from evopilot.core.engine import Engine

    async def main() -> tuple[Job, Job, Job]:
        engine = await Engine.open(parse_config("[hosts.local]\nmax_parallel = 4\n" + conf), home)
        try:
            await engine.run_forever(until_done=[orphan.id])  # its runner still alive
            session = (await engine.job(survivor.id)).tmux_session
            assert warm.is_runner(session)
            # its children: the wrappers of its jobs, and a spare one forked ahead of the next job
            wrappers = {int(p.read_text()) for p in home.glob("**/jobs/*/wrapper_pid")}
            (spare,) = [p for p in _children(runner) if p not in wrappers]
            os.kill(runner, signal.SIGKILL)
            while _runner_pids():  # its session may still be there: the start waits for it to go
                await asyncio.sleep(0.05)
            wait_until(lambda: not Path(f"/proc/{spare}").exists(), what="the killed runner's spare gone")
            release.touch()
            (nxt,) = await engine.submitter.run("proj", ["ev.py"], args=["0"], check=False, kind="evaluation")
            await engine.run_forever(until_done=[survivor.id, nxt.id])
            return await engine.job(survivor.id), await engine.job(orphan.id), await engine.job(nxt.id)
        finally:
            await engine.close()

    done, lost, nxt = asyncio.run(main())
    assert (done.status, done.exit_code, done.metrics) == ("failed", 4, {"score": 1.5})
    assert lost.status == "lost" and "wrapper" in lost.error_message
    wait_until(lambda: not _group_alive(pgid), what="the lost job's processes reaped")
    assert nxt.status == "succeeded" and warm.is_runner(nxt.tmux_session)
    assert len(_runner_pids()) == 1 and _runner_pids() != [runner]


def test_an_engine_killed_with_jobs_in_a_slot_finds_them_again(ready_project, home, tmp_path):
    root = ready_project({"benchmarks/ev.py": EVAL})
    release, ready = tmp_path / "release", tmp_path / "ready"
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from evopilot.core.config import parse_config\n"
        "from evopilot.core.engine import Engine\n"
        "async def main():\n"
        "    e = await Engine.open(parse_config('[hosts.local]\\nmax_parallel = 4\\n'), Path(sys.argv[1]))\n"
        "    await e.add_project(sys.argv[2])\n"
        "    for code in ('0', '5'):\n"
        "        await e.submitter.run('proj', ['ev.py'], args=[code, sys.argv[3]], check=False, kind='evaluation')\n"
        "    Path(sys.argv[4]).touch()\n"
        "    await e.run_forever()\n"
        "asyncio.run(main())\n")
    engine = subprocess.Popen([sys.executable, "-c", script, str(home), str(root), str(release), str(ready)],
                              cwd=REPO, env=os.environ.copy())
    try:
        wait_until(ready.exists, what="the jobs queued")
        wait_until(lambda: sum("[1/2]" in p.read_text() for p in home.glob("**/jobs/*/log")) == 2, what="both run")
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait()
    runner = _runner_pids()
    release.touch()

    from evopilot.core.config import parse_config
    from evopilot.core.engine import Engine

    async def main() -> list[Job]:
        e = await Engine.open(parse_config("[hosts.local]\nmax_parallel = 4\n"), home)
        try:
            ids = [j.id for j in await e.jobs(reconcile=False)]
            await e.run_forever(until_done=ids)
            return [await e.job(i) for i in ids]
        finally:
            await e.close()

    jobs = sorted(asyncio.run(main()), key=lambda j: j.id)
    assert [(j.status, j.exit_code) for j in jobs] == [("succeeded", 0), ("failed", 5)]
    assert all(j.metrics == {"score": 1.5} and warm.is_runner(j.tmux_session) for j in jobs)
    assert _runner_pids() == runner, "the same runner: nothing started again"


def _with_argv(text: str) -> list[int]:
    """The processes whose argv holds ``text`` (a runner's FIFO: the runner, its spare, the
    wrappers and jobs it forked)."""
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                out.append(int(d.name))
        except OSError:
            pass
    return out


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True



def test_an_idle_runner_leaves_and_its_jobs_hold_nothing_of_it(tmp_path):
    """A runner without jobs for a while removes its FIFO and exits (the next start makes a new
    one); a job it started keeps neither the FIFO nor the runner's terminal open."""
    fifo, job_dir, bench = tmp_path / "r.fifo", tmp_path / "job", tmp_path / "fds.py"
    os.mkfifo(fifo, 0o600)
    job_dir.mkdir()
    bench.write_text("import os\nfor fd in os.listdir('/proc/self/fd'):\n"
                     "    try:\n        print(os.readlink(f'/proc/self/fd/{fd}'))\n    except OSError:\n        pass\n")
    runner = subprocess.Popen([sys.executable, "-c", "import sys; sys.argv = sys.argv[1:]; import runpy; "
                               "g = runpy.run_path(sys.argv[0]); g['IDLE'] = 1.0; g['main'].__globals__['IDLE'] = 1.0; "
                               "g['main'](sys.argv[1])", warm.RUNNER, str(fifo)])
    spec = {"job_id": 1, "job_dir": str(job_dir), "workdir": str(tmp_path), "env_dir": str(Path(sys.executable).parent.parent),
            "roots": [str(tmp_path)], "argv": [str(bench)], "env": {}, "wake": ""}
    fd = os.open(fifo, os.O_WRONLY)
    os.write(fd, json.dumps(spec).encode() + b"\n")
    os.close(fd)
    wait_until(lambda: (job_dir / "exit_code").exists(), what="the job ends")
    assert (job_dir / "exit_code").read_text() == "0\n"
    held = (job_dir / "log").read_text().splitlines()
    assert str(fifo) not in held and not any(p.startswith("/dev/pts") for p in held), held
    runner.wait(timeout=30)
    assert not fifo.exists()
    wait_until(lambda: not _with_argv(str(fifo)), what="the runner's spare gone with it")


def test_a_job_whose_runner_cannot_start_takes_the_normal_path(tmp_path):
    """No runner can take the job (here its FIFO's path is a plain file): the job starts in a
    session of its own with the bash wrapper, and runs."""
    from evopilot.core.jobs.launch import start_here

    d = tmp_path / "job"
    w = scripts.wrapper(job_id=1, job_dir=str(d), workdir=str(tmp_path), command="echo normal path",
                        done_channel="t-done")
    blocked = tmp_path / "evp-warm-x.fifo"
    blocked.write_text("not a FIFO")
    spec = scripts.StartSpec(1, str(d), "t-1", w, warm=warm.WarmStart(sys.executable, "evp-warm-x", str(blocked), b"{}\n"))
    assert asyncio.run(start_here([spec])) == ({1: "t-1"}, "")
    wait_until(lambda: (d / "exit_code").exists(), what="the job ends")
    assert (d / "log").read_text() == "normal path\n" and not _runner_pids()


def test_a_runner_session_name_taken_by_a_dying_runner_is_taken_over_when_it_goes(tmp_path):
    """A start right after a runner died finds its tmux session still there for a moment (tmux
    removes it after the process is gone): it starts a runner as soon as the name is free
    instead of giving up after START_WAIT and starting the job cold. The dying runner stands
    here as a session of that name that ends 0.5 s later."""
    session, fifo = "evp-warm-test-dying", str(tmp_path / "runner.fifo")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "sleep 0.5"], check=True)
    w = warm.WarmStart(sys.executable, session, fifo, b"not a job: the runner skips it\n")

    from evopilot.core.jobs.launch import _tmux

    assert asyncio.run(warm.send(w, _tmux)) is True
    panes = subprocess.run(["tmux", "list-panes", "-t", f"={session}", "-F", "#{pane_start_command}"],
                           capture_output=True, text=True).stdout
    assert warm.RUNNER in panes
    subprocess.run(["tmux", "kill-session", "-t", f"={session}"])
