"""The shell scripts sent to hosts, run with real bash: byte-exact log reads, probe parsing."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evopilot.core.config import HostConfig
from evopilot.core.hosts import probe
from evopilot.core.hosts.local import LocalHost
from evopilot.core.hosts.tmux import new_session, send_keys
from evopilot.core.jobs import scripts
from evopilot.core.jobs.launch import start_here
from evopilot.core.quoting import quote
from tests.conftest import wait_until


@pytest.mark.parametrize("variant", ["python3", "shell-fallback", "few-shell"])
def test_read_ranges_is_byte_exact(tmp_path, variant):
    data = b"ab\xff\xfe\n" + b"y" * (3 * 1024 * 1024) + b"\r\nend"
    log = tmp_path / "it's a log"
    log.write_bytes(data)
    reqs = [(str(log), 2, 5), (str(tmp_path / "missing"), 0, 5), (str(log), 0, 10**8),
            (str(log), len(data), 10), (str(log), 10, 0)]
    want = [data[2:7], b"", data, b"", b""]
    if variant == "few-shell":
        reqs, want = reqs[:probe.FEW_RANGES], want[:probe.FEW_RANGES]
    script = probe.read_ranges(reqs)
    assert ("python3" in script) == (variant != "few-shell")
    if variant == "shell-fallback":
        script = script.replace("command -v python3", "command -v no-such-python3")
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert probe.parse_read_ranges(out, len(reqs)) == want


def test_copy_from_prints_the_file_from_an_offset(tmp_path):
    data = b"ab\xff\xfe\n" + b"y" * (3 * 1024 * 1024) + b"\r\nend"
    log = tmp_path / "it's a log"
    log.write_bytes(data)
    for path, offset, want in [(log, 0, data), (log, 3, data[3:]), (log, len(data), b""),
                               (log, len(data) + 5, b""), (tmp_path / "missing", 0, b"")]:
        out = subprocess.run(["bash", "-c", probe.copy_from(str(path), offset)], capture_output=True)
        assert (out.stdout, out.stderr) == (want, b"")


def test_probe_reports_files_and_sessions(tmp_path):
    d = tmp_path / "job dir"
    d.mkdir()
    (d / "log").write_bytes(b"x" * 123)
    (d / "pid").write_text("4242\n")
    (d / "exit_code").write_text("3\n")
    (d / "hangup").write_text("")
    (d / "started_at").write_text("1700000000.250000\n")
    (d / "finished_at").write_text("1700000003,500000\n")  # a locale with a decimal comma
    other = tmp_path / "not started"
    jobs = [(1, str(d), "s1"), (2, str(other), "s2")]
    out = subprocess.run(["bash", "-c", probe.probe(jobs)], capture_output=True).stdout
    got = probe.parse_probe(out, jobs)
    assert got[1] == probe.Probe(exit_code=3, pgid=4242, log_size=123, session_alive=False, hangup=True,
                                 started_at=1700000000.25, finished_at=1700000003.5, log_exists=True)
    assert got[2] == probe.Probe(exit_code=None, pgid=None, log_size=0, session_alive=False)
    assert got[2].never_started and not got[1].never_started
    # the local host reads the same files directly, with the same answers
    local = LocalHost("local", HostConfig(), tmp_path)
    assert asyncio.run(local.probe(jobs)) == got


def test_probe_finds_a_wrapped_job_alive_without_tmux_and_asks_tmux_when_unsure(tmp_path):
    """A job whose command runs under its wrapper is alive from /proc alone: the probe then
    starts no ``tmux`` (here: none on its PATH). A job whose exit code is being written (the
    file there, still empty) is no job without a session: tmux is asked, and says it is alive
    (else the monitor would take it for lost)."""
    d = tmp_path / "it's a $dir"
    d.mkdir()
    (d / "run.sh").write_text(scripts.wrapper(job_id=1, job_dir=str(d), workdir=str(tmp_path),
                                              command="sleep 30", done_channel="t-done"))
    subprocess.run(["bash", "-c", new_session("t-1", f"bash {quote(str(d / 'run.sh'))}")], check=True)
    wait_until(lambda: (d / "pid").exists() and (d / "pid").read_text().endswith("\n"))
    no_tmux = tmp_path / "bin"
    no_tmux.mkdir()
    for tool in ("find", "nproc"):
        (no_tmux / tool).symlink_to(subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True,
                                                   text=True).stdout.strip())
    jobs = [(1, str(d), "t-1")]
    out = subprocess.run(["/bin/bash", "-c", probe.probe(jobs)], capture_output=True,
                         env={**os.environ, "PATH": str(no_tmux)}).stdout
    got = probe.parse_probe(out, jobs)[1]
    assert got.session_alive and got.exit_code is None and got.pgid == int((d / "pid").read_text())

    other = tmp_path / "ending"  # its command has ended; its wrapper writes the exit code
    other.mkdir()
    (other / "exit_code").write_bytes(b"")
    jobs = [(2, str(other), "t-1")]  # the session of a wrapper still there
    got = probe.parse_probe(subprocess.run(["bash", "-c", probe.probe(jobs)], capture_output=True).stdout, jobs)[2]
    assert got.session_alive and got.exit_code is None


async def test_local_probe_reads_an_exit_code_written_while_it_asked_tmux(tmp_path):
    """This machine's probe reads a job's files, then, its command gone, asks tmux for its
    session. A wrapper that writes the exit code, the last log line and results.json and ends
    in between is seen ended with all of them, not taken for a session gone without an exit
    code (which made a 12-step benchmark of the demo `lost` in a full run)."""
    d = tmp_path / "job"
    d.mkdir()
    (d / "log").write_bytes(b"step 11\n")
    (d / "pid").write_text("999999999\n")  # its command: gone
    host = LocalHost("local", HostConfig(), tmp_path)
    asked = []

    async def tmux_while_the_wrapper_ends(script: str) -> bytes:
        asked.append(script)
        with open(d / "log", "ab") as f:
            f.write(b"step 12\n")
        (d / "results.json").write_text('{"metrics": {}}')
        (d / "exit_code").write_text("0\n")
        return b""  # its session is gone with it

    host._exec = tmux_while_the_wrapper_ends
    got = (await host.probe([(1, str(d), "evp-1")]))[1]
    assert asked, "tmux was asked"
    assert got.exit_code == 0 and got.results_exists and got.log_size == len(b"step 11\nstep 12\n")


def test_tty_wrapper_and_send_keys_with_awkward_paths_and_text(tmp_path):
    """The tty wrapper run by tmux as a job's session would be, in a directory whose name needs
    quoting at two levels (the wrapper's bash, and pipe-pane's sh); a line typed by send_keys."""
    d = tmp_path / "it's a $dir"
    d.mkdir()
    (d / "log").write_bytes(b"")
    command = "printf 'in: '; read -r x; echo \"got [$x]\"; exit 4"
    wrapper = scripts.wrapper(job_id=9, job_dir=str(d), workdir=str(tmp_path), command=command,
                              done_channel="test-done", mode="tty")
    (d / "run.sh").write_text(wrapper)
    subprocess.run(["bash", "-c", new_session("job-9", f"bash {quote(str(d / 'run.sh'))}")], check=True)
    wait_until(lambda: (d / "log").read_bytes() == b"in: ", what="the prompt in the log")
    pgid = int((d / "pid").read_text())  # the command's group, recorded before it ran
    procs = subprocess.run(["ps", "-eo", "pgid=,args="], capture_output=True, text=True).stdout
    assert [p for p in procs.splitlines() if p.split()[0] == str(pgid) and "read -r x" in p]
    text = "-l $X 'q' \\ \"dq\" ;C-c"  # neither an option, a key name nor shell syntax
    subprocess.run(["bash", "-c", send_keys("job-9", text)], check=True)
    wait_until(lambda: (d / "exit_code").exists(), what="the exit code")
    assert (d / "exit_code").read_text() == "4\n"
    assert (d / "log").read_bytes() == f"in: {text}\r\ngot [{text}]\r\n".encode()
    assert not (d / "hangup").exists()


@pytest.mark.parametrize("starter", ["script", "here"])
def test_start_takes_env_from_stdin_not_from_its_text(tmp_path, starter):
    """Two jobs started by one script, their env files read from stdin byte-exact (multibyte,
    quotes, newlines), written 0600; the secret is in neither the script nor the wrapper. The
    local starter (``launch.start_here``, no shell) makes the same files, and a second start
    runs nothing again."""
    envs = [{"TOKEN": "s3cr€t 'q' \"dq\"\nline2", "P": "/a b"}, {"TOKEN": "other"}]
    specs = []
    for i, env in enumerate(envs, 1):
        d = str(tmp_path / f"job {i}")
        w = scripts.wrapper(job_id=i, job_dir=d, workdir=str(tmp_path),
                            command='printf "%s|%s" "$TOKEN" "${P-}" > "$EVOPILOT_JOB_DIR/out"',
                            done_channel="t-done")
        specs.append(scripts.StartSpec(i, d, f"t-{i}", w, scripts.env_file(env)))
    script = scripts.start(specs)
    assert "s3cr" not in script and "other" not in script and all("s3cr" not in s.wrapper for s in specs)
    if starter == "script":
        res = subprocess.run(["bash", "-c", script], input=scripts.start_stdin(specs), capture_output=True)
        assert scripts.parse_start(res.stdout) == {1: True, 2: True}, res.stderr
    else:
        assert asyncio.run(start_here(specs)) == ({1: "t-1", 2: "t-2"}, "")
    wait_until(lambda: all((tmp_path / f"job {i}" / "exit_code").exists() for i in (1, 2)))
    if starter == "here":
        (tmp_path / "job 1" / "out").unlink()
        assert asyncio.run(start_here(specs)) == ({1: "t-1", 2: "t-2"}, "")
        assert not (tmp_path / "job 1" / "out").exists(), "started twice"
        assert (tmp_path / "job 1").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "job 1" / "run.sh").stat().st_mode & 0o777 == 0o600
        (tmp_path / "job 1" / "out").write_text(f"{envs[0]['TOKEN']}|/a b")
    assert (tmp_path / "job 1" / "out").read_text() == f"{envs[0]['TOKEN']}|/a b"
    assert (tmp_path / "job 2" / "out").read_text() == "other|"
    for i in (1, 2):
        env = tmp_path / f"job {i}" / "env"
        assert env.stat().st_mode & 0o777 == 0o600
        assert env.read_text() == scripts.env_file(envs[i - 1])


@pytest.mark.parametrize("starter", ["script", "here"])
def test_a_start_killed_before_writing_the_wrapper_leaves_nothing_the_next_start_trusts(tmp_path, starter):
    """A start killed (with evopilot, kill -9) right after creating run.sh and before writing
    it leaves an empty file: the next start must write it, not run the empty file (bash runs
    it without a word, and the job was lost in the kill drill)."""
    d = tmp_path / "job 1"
    d.mkdir(mode=0o700)
    (d / "run.sh").touch(mode=0o600)
    w = scripts.wrapper(job_id=1, job_dir=str(d), workdir=str(tmp_path),
                        command='echo ran > "$EVOPILOT_JOB_DIR/out"', done_channel="t-done")
    specs = [scripts.StartSpec(1, str(d), "t-1", w)]
    if starter == "script":
        res = subprocess.run(["bash", "-c", scripts.start(specs)], input=b"", capture_output=True)
        assert scripts.parse_start(res.stdout) == {1: True}, res.stderr
    else:
        assert asyncio.run(start_here(specs)) == ({1: "t-1"}, "")
    wait_until(lambda: (d / "exit_code").exists(), what="the exit code")
    assert (d / "run.sh").read_text() == w and (d / "out").read_text() == "ran\n"


def test_the_completion_watcher_dies_with_the_process_that_started_it():
    """A kill -9 of evopilot must not leave its `tmux wait-for` waiting on (a process of the run
    that outlives it); a watcher whose parent lives on still wakes on a job's end."""
    subprocess.run(["tmux", "new-session", "-d", "-s", "keep", "sleep 60"], check=True)
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               "subprocess.Popen(['bash', '-c', sys.argv[1]], start_new_session=True)\n"
                               "time.sleep(60)\n", scripts.wait_done("chan-watch")])

    def watchers() -> list[str]:
        out = subprocess.run(["pgrep", "-f", "^tmux wait-for chan-watch$"], capture_output=True, text=True).stdout
        return out.split()

    wait_until(lambda: len(watchers()) == 1, what="the watcher")
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_until(lambda: not watchers(), 5, "the watcher gone with its parent")

    watcher = subprocess.Popen(["bash", "-c", scripts.wait_done("chan-watch")])
    wait_until(lambda: len(watchers()) == 1, what="the watcher")

    def woken() -> bool:
        # pgrep sees the client before the server has its wait: a signal before that wakes
        # only the killed watcher's wait the server still holds, so signal until it ends
        subprocess.run(["tmux", "wait-for", "-S", "chan-watch"], check=True)
        return watcher.poll() is not None

    wait_until(woken, 10, "the watcher woken")
    assert watcher.wait(5) == 0


@pytest.mark.slow
def test_the_completion_watcher_wakes_when_a_job_ends_as_its_wait_begins():
    """tmux 3.3a: a ``wait-for`` that reaches a server whose last session has just ended can
    wait until another client comes (here 2 of 300 before the fix, with none other there for
    ever: an SSH job's end was seen a poll interval late). Each round a job signals its end and
    the watcher begins waiting at about that moment: every wait ends by itself."""
    for i in range(300):
        # a new-session that reaches the last one's exiting server fails: start it again
        wait_until(lambda: subprocess.run(["tmux", "new-session", "-d", "-s", f"j{i}", f"exec tmux wait-for -S c{i}"],
                                          stderr=subprocess.DEVNULL).returncode == 0, what="the job's session")
        time.sleep(random.random() * 0.02)
        try:  # the wait ends woken, or failing for want of a server: both wake the loop
            subprocess.run(["bash", "-c", scripts.wait_done(f"c{i}")], stderr=subprocess.DEVNULL, timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"round {i}: the watcher's wait did not end")


def test_probe_reports_the_hosts_load_in_the_same_script(tmp_path, monkeypatch):
    """CPU load, memory and GPUs come in the probe's own output (no round trip of their own).
    The GPU lines come from a stand-in ``nvidia-smi`` on PATH (tests/programs): these machines
    have no GPU; it prints what the real one prints for the query the probe makes."""
    jobs = [(1, str(tmp_path / "d"), "s1")]
    out = subprocess.run(["bash", "-c", probe.probe(jobs)], capture_output=True).stdout
    load = probe.parse_probe_load(out)
    assert load is not None and load.cpu is not None and load.cpus == os.cpu_count()
    assert load.mem_total and 0 < load.mem_available <= load.mem_total and load.gpus == ()
    assert probe.parse_probe(out, jobs)[1].log_size == 0  # the job sections are unchanged

    programs = Path(__file__).parent / "programs"
    monkeypatch.setenv("PATH", f"{programs}:{os.environ['PATH']}")
    out = subprocess.run(["bash", "-c", probe.probe(jobs)], capture_output=True).stdout
    gpus = probe.parse_probe_load(out).gpus
    assert gpus == (probe.Gpu(87.0, 10240.0, 24576.0), probe.Gpu(0.0, 3.0, 24576.0))
    assert probe.local_load().gpus == gpus
    row = probe.load_dict(probe.parse_probe_load(out))
    from evopilot.core.formatting import host_load

    cpu, mem, gpu = host_load(row)
    assert cpu.endswith(f"/{os.cpu_count()}") and mem.endswith("%")
    assert gpu == "87% 10.0/24G 0% 0.0/24G"
