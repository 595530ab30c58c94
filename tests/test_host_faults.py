"""The engine with hosts that are slow or unreachable: each host advances on its own, an
unreachable host is not re-dialled every tick, commands leave SSH hosts to a live worker, and
a log backlog is caught up without waiting a poll interval per chunk. Real tmux and sshd; the
"tarpit" host is a TCP listener on 127.0.0.1 that accepts and never speaks SSH."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from evopilot.core.config import Config, EngineConfig, HostConfig
from evopilot.core.engine import Engine
from evopilot.core.hosts.base import HostState
from evopilot.core.hosts.ssh import HostUnavailable
from evopilot.core.models import JobStatus
from tests.conftest import REPO, evopilot_cmd, stop_process, wait_until


class Tarpit:
    """Accepts TCP connections, counts them, and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture
def tarpit():
    t = Tarpit()
    yield t
    t.close()


def tarpit_host(tarpit, connect_timeout: float) -> HostConfig:
    return HostConfig(hostname="127.0.0.1", port=tarpit.port, connect_timeout=connect_timeout,
                      use_agent=False, ssh_config="")


def home() -> Path:
    return Path(os.environ["EVOPILOT_HOME"])


async def test_local_jobs_do_not_wait_for_a_host_that_never_answers(tarpit, tmp_path):
    config = Config(engine=EngineConfig(poll_interval=0.1, remote_poll_interval=0.1),
                    hosts={"a-tarpit": tarpit_host(tarpit, connect_timeout=60)})
    async with await Engine.open(config, home()) as engine:
        await engine.submit("true", host="a-tarpit", name="stuck")
        local = [await engine.submit(f"echo {i}", workdir=str(tmp_path)) for i in range(6)]
        await engine.run_forever(until_done=[j.id for j in local])
        assert [(await engine.job(j.id)).status for j in local] == [JobStatus.SUCCEEDED] * 6
        tar = engine.hosts_registry.known("a-tarpit")
        # the local jobs all ran while the tarpit's one connect attempt was still under way
        assert tar.state == HostState.CONNECTING and tar.connect_attempts == 1
        assert len(tarpit.accepted) == 1


async def test_a_host_that_never_connected_backs_off(tarpit):
    config = Config(hosts={"mute": tarpit_host(tarpit, connect_timeout=0.5)})
    async with await Engine.open(config, home()) as engine:
        for _ in range(3):
            with pytest.raises(HostUnavailable):
                await engine.host("mute")
        # the first attempt timed out; the next ones fell within its backoff: not dialled
        assert engine.hosts_registry.known("mute").connect_attempts == 1
        assert len(tarpit.accepted) == 1
        await engine.tick_host("mute")  # the loop's tick skips it the same way
        assert engine.hosts_registry.known("mute").connect_attempts == 1


async def test_dispatch_starts_a_reachable_host_while_another_connects(tarpit, sshd, tmp_path):
    config = Config(hosts={"a-tarpit": tarpit_host(tarpit, connect_timeout=60),
                           "h1": sshd.host_config().model_copy(update={"ssh_config": sshd.ssh_config})})
    async with await Engine.open(config, home()) as engine:
        await engine.submit("sleep 30", host="a-tarpit")
        job = await engine.submit("sleep 30", host="h1", workdir="/tmp")
        dispatch = asyncio.create_task(engine.dispatch())
        try:
            for _ in range(300):  # the tarpit sorts first, and its connect takes a minute
                if any(s["name"] == "start" for s in await engine.job_steps(job.id)):
                    break  # started in its tmux session on h1 (claimed is not started)
                await asyncio.sleep(0.1)
            assert any(s["name"] == "start" for s in await engine.job_steps(job.id))
            assert not dispatch.done()
        finally:
            dispatch.cancel()
            await engine.kill(job.id)


@pytest.mark.slow
def test_worker_until_idle_ends_and_names_jobs_on_an_unreachable_host(cli, tarpit, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[engine]\npoll_interval = 0.1\nremote_poll_interval = 0.1\n"
                   f"[hosts.mute]\nhostname = '127.0.0.1'\nport = {tarpit.port}\n"
                   "connect_timeout = 1\nuse_agent = false\nssh_config = ''\n")

    async def queue() -> list[int]:
        config = Config(hosts={"mute": tarpit_host(tarpit, 1)})
        async with await Engine.open(config, home()) as engine:
            stuck = await engine.submit("true", host="mute", name="stuck")
            ok = await engine.submit("true", workdir=str(tmp_path), name="fine")
            return [stuck.id, ok.id]

    stuck, ok = asyncio.run(queue())
    code, out, err = cli("worker", "--until-idle", "--config", cfg)
    assert code == 1, out + err
    assert f"job {stuck} (stuck, queued) waits for unreachable host mute" in err
    assert "timed out" in err and f"job {ok} " not in err
    js = {j["id"]: j for j in json.loads(cli("jobs", "--json", "--config", cfg)[1])}
    assert js[ok]["status"] == "succeeded" and js[stuck]["status"] == "queued"


def test_queue_resume_waits_for_no_hosts_connect(cli, tarpit, tmp_path):
    """With no worker, `queue resume` starts what this machine can and leaves SSH hosts it is
    not connected to for a worker: it never waits for a connect (here, a 30 s timeout)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[hosts.mute]\nhostname = '127.0.0.1'\nport = {tarpit.port}\n"
                   "connect_timeout = 30\nuse_agent = false\nssh_config = ''\n")
    assert cli("queue", "pause", "--config", cfg)[0] == 0

    async def queue() -> list[int]:
        async with await Engine.open(Config(hosts={"mute": tarpit_host(tarpit, 30)}), home()) as engine:
            stuck = await engine.submit("true", host="mute", name="stuck")
            ok = await engine.submit("sleep 30", workdir=str(tmp_path), name="fine")
            return [stuck.id, ok.id]

    stuck, ok = asyncio.run(queue())
    t = time.monotonic()
    code, out, err = cli("queue", "resume", "--config", cfg)
    assert code == 0, err
    assert time.monotonic() - t < 10, "queue resume waited for the host's connect"
    assert tarpit.accepted == [], "queue resume dialled the host"
    assert "jobs queued on mute start when a worker (`evopilot worker`) or the app runs" in out
    js = {j["id"]: j for j in json.loads(cli("jobs", "--json", "--config", cfg)[1])}
    assert js[ok]["status"] == "running" and js[stuck]["status"] == "queued"
    assert cli("kill", str(ok), "--config", cfg)[0] == 0


@pytest.mark.slow
def test_commands_leave_ssh_hosts_to_a_live_worker(cli, tarpit, tmp_path):
    """`jobs` reconciles; while a worker runs it does not dial the SSH hosts (the worker keeps
    their jobs fresh); once the worker is gone, it does again."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[engine]\npoll_interval = 0.1\nremote_poll_interval = 0.1\n"
                   f"[hosts.mute]\nhostname = '127.0.0.1'\nport = {tarpit.port}\n"
                   "connect_timeout = 30\nuse_agent = false\nssh_config = ''\n")

    async def running_on_tarpit() -> None:
        from evopilot.core.db import jobs as jobs_db

        async with await Engine.open(Config(hosts={"mute": tarpit_host(tarpit, 30)}), home()) as engine:
            job = await engine.submit("sleep 100", host="mute")
            async with jobs_db.transaction(engine.db):  # as if a worker had started it there
                await jobs_db.update_job(engine.db, job.id, status="running", job_dir="/nowhere",
                                         tmux_session="evp-x")

    asyncio.run(running_on_tarpit())
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(evopilot_cmd("worker", "--config", cfg), cwd=REPO, stdout=log,
                              stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        wait_until(lambda: len(tarpit.accepted) == 1, what="the worker dialling the host")
        wait_until(lambda: sqlite3.connect(home() / "evopilot.db").execute(
            "SELECT count(*) FROM meta WHERE key = 'worker_beat'").fetchone()[0], what="a heartbeat")
        t = time.monotonic()
        code, out, err = cli("jobs", "--config", cfg)
        assert code == 0, err
        assert time.monotonic() - t < 10  # not the 30 s connect timeout
        assert len(tarpit.accepted) == 1, "the command dialled the host itself"
    finally:
        stop_process(worker)
        log.close()
    cfg.write_text(cfg.read_text().replace("connect_timeout = 30", "connect_timeout = 1"))
    # no worker any more: `jobs` reconciles the host itself (once the last beat is stale)
    wait_until(lambda: cli("jobs", "--config", cfg)[0] == 0 and len(tarpit.accepted) >= 2,
               what="`jobs` dialling the host")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "ssh", "ssh, no OpenSSH login"])
async def test_a_log_backlog_is_caught_up_without_waiting_for_polls(where, request, monkeypatch, tmp_path):
    """A job writes many chunks' worth of log and exits: the loop reads chunk after chunk at
    once. With a poll interval of 60 s, a single poll spent waiting would be seen. Over SSH
    the log is copied by OpenSSH's ``ssh`` (asyncssh's reads are several times slower); where
    ``ssh`` cannot log in (here an ``ssh`` that is refused), chunk by chunk through asyncssh."""
    from evopilot.core.hosts.ssh import SshHost

    chunk = 64 * 1024
    hosts = {}
    copies = []
    if where.startswith("ssh"):
        sshd = request.getfixturevalue("sshd")
        hosts["h1"] = sshd.host_config().model_copy(update={"ssh_config": sshd.ssh_config})
        copy_from = SshHost.copy_from

        async def counted(self, *args):
            copies.append(await copy_from(self, *args))
            return copies[-1]

        monkeypatch.setattr(SshHost, "copy_from", counted)
    if where == "ssh, no OpenSSH login":
        refused = tmp_path / "bin" / "ssh"
        refused.parent.mkdir()
        refused.write_text("#!/bin/sh\necho 'Permission denied (publickey).' >&2\nexit 255\n")
        refused.chmod(0o755)
        monkeypatch.setenv("PATH", f"{refused.parent}:{os.environ['PATH']}")
    config = Config(engine=EngineConfig(poll_interval=60, remote_poll_interval=60,
                                        log_chunk_bytes=chunk), hosts=hosts)
    script = "head -c 3000000 /dev/zero | tr '\\0' x | fold -w 99"  # 3 MB: 46 chunks
    async with await Engine.open(config, home()) as engine:
        job = await engine.submit(script, host="h1" if hosts else "local", workdir="/tmp")
        waits = []
        wait = engine.scheduler.wait_for_work

        async def timed_wait(timeout: float) -> None:
            t = time.monotonic()
            await wait(timeout)
            waits.append(time.monotonic() - t)
            assert waits[-1] < 30, "the loop waited a whole poll interval"

        engine.scheduler.wait_for_work = timed_wait
        await engine.run_forever(until_done=[job.id])
        job = await engine.job(job.id)
        assert job.status == JobStatus.SUCCEEDED
        on_host = Path(job.job_dir, "log").read_bytes()  # the sshd's base dir is on this machine
        assert job.log_offset == len(on_host) > 3000000
        assert Path(job.log_path).read_bytes() == on_host
        if where == "ssh":  # copied by ssh in a few goes, not chunk by chunk
            assert copies and sum(copies) == len(on_host) and len(copies) <= 5, copies
        else:  # a round per chunk, none of them a whole poll
            assert len(waits) >= 3000000 // chunk
            assert copies == ([None] if where.startswith("ssh") else []), copies


async def test_an_ssh_job_that_ends_before_its_watcher_waits_is_seen_at_once(sshd):
    """A job that ends at once can signal its end before the completion watcher's ``tmux
    wait-for`` is there; the tmux server then exits with its last session and the signal is
    gone. The loop still sees that end without waiting a poll interval (60 s here)."""
    hosts = {"h1": sshd.host_config().model_copy(update={"ssh_config": sshd.ssh_config})}
    config = Config(engine=EngineConfig(poll_interval=60, remote_poll_interval=60), hosts=hosts)
    for _ in range(3):  # each engine's first start races its watcher's first wait
        async with await Engine.open(config, home()) as engine:
            job = await engine.submit("true", host="h1", workdir="/tmp")
            wait = engine.scheduler.wait_for_work

            async def timed_wait(timeout: float) -> None:
                t = time.monotonic()
                await wait(timeout)
                assert time.monotonic() - t < 30, "the loop waited a whole poll interval"

            engine.scheduler.wait_for_work = timed_wait
            await engine.run_forever(until_done=[job.id])
            assert (await engine.job(job.id)).status == JobStatus.SUCCEEDED


async def test_a_log_cut_on_the_host_after_it_was_mirrored_is_cut_in_the_mirror(sshd, tmp_path):
    """A tty job's wrapper writes an end marker into its log and cuts it off again once tmux has
    copied it (scripts._tty): a tick that mirrored the marker in between must not leave it in
    the mirror. Here the job cuts its own log's tail once the mirror has it."""
    flag = tmp_path / "cut"
    config = Config(engine=EngineConfig(poll_interval=0.1, remote_poll_interval=0.1),
                    hosts={"h1": sshd.host_config().model_copy(update={"ssh_config": sshd.ssh_config})})
    command = (f"printf 'keep\\n'; printf 'cut-me'; while [ ! -e {flag} ]; do sleep 0.05; done; "
               'truncate -s 5 "$EVOPILOT_JOB_DIR/log"')
    async with await Engine.open(config, home()) as engine:
        job = await engine.submit(command, host="h1", workdir="/tmp")
        loop = asyncio.create_task(engine.run_forever(until_done=[job.id]))
        try:
            for _ in range(600):
                mirror = (await engine.job(job.id)).log_path
                if mirror and os.path.exists(mirror) and Path(mirror).read_bytes().endswith(b"cut-me"):
                    break
                await asyncio.sleep(0.05)
            assert Path(mirror).read_bytes() == b"keep\ncut-me"
            flag.touch()
            await asyncio.wait_for(loop, 60)
        finally:
            loop.cancel()
        done = await engine.job(job.id)
    assert done.status == JobStatus.SUCCEEDED, done
    assert (Path(done.job_dir) / "log").read_bytes() == b"keep\n"
    assert Path(done.log_path).read_bytes() == b"keep\n" and done.log_offset == 5
