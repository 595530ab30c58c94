"""Slurm clusters as hosts: the pure builders and parsers of ``core.hosts.slurm``, the config,
and the whole job flow against a real single-node Slurm (``tests/slurm.py``), reached directly
and through the test sshd as the login node. Like the SSH tests, these fail when Slurm cannot
start; they never skip."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from evopilot.core import formatting
from evopilot.core.config import HostConfig, parse_config
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts import slurm
from evopilot.core.jobs import launch, sbatch, scripts
from tests.conftest import evopilot_cmd, stop_process, wait_until

# ---- pure parts ---------------------------------------------------------------------------


def test_sbatch_argv_carries_every_setting_as_one_word():
    cfg = HostConfig(kind="slurm", partition="gpu", account="proj x", time_limit="2:00:00",
                     cpus_per_job=4, mem="8G", gres="gpu:1", sbatch_options=["--qos=short"])
    argv = slurm.sbatch_argv(cfg, name="evp-ab-3", job_dir="/b/jobs/ab-3", timeout_s=None,
                             script="/b/jobs/ab-3/run.sh")
    assert argv == ["sbatch", "--parsable", "--job-name=evp-ab-3", "--chdir=/b/jobs/ab-3",
                    "--output=/b/jobs/ab-3/log", "--open-mode=append", "--no-requeue",
                    "--partition=gpu", "--account=proj x", "--time=2:00:00", "--cpus-per-task=4",
                    "--mem=8G", "--gres=gpu:1", "--qos=short", "/b/jobs/ab-3/run.sh"]
    # the job's own timeout wins, in whole minutes with one to spare
    assert "--time=3" in slurm.sbatch_argv(cfg, name="n", job_dir="/d", timeout_s=61, script="/d/run.sh")
    assert slurm.time_limit(None, None) is None and slurm.time_limit(30, "9") == "2"


def test_submit_script_quotes_paths_and_is_idempotent():
    weird = "/tmp/it's a $dir"
    spec = scripts.StartSpec(7, f"{weird}/jobs/x-7", "evp-x-7", "#!/usr/bin/env bash\necho 'hi'\n",
                             "export A='b c'\n", 90)
    text = sbatch.submit(HostConfig(kind="slurm", partition="p q"), [spec])
    assert shlex.quote(f"{weird}/jobs/x-7") + "/slurm_id" in text
    assert "'--partition=p q'" in text and "--time=3" in text
    assert text.index("read -r id <") < text.index("sbatch")  # a job with a Slurm id is not submitted again
    assert "export A" not in text  # the env comes on stdin
    assert sbatch.parse_submit(b"OK 7 12\nERR 8 sbatch: error: invalid partition\nnoise\n") == {
        7: scripts.Started(True, "12", "12"),
        8: scripts.Started(False, "sbatch: error: invalid partition", None)}


def test_env_reaches_slurm_commands_on_stdin_only():
    env = scripts.env_file({"SLURM_CONF": "/x/slurm.conf"})
    script = slurm.with_env("squeue\n", env)
    assert "/x/slurm.conf" not in script
    out = subprocess.run(["bash", "-c", slurm.with_env('echo "$SLURM_CONF"; cat', env)],
                         input=slurm.env_stdin(env, b"rest"), capture_output=True).stdout
    assert out == b"/x/slurm.conf\nrest"
    assert slurm.with_env("squeue\n", "") == "squeue\n"


def test_parse_squeue_tells_an_answer_from_a_failure():
    assert slurm.parse_squeue("5|RUNNING|None\n6|PENDING|Resources\nrc=0\n") == (
        True, {"5": ("RUNNING", "None"), "6": ("PENDING", "Resources")})
    # a single id Slurm has forgotten is an error, but an answer all the same
    assert slurm.parse_squeue("slurm_load_jobs error: Invalid job id specified\nrc=1\n") == (True, {})
    assert slurm.parse_squeue("slurm_load_jobs error: Unable to contact slurm controller\nrc=1\n")[0] is False
    assert slurm.parse_squeue("")[0] is False  # the script did not get that far
    # ids squeue forgot, as Slurm's accounting or job-completion log has them (squeue's own win)
    assert slurm.parse_squeue("5|RUNNING|None\nrc=0\nacct|7|CANCELLED by 1000\nacct|5|COMPLETED\n") == (
        True, {"5": ("RUNNING", "None"), "7": ("CANCELLED", "by 1000")})


def test_parse_probe_maps_ids_states_and_files():
    sep = b"\0--evopilot--\n"
    out = (b"12|PENDING|Priority\n13|CANCELLED|None\nrc=0\n" + sep
           + b"/b/1/slurm_id\x0012\n/b/2/slurm_id\x0013\n/b/2/exit_code\x00143\n/b/4/slurm_id\x0099\n"
           + sep + b"/b/1/log\t40\n/b/2/log\t3\n")
    got = slurm.parse_probe(out, [(1, "/b/1"), (2, "/b/2"), (3, "/b/3"), (4, "/b/4")])
    assert got[1].scheduled == slurm.Scheduled("12", "PENDING", "Priority", True) and got[1].session_alive
    assert got[1].log_size == 40
    assert got[2].exit_code == 143 and got[2].scheduled.state == "CANCELLED" and not got[2].session_alive
    assert got[3].scheduled.job_id is None and got[3].never_started  # its start never reached the host
    assert got[4].scheduled.state is None and not got[4].session_alive  # Slurm forgot it
    down = slurm.parse_probe(b"error: Unable to contact slurm controller\nrc=1\n" + sep
                             + b"/b/1/slurm_id\x0012\n" + sep, [(1, "/b/1")])
    assert down[1].session_alive and not down[1].scheduled.answered  # unknown is not ended
    # an array task's exit code counts once the probe has put Slurm's lines for it in its log
    tasks = slurm.parse_probe(b"7_0|COMPLETED|None\n7_1|COMPLETED|None\nrc=0\nended|/b/6\n" + sep
                              + b"/b/5/slurm_id\x007_0\n/b/5/task_out\x00/a/0.out\n/b/5/exit_code\x000\n"
                              + b"/b/6/slurm_id\x007_1\n/b/6/task_out\x00/a/1.out\n/b/6/exit_code\x000\n" + sep,
                              [(5, "/b/5"), (6, "/b/6")])
    assert tasks[5].exit_code is None and tasks[6].exit_code == 0


def test_slurmctld_not_answering_is_told_apart_and_bounded():
    assert "timeout 2 squeue" in slurm.probe(["/b/1"]) and "timeout 2 sinfo" in slurm.cluster()
    assert slurm.not_answering("rc=124\n") == "slurmctld not answering (no answer within 2 s)"
    assert slurm.not_answering("sinfo=124\n") == "slurmctld not answering (no answer within 2 s)"
    assert slurm.not_answering("rc=0\nnode|idle|1|\nsinfo=0\n") is None
    assert slurm.not_answering("error: Unable to contact slurm controller\nrc=1\n") == (
        "squeue failed: error: Unable to contact slurm controller")
    assert slurm.parse_nodes("sinfo=124\n") is None and slurm.parse_nodes("node|idle|2|\nsinfo=0\n") == {"idle": 2}
    down = {"partition": "debug", "nodes": {"idle": 1}, "jobs": {"RUNNING": 2},
            "error": "slurmctld not answering (no answer within 2 s)"}
    assert formatting.cluster_line("c", down) == (
        "c (Slurm, partition debug): cluster: slurmctld not answering (no answer within 2 s) · jobs: 2 running")


def test_stop_and_cancel_read_the_id_from_the_job_directory(tmp_path):
    d = tmp_path / "j"
    d.mkdir()
    assert subprocess.run(["bash", "-c", slurm.cancel(str(d))]).returncode == 3  # no id yet
    assert "scancel --state=RUNNING --signal=INT --full" in slurm.stop(str(d))
    assert "--state=PENDING" in slurm.stop(str(d))  # a pending job cannot be signalled


def test_monitor_names_what_ended_a_slurm_job():
    from evopilot.core.jobs.monitor import _slurm_end, _slurm_lost, _slurm_may_explain
    from evopilot.core.models import Job

    done = {"status": "failed", "exit_code": 143}
    _slurm_end(done, slurm.Scheduled("5", "TIMEOUT"))
    assert done == {"status": "failed", "exit_code": 143,
                    "error_message": "Slurm's time limit was reached (TIMEOUT); exit code 143"}
    done = {"status": "failed", "exit_code": 143}
    _slurm_end(done, slurm.Scheduled("5", "PREEMPTED"))
    assert done["status"] == "cancelled" and "PREEMPTED" in done["error_message"]
    ok = {"status": "succeeded", "exit_code": 0}
    _slurm_end(ok, slurm.Scheduled("5", "CANCELLED"))
    assert ok == {"status": "succeeded", "exit_code": 0}  # its own clean exit stands
    job = Job.model_validate(dict(
        id=1, project_id=None, kind="command", name="n", benchmark_path=None, args=[], command="x",
        workdir="/", host="c", status="running", priority=0, seq=1, timeout_s=None,
        tmux_session=None, job_dir="/d", pid=None, pgid=None, exit_code=None, progress_current=0,
        progress_total=0, results_path=None, error_message=None, log_path=None, log_offset=0,
        requested=None, retry_of=None, created_at="", started_at=None, finished_at=None, updated_at=""))
    # an error exit beside an active state waits for Slurm's end: squeue ran before the files
    # were read, and the time limit came between them (CI: "RUNNING" and exit 143)
    assert _slurm_may_explain(job, 143, slurm.Scheduled("5", "RUNNING"))
    assert _slurm_may_explain(job, 143, slurm.Scheduled("5", "COMPLETING"))
    assert not _slurm_may_explain(job, 143, slurm.Scheduled("5", "TIMEOUT"))  # ended: settle now
    assert not _slurm_may_explain(job, 0, slurm.Scheduled("5", "RUNNING"))  # a clean exit stands
    assert not _slurm_may_explain(job, 143, slurm.Scheduled("5", "RUNNING", answered=False))
    assert not _slurm_may_explain(job.model_copy(update={"requested": "stop"}), 130,
                                  slurm.Scheduled("5", "COMPLETING"))  # evopilot's own end
    assert _slurm_lost(job, slurm.Scheduled("5", None)) == {
        "status": "lost", "error_message": "Slurm forgot job 5 without an exit code"}
    assert _slurm_lost(job, slurm.Scheduled("5", "NODE_FAIL"))["status"] == "lost"
    assert _slurm_lost(job, slurm.Scheduled("5", "OUT_OF_MEMORY"))["status"] == "failed"
    assert _slurm_lost(job.model_copy(update={"requested": "kill"}),
                       slurm.Scheduled("5", "CANCELLED")) == {"status": "killed"}


@pytest.mark.parametrize("text, error", [
    ('[hosts.c]\npartition = "x"', 'hosts.c: partition is only for Slurm hosts (kind = "slurm")'),
    ('[hosts.c]\nkind = "slurm"\nlocal = true\nhostname = "h"',
     "hosts.c: hostname is for a login node reached over SSH, not with local = true"),
    ('[hosts.local]\nkind = "slurm"', "the local host cannot be a Slurm host"),
    ('[hosts.c]\nkind = "slurm"\nmem = "8 GB"', "hosts.c.mem: String should match pattern"),
    ('[hosts.c]\nkind = "pbs"', "hosts.c.kind: Input should be 'ssh' or 'slurm'"),
    ('[hosts.c]\nkind = "slurm"\nsbatch_opts = []', "hosts.c.sbatch_opts: unknown key"),
])
def test_slurm_config_errors_are_one_line(text, error):
    with pytest.raises(EvopilotError) as e:
        parse_config(text)
    assert error in str(e.value) and "\n" not in str(e.value)


def test_slurm_config_bounds_the_queue_not_the_cores():
    cfg = parse_config('[hosts.c]\nkind = "slurm"\nhostname = "login1"\nmax_queued = 500\n'
                       'time_limit = "1-0"\nsbatch_options = ["--qos=long"]\n').host("c")
    assert cfg.slots(False) == 500 and cfg.time_limit == "1-0"


# ---- a real cluster -----------------------------------------------------------------------

PROGRESS = ("python3 -c " + shlex.quote(
    "import json, os, time\n"
    "for i in range(1, 4):\n"
    "    print(f'[{i}/3] step', flush=True); time.sleep(0.2)\n"
    "json.dump({'score': 1.5, 'runtime': {'value': 0.6, 'unit': 's'}}, open(os.environ['EVOPILOT_RESULTS'], 'w'))\n"))
FOREVER = "echo '[1/2] up'; for i in $(seq 600); do sleep 0.5; done"
ENGINE = "[engine]\nremote_poll_interval = 0.2\npoll_interval = 0.1\nlost_grace = 1\nkill_grace = 1\n"


def host_toml(name: str, cfg: HostConfig) -> str:
    lines = [f"[hosts.{name}]"]
    for key, value in cfg.model_dump(exclude_defaults=True).items():
        if isinstance(value, dict):  # an inline table
            value = "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + "}"
            lines.append(f"{key} = {value}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def cluster_config(slurm_cluster, tmp_path, **overrides) -> str:
    overrides.setdefault("base_dir", str(tmp_path / "cluster"))
    return ENGINE + host_toml("c", slurm_cluster.host_config(**overrides))


class Run:
    """An engine on a config with the cluster as host ``c``; jobs are commands in tmp_path."""

    def __init__(self, engine, tmp_path):
        self.engine, self.tmp = engine, tmp_path

    async def submit(self, command: str, name: str, **kw):
        return await self.engine.submit(command, name=name, host="c", workdir=str(self.tmp), **kw)

    async def until(self, cond, timeout: float = 30, what: str = "condition"):
        """Run the loop until ``cond(jobs by name)`` holds."""
        import asyncio

        async def loop():
            await self.engine.run_forever()

        task = asyncio.create_task(loop())
        try:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                jobs = {j.name: j for j in await self.engine.jobs()}
                if cond(jobs):
                    return jobs
                if task.done():
                    task.result()
                await asyncio.sleep(0.1)
            raise AssertionError(f"{what} not met within {timeout:g}s: "
                                 f"{[(j.name, j.status.value, j.error_message) for j in jobs.values()]}")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def on_cluster(slurm, home, tmp_path):
    from evopilot.core.engine import Engine

    async def make(**overrides):
        engine = await Engine.open(parse_config(cluster_config(slurm, tmp_path, **overrides)), home)
        made.append(engine)
        return Run(engine, tmp_path)

    made: list = []
    yield make
    for engine in made:
        await engine.close()


async def test_success_with_progress_and_metrics_and_failure_with_its_error(on_cluster, slurm):
    run = await on_cluster()
    ok = await run.submit(PROGRESS, "ok")
    bad = await run.submit("echo 'ValueError: bad input' >&2; exit 3", "bad")
    jobs = await run.until(lambda js: all(j.status.finished for j in js.values()))
    ok, bad = jobs["ok"], jobs["bad"]
    assert ok.status == "succeeded" and ok.exit_code == 0
    assert (ok.progress_current, ok.progress_total) == (3, 3)
    assert ok.metrics == {"score": 1.5, "runtime": 0.6} and ok.metric_units == {"runtime": "s"}
    assert Path(ok.log_path).read_text() == "[1/3] step\n[2/3] step\n[3/3] step\n"
    # evopilot settles a job by its wrapper's exit code: Slurm may still be ending the batch script
    wait_until(lambda: slurm.state(ok.slurm_id) == "COMPLETED", timeout=15, what="COMPLETED in Slurm")
    assert ok.tmux_session is None
    # the wrapper's own times, not when evopilot noticed
    assert Path(ok.job_dir, "started_at").exists() and ok.started_at < ok.finished_at
    assert bad.status == "failed" and bad.exit_code == 3 and bad.error_message == "ValueError: bad input"
    wait_until(lambda: slurm.state(bad.slurm_id) == "FAILED", timeout=15, what="FAILED in Slurm")
    assert bad.public()["slurm_id"] == bad.slurm_id


async def test_pending_shows_slurms_reason_and_stop_cancels_it(on_cluster, slurm, capsys):
    run = await on_cluster(sbatch_options=["--hold"])
    await run.submit("echo never", "held")
    jobs = await run.until(lambda js: js["held"].error_message == "Slurm: pending (JobHeldUser)",
                           what="the pending reason")
    held = jobs["held"]
    assert held.status == "running" and slurm.state(held.slurm_id) == "PENDING"
    [row] = [r for r in await run.engine.hosts() if r["name"] == "c"]
    assert row["slurm"]["jobs"] == {"PENDING": 1} and set(row["slurm"]["nodes"]) <= {"idle", "mixed"}
    assert formatting.cluster(row["slurm"]).endswith(" · jobs: 1 pending")
    # `evopilot hosts`: the cluster on a line of its own, LAST ERROR left for errors
    from argparse import Namespace

    from evopilot.tui import cli
    capsys.readouterr()
    assert await cli.cmd_hosts(run.engine, Namespace(connect=False, json=False)) == 0
    text = capsys.readouterr().out
    assert re.search(r"^c \(Slurm, partition debug\): cluster: 1 (idle|mixed) · jobs: 1 pending$", text, re.M)
    assert "jobs:" not in next(line for line in text.splitlines() if line.startswith("c "))
    assert (await run.engine.stop(held.id)).requested == "stop"
    jobs = await run.until(lambda js: js["held"].status.finished)
    assert jobs["held"].status == "cancelled" and slurm.state(held.slurm_id) == "CANCELLED"


async def test_a_job_slurm_forgot_without_an_exit_code_is_lost_with_the_reason(on_cluster, slurm):
    run = await on_cluster(sbatch_options=["--hold"])
    await run.submit("echo never", "forgotten")
    jobs = await run.until(lambda js: js["forgotten"].slurm_id is not None, what="submitted")
    real = jobs["forgotten"].slurm_id
    # as after MinJobAge, or a slurmctld that lost its newest state: squeue does not know the id
    Path(jobs["forgotten"].job_dir, "slurm_id").write_text("999999\n")
    slurm.cmd("scancel", real)
    jobs = await run.until(lambda js: js["forgotten"].status.finished)
    assert jobs["forgotten"].status == "lost"
    assert jobs["forgotten"].error_message == "Slurm forgot job 999999 without an exit code"


def test_an_idle_cluster_shows_its_nodes_in_evopilot_hosts(cli, slurm, tmp_path):
    """No job of evopilot's on it: `evopilot hosts` asks the cluster for its nodes (a Slurm
    host with ``local = true`` needs no connection)."""
    cfg = tmp_path / "evopilot.toml"
    cfg.write_text(cluster_config(slurm, tmp_path))
    code, out, err = cli("hosts", "--config", cfg)
    assert code == 0, err
    assert re.search(r"^c \(Slurm, partition debug\): cluster: 1 (idle|mixed)$", out, re.M), out
    code, out, err = cli("hosts", "--json", "--config", cfg)
    [row] = [r for r in json.loads(out) if r["name"] == "c"]
    assert row["slurm"]["jobs"] == {} and row["slurm"]["error"] is None
    assert sum(row["slurm"]["nodes"].values()) == 1 and set(row["slurm"]["nodes"]) <= {"idle", "mixed"}


async def test_an_array_tasks_log_gets_slurms_own_lines(on_cluster, slurm, capsys):
    """Slurm writes what it did to a task ("*** JOB 12 ON node CANCELLED AT ... ***") in the
    array's output file: the task's own log gets it when it ends. Every wait is bounded."""
    import asyncio
    from argparse import Namespace

    from evopilot.tui import cli

    run = await on_cluster()
    for name in ("cut", "other"):  # one array of two
        await run.submit(FOREVER, name)
    jobs = await asyncio.wait_for(run.until(lambda js: all(j.progress_current == 1 for j in js.values()),
                                            what="both running"), 60)
    assert jobs["cut"].slurm_id.split("_")[0] == jobs["other"].slurm_id.split("_")[0]
    slurm.cmd("scancel", jobs["cut"].slurm_id)
    await run.engine.kill(jobs["other"].id)
    jobs = await asyncio.wait_for(run.until(lambda js: all(j.status.finished for j in js.values())), 60)
    assert jobs["cut"].status == "cancelled" and jobs["other"].status == "killed"
    for j in jobs.values():  # `evopilot logs`: the task's output, then Slurm's line, once
        capsys.readouterr()
        assert await cli.cmd_logs(run.engine, Namespace(job=j.id, lines=None, follow=False, json=False)) == 0
        text = capsys.readouterr().out
        assert text.startswith("[1/2] up\n")
        said = re.findall(r"^slurmstepd\S*: error: \*\*\* JOB \d+ ON \S+ CANCELLED AT \S+ \*\*\*$", text, re.M)
        assert len(said) == 1, text


async def test_stop_kill_and_a_scancel_from_outside(on_cluster, slurm):
    run = await on_cluster()
    for name in ("stopped", "killed", "outside"):
        await run.submit(FOREVER, name)
    jobs = await run.until(lambda js: all(j.progress_current == 1 for j in js.values()),
                           what="all three running")
    with pytest.raises(EvopilotError, match="runs under Slurm, without a terminal"):
        await run.engine.attach_command(jobs["outside"].id, inside_tmux=False)
    await run.engine.stop(jobs["stopped"].id)
    await run.engine.kill(jobs["killed"].id)
    slurm.cmd("scancel", jobs["outside"].slurm_id)
    jobs = await run.until(lambda js: all(j.status.finished for j in js.values()))
    assert jobs["stopped"].status == "cancelled" and jobs["stopped"].exit_code == 130
    assert jobs["killed"].status == "killed"
    outside = jobs["outside"]
    assert outside.status == "cancelled" and outside.requested is None
    assert outside.error_message.startswith("cancelled in Slurm (CANCELLED: scancel by a user or an admin)")
    for j in jobs.values():
        wait_until(lambda: slurm.state(j.slurm_id) in ("CANCELLED", "FAILED"), timeout=15,
                   what=f"{j.name} ended in Slurm")


@pytest.mark.slow
async def test_evopilots_own_timeout_cancels_the_slurm_job(on_cluster, slurm):
    run = await on_cluster()
    await run.submit(FOREVER, "slow", timeout=1.5)
    jobs = await run.until(lambda js: js["slow"].status.finished)
    slow = jobs["slow"]
    assert slow.status == "failed" and slow.error_message == "timeout: killed after 1.5s"
    # Slurm's limit backs it up: whole minutes, one to spare
    assert slurm.cmd("squeue", "-h", "--states=all", "-j", slow.slurm_id, "-o", "%l").strip() == "2:00"
    wait_until(lambda: slurm.state(slow.slurm_id) == "CANCELLED", timeout=15, what="cancelled in Slurm")


@pytest.mark.slow
async def test_slurms_time_limit_ends_the_job_as_timeout(on_cluster, slurm):
    """Slurm's limits are in minutes and it checks them every 30 s: ~60-95 s."""
    run = await on_cluster(time_limit="1")
    await run.submit(FOREVER, "limited")
    jobs = await run.until(lambda js: js["limited"].status.finished, timeout=150)
    limited = jobs["limited"]
    assert limited.status == "failed" and slurm.state(limited.slurm_id) == "TIMEOUT"
    assert limited.error_message.startswith("Slurm's time limit was reached (TIMEOUT)")
    assert "DUE TO TIME LIMIT" in Path(limited.log_path).read_text()


async def test_a_tty_job_cannot_run_under_slurm(on_cluster):
    run = await on_cluster()
    await run.submit("true", "tty", tty=True)
    jobs = await run.until(lambda js: js["tty"].status.finished)
    assert jobs["tty"].status == "failed" and "needs a terminal" in jobs["tty"].error_message


# ---- through the CLI: a project's environment set up on the cluster, a worker killed -9 ----

PYPROJECT = "[project]\nname = 'slurm-proj'\nversion = '0.1.0'\nrequires-python = '>=3.10'\ndependencies = []\n"
TICKER = """
import json, os, sys, time
n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
for i in range(1, n + 1):
    print(f"[{i}/{n}] tick {i}", flush=True)
    time.sleep(0.1)
json.dump({"ticks": n}, open(os.environ["EVOPILOT_RESULTS"], "w"))
"""


@pytest.fixture
def cluster_cli(cli, make_project, slurm, tmp_path):
    """A project registered with a config that has the cluster as host ``c``: each job takes
    12 of the node's 16 CPUs, so one runs and the next waits (PENDING, Resources)."""

    def make(cfg_text: str):
        cfg = tmp_path / "evopilot.toml"
        cfg.write_text(cfg_text)
        root = make_project({"pyproject.toml": PYPROJECT, "benchmarks/a.py": TICKER,
                             "benchmarks/b.py": TICKER})

        def run(*args):
            return cli(*args, "--config", cfg)

        assert run("project", "add", root)[0] == 0
        run.cfg = cfg
        return run

    return make


def cli_jobs(run) -> dict[str, dict]:
    code, out, err = run("jobs", "--json")
    assert code == 0, err
    return {j["benchmark"]: j for j in json.loads(out)}


def _worker(cfg: Path) -> subprocess.Popen:
    log = open(cfg.parent / f"worker-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen(evopilot_cmd("worker", "--config", cfg), stdout=log,
                            stderr=subprocess.STDOUT, env=os.environ.copy())


@pytest.mark.slow
def test_kill_9_of_evopilot_then_the_next_process_reattaches_by_slurm_id(cluster_cli, slurm, tmp_path):
    run = cluster_cli(cluster_config(slurm, tmp_path, cpus_per_job=12))
    code, _, err = run("run", "proj", "a.py", "b.py", "--host", "c", "--arg", "30")
    assert code == 0, err
    worker = _worker(run.cfg)
    try:
        wait_until(lambda: (lambda js: js["a.py"]["progress_current"] >= 2 or js["b.py"]["progress_current"] >= 2)(
            cli_jobs(run)), timeout=120, what="a job running")
        js = cli_jobs(run)
        waiting = [j for j in js.values() if j["error_message"] == "Slurm: pending (Resources)"]
        assert len(waiting) == 1, js
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    ids = {name: j["slurm_id"] for name, j in js.items()}
    assert js["setup proj"]["status"] == "succeeded" and all(ids.values())
    worker = _worker(run.cfg)
    try:
        wait_until(lambda: all(j["status"] == "succeeded" for j in cli_jobs(run).values()),
                   timeout=120, what="both jobs succeeded")
    finally:
        stop_process(worker)
    js = cli_jobs(run)
    assert {name: j["slurm_id"] for name, j in js.items()} == ids  # the same Slurm jobs, once each
    for name in ("a.py", "b.py"):
        assert (js[name]["progress_current"], js[name]["metrics"]) == (30, {"ticks": 30.0})
        wait_until(lambda: slurm.state(ids[name]) == "COMPLETED", timeout=15, what="COMPLETED in Slurm")
    names = slurm.cmd("squeue", "-h", "--states=all", "-o", "%j").split()
    assert len([n for n in names if n.endswith(tuple(f"-{j['id']}" for j in js.values()))]) >= 3


async def test_through_a_login_node_over_ssh(sshd, slurm, home, tmp_path):
    """The test sshd is the login node: Slurm's commands and the job directories are reached
    over SSH, and the log is mirrored here."""
    from evopilot.core.engine import Engine

    cfg = sshd.host_config(kind="slurm", partition=slurm.partition,
                           env={"SLURM_CONF": str(slurm.conf)}, ssh_config=sshd.ssh_config)
    engine = await Engine.open(parse_config(ENGINE + host_toml("c", cfg)), home)
    try:
        run = Run(engine, tmp_path)
        # no job there yet: the loop connects and asks for the nodes (the Hosts tab shows them)
        await run.until(lambda js: getattr(engine.hosts_registry.known("c"), "nodes", None) is not None,
                        what="the idle cluster's nodes")
        [row] = [r for r in await engine.hosts() if r["name"] == "c"]
        assert row["state"] == "connected" and row["slurm"]["jobs"] == {}
        assert re.fullmatch(r"cluster: 1 (idle|mixed)", formatting.cluster(row["slurm"]))
        await run.submit(PROGRESS, "ok")
        await run.submit(FOREVER, "outside")
        jobs = await run.until(lambda js: js["outside"].progress_current == 1 and js["ok"].status.finished,
                               what="ok done, outside running")
        slurm.cmd("scancel", jobs["outside"].slurm_id)
        jobs = await run.until(lambda js: js["outside"].status.finished)
    finally:
        await engine.close()
    ok, outside = jobs["ok"], jobs["outside"]
    assert ok.status == "succeeded" and ok.metrics == {"score": 1.5, "runtime": 0.6}
    assert ok.job_dir.startswith(sshd.base_dir) and not ok.log_path.startswith(sshd.base_dir)
    assert Path(ok.log_path).read_bytes() == Path(ok.job_dir, "log").read_bytes()
    assert outside.status == "cancelled" and "cancelled in Slurm" in outside.error_message


@pytest.mark.slow
async def test_slurmctld_restarted_while_jobs_run_every_job_ends_once_with_its_true_status(
        slurm_factory, home, tmp_path):
    """slurmctld killed -9 and started again (>= 6 s after the last submission, so its state
    is saved; see notes-slurm.md): running jobs live on under slurmstepd, a job that ends
    meanwhile is settled from its files, and while squeue cannot answer nothing is taken for
    ended."""
    from evopilot.core.engine import Engine

    cluster = slurm_factory()
    engine = await Engine.open(parse_config(cluster_config(cluster, tmp_path)), home)
    try:
        run = Run(engine, tmp_path)
        await run.submit("sleep 40; echo done", "ok")
        await run.submit("sleep 40; exit 4", "bad")
        await run.submit("sleep 10; echo early", "early")  # ends while slurmctld is down
        jobs = await run.until(lambda js: all(j.slurm_id for j in js.values()) and
                               all(Path(j.job_dir, "started_at").exists() for j in js.values()),
                               what="all three started")
        ids = {j.name: j.slurm_id for j in jobs.values()}
        time.sleep(6)
        cluster.kill_slurmctld()
        # Slurm's commands are cut short (squeue alone retries ~9 s): ticks go on, the host says why
        jobs = await run.until(lambda js: js["early"].status.finished, timeout=40,
                               what="early settled from its files")
        # the others run on (on a loaded machine they may have ended too: with their true status)
        assert jobs["early"].status == "succeeded"
        assert jobs["ok"].status in ("running", "succeeded") and jobs["bad"].status in ("running", "failed")
        [row] = [r for r in await engine.hosts() if r["name"] == "c"]
        down = f"slurmctld not answering (no answer within {slurm.SLURM_TIMEOUT} s)"
        if not all(j.status.finished for j in jobs.values()):  # a tick asked Slurm meanwhile
            assert row["last_error"] == down and row["slurm"]["error"] == down
            assert formatting.cluster(row["slurm"]).startswith(f"cluster: {down}")
        cluster.start_slurmctld()
        jobs = await run.until(lambda js: all(j.status.finished for j in js.values()), timeout=60)
        host = engine.hosts_registry.known("c")  # a tick or, with no job left, a look at its nodes
        await run.until(lambda js: host.last_error is None, timeout=15, what="the host's error gone")
    finally:
        await engine.close()
    assert {n: (j.status.value, j.exit_code) for n, j in jobs.items()} == {
        "ok": ("succeeded", 0), "bad": ("failed", 4), "early": ("succeeded", 0)}
    assert {n: j.slurm_id for n, j in jobs.items()} == ids
    assert sorted(cluster.cmd("squeue", "-h", "--states=all", "-o", "%i").split()) == sorted(ids.values())


def test_doctor_checks_slurm_and_runs_a_test_job_end_to_end(cli, slurm, tmp_path):
    cfg = tmp_path / "evopilot.toml"
    cfg.write_text(cluster_config(slurm, tmp_path) + host_toml(
        "bad", slurm.host_config(base_dir=str(tmp_path / "b2"), partition="nope")))
    code, out, err = cli("doctor", "c", "--json", "--config", cfg)
    assert code == 0, out + err
    checks = {c["name"]: c for c in json.loads(out)["c"]}
    assert "tmux" not in checks  # Slurm jobs run without it
    assert checks["slurm"]["ok"] and "partition debug: debug* up 1 idle" in checks["slurm"]["detail"]
    assert checks["test job"]["ok"] and "COMPLETED" in checks["test job"]["detail"]
    assert checks["base_dir on a compute node"]["ok"] and checks["uv on a compute node"]["ok"]
    assert not list((tmp_path / "cluster").glob(".evp-doctor-*"))  # it cleans up
    code, out, err = cli("doctor", "bad", "--json", "--config", cfg)
    assert code == 1
    bad = {c["name"]: c for c in json.loads(out)["bad"]}
    assert not bad["slurm"]["ok"] and bad["slurm"]["detail"] == "sinfo lists no partition nope"
    assert not bad["test job"]["ran"]


def test_jobs_of_one_shape_go_as_one_array_and_a_refused_array_falls_back(tmp_path):
    specs = [scripts.StartSpec(i, f"{tmp_path}/jobs/x-{i}", f"evp-x-{i}", "W", "", t)
             for i, t in ((1, None), (2, None), (3, 60.0))]
    text = sbatch.submit(HostConfig(kind="slurm"), specs, f"{tmp_path}/arrays")
    assert text.count("--array=") == 1 and "--array=0-1" in text  # job 3 has another time limit
    assert text.count(" sbatch ") == 0 and text.count("$(sbatch") == 4  # the array, then each alone
    assert "--output=" + f"{tmp_path}/arrays/evp-x-1/%a.out" in text
    assert text.count("mkdir") == 2  # all job directories at once, then the array's
    assert "--array" not in sbatch.submit(HostConfig(kind="slurm"), specs)  # arrays are asked for


async def test_an_array_of_twenty_each_task_its_own_job(on_cluster, slurm):
    run = await on_cluster()
    for i in range(20):
        await run.submit(f'echo "[1/1] task {i}"; echo \'{{"i": {i}}}\' > "$EVOPILOT_RESULTS"', f"t{i}")
    jobs = await run.until(lambda js: all(j.status.finished for j in js.values()), timeout=90)
    assert {j.status.value for j in jobs.values()} == {"succeeded"}
    assert all(j.metrics == {"i": float(j.name[1:])} for j in jobs.values())
    assert all(Path(j.log_path).read_text() == f"[1/1] task {j.name[1:]}\n" for j in jobs.values())
    arrays = {j.slurm_id.split("_")[0] for j in jobs.values()}
    assert len(arrays) == 1 and sorted(int(j.slurm_id.split("_")[1]) for j in jobs.values()) == list(range(20))
    wait_until(lambda: slurm.state(jobs["t7"].slurm_id) == "COMPLETED", timeout=15, what="COMPLETED")


@pytest.mark.slow
async def test_max_queued_bounds_what_is_in_slurms_queue(on_cluster):
    run = await on_cluster(max_queued=4)
    for i in range(10):
        await run.submit("sleep 0.5", f"s{i}")
    most = []

    def done(js):
        most.append(sum(j.status == "running" for j in js.values()))
        return all(j.status.finished for j in js.values())

    jobs = await run.until(done, timeout=90)
    assert {j.status.value for j in jobs.values()} == {"succeeded"} and max(most) == 4


async def test_a_start_sent_twice_submits_each_job_once(slurm, tmp_path):
    host = slurm_make(slurm, tmp_path)
    await host.connect()
    specs = [scripts.StartSpec(i, host.job_dir(f"x-{i}"), f"evp-x-{i}", scripts.wrapper(
        job_id=i, job_dir=host.job_dir(f"x-{i}"), workdir=str(tmp_path), command="true",
        done_channel="", pane=False), "", None) for i in (1, 2, 3)]
    first = await launch.start(host, specs)
    assert await launch.start(host, specs) == first and await launch.start(host, specs[1:2]) == {2: first[2]}
    array = first[1].slurm_id.split("_")[0]
    assert [s.slurm_id for s in first.values()] == [f"{array}_{i}" for i in range(3)]
    assert len(slurm.cmd("squeue", "-h", "-r", "--states=all", "-j", array, "-o", "%i").split()) == 3


def slurm_make(cluster, tmp_path):
    return slurm.make("c", cluster.host_config(base_dir=str(tmp_path / "b")), tmp_path, None)


@pytest.mark.slow
async def test_a_drained_node_keeps_jobs_pending_with_the_reason_and_stop_works(
        slurm_factory, home, tmp_path):
    from evopilot.core.engine import Engine

    cluster = slurm_factory()
    cluster.cmd("scontrol", "update", f"nodename={cluster.node}", "state=drain", "reason=maintenance")
    engine = await Engine.open(parse_config(cluster_config(cluster, tmp_path)), home)
    try:
        run = Run(engine, tmp_path)
        await run.submit("echo never", "waiting")
        jobs = await run.until(lambda js: (js["waiting"].error_message or "").startswith("Slurm: pending ("),
                               what="the pending reason")
        assert any(w in jobs["waiting"].error_message for w in ("DRAINED", "ReqNodeNotAvail", "Resources"))
        [row] = [r for r in await engine.hosts() if r["name"] == "c"]
        assert row["slurm"]["nodes"] == {"drained": 1}
        assert formatting.cluster(row["slurm"]) == "cluster: 1 drained · jobs: 1 pending"
        await engine.stop(jobs["waiting"].id)
        jobs = await run.until(lambda js: js["waiting"].status.finished)
    finally:
        await engine.close()
    assert jobs["waiting"].status == "cancelled" and not Path(jobs["waiting"].job_dir, "started_at").exists()


@pytest.mark.slow
async def test_login_node_unreachable_30s_jobs_keep_running_and_logs_are_whole(sshd, slurm, home, tmp_path):
    from evopilot.core.engine import Engine

    cfg = sshd.host_config(kind="slurm", partition=slurm.partition,
                           env={"SLURM_CONF": str(slurm.conf)}, ssh_config=sshd.ssh_config)
    engine = await Engine.open(parse_config(ENGINE + host_toml("c", cfg)), home)
    ticker = "for i in $(seq 1 60); do echo \"[$i/60] tick $i\"; sleep 0.5; done"
    try:
        run = Run(engine, tmp_path)
        await run.submit(ticker, "ticker")
        jobs = await run.until(lambda js: js["ticker"].progress_current >= 3, what="ticking")
        sshd.stop()
        sshd.drop_connections()
        back = time.monotonic() + 30
        jobs = await run.until(lambda js: time.monotonic() > back, timeout=40,
                               what="30 s of the worker loop with the login node away")
        assert jobs["ticker"].status == "running"
        assert slurm.state(jobs["ticker"].slurm_id) in ("RUNNING", "COMPLETED")  # it ran on
        sshd.start()
        jobs = await run.until(lambda js: js["ticker"].status.finished, timeout=60)
    finally:
        await engine.close()
    ticker = jobs["ticker"]
    assert ticker.status == "succeeded" and ticker.progress_current == 60
    assert Path(ticker.log_path).read_bytes() == Path(ticker.job_dir, "log").read_bytes()
    assert Path(ticker.log_path).read_text().splitlines() == [f"[{i}/60] tick {i}" for i in range(1, 61)]


@pytest.mark.slow
def test_an_evolution_experiment_evaluates_on_the_cluster(cli, slurm, tmp_path):
    from tests.test_evolution import experiment, make_repo
    from tests.test_evolution_more import slow_benchmark

    root = make_repo(tmp_path / "evolve-demo")
    slow_benchmark(root, 1.0)
    cfg = tmp_path / "evopilot.toml"
    cfg.write_text(cluster_config(slurm, tmp_path))

    def run(*args):
        return cli(*args, "--config", cfg)

    assert run("project", "add", root)[0] == 0
    exp = experiment(root, timeout_s='timeout_s = 120\nhosts = ["c"]', parallel="parallel = 2")
    code, out, err = run("evolve", "start", exp, "--iterations", "4", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 4 and st["best"] is not None
    evals = [j for j in json.loads(run("jobs", "--json")[1]) if j["kind"] == "evaluation"]
    assert len(evals) >= 3 and all(j["host"] == "c" and j["status"] == "succeeded" and j["slurm_id"]
                                   for j in evals)
    wait_until(lambda: all(slurm.state(j["slurm_id"]) == "COMPLETED" for j in evals), timeout=15,
               what="COMPLETED in Slurm")


@pytest.mark.slow
async def test_a_job_squeue_forgot_is_settled_from_the_job_completion_log(slurm_factory, home, tmp_path):
    """Cancelled from outside while no evopilot ran, then forgotten by a slurmctld that lost
    its state: squeue does not know it, the job-completion log (``sacct -c``) does."""
    from evopilot.core.engine import Engine

    cluster = slurm_factory()
    config = parse_config(cluster_config(cluster, tmp_path, sbatch_options=["--hold"]))
    engine = await Engine.open(config, home)
    try:
        run = Run(engine, tmp_path)
        await run.submit("echo never", "held")
        jobs = await run.until(lambda js: (js["held"].error_message or "").startswith("Slurm: pending"))
    finally:
        await engine.close()
    slurm_id = jobs["held"].slurm_id
    cluster.cmd("scancel", slurm_id)
    wait_until(lambda: slurm_id in cluster.cmd("sacct", "-c", "-n", "-P", "-o", "jobid", check=False),
               timeout=15, what="the job in the job-completion log")
    cluster.kill_slurmctld()
    cluster.start_slurmctld(clear=True)
    assert not cluster.cmd("squeue", "-h", "--states=all", "-o", "%i").strip()
    engine = await Engine.open(config, home)
    try:
        held = (await Run(engine, tmp_path).until(lambda js: js["held"].status.finished))["held"]
    finally:
        await engine.close()
    assert held.status == "cancelled"
    assert held.error_message.startswith(f"Slurm job {slurm_id}: cancelled in Slurm (CANCELLED")


def test_doctor_of_a_slurm_host_through_its_login_node(cli, sshd, slurm, tmp_path):
    """The login node is the test sshd: its SSH checks, then Slurm's, all over that connection."""
    from evopilot.core.hosts.doctor import SLURM_CHECKS

    cfg = tmp_path / "evopilot.toml"
    cfg.write_text(ENGINE + host_toml("c", sshd.host_config(
        kind="slurm", partition=slurm.partition, env={"SLURM_CONF": str(slurm.conf)},
        ssh_config=sshd.ssh_config)))
    code, out, err = cli("doctor", "c", "--json", "--config", cfg)
    assert code == 0, out + err
    checks = {c["name"]: c for c in json.loads(out)["c"]}
    assert all(c["ok"] and c["ran"] for c in checks.values()), checks
    assert {"host key", *SLURM_CHECKS} <= set(checks) and "tmux" not in checks
    assert "COMPLETED" in checks["test job"]["detail"]
