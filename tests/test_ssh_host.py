"""SshHost against a real OpenSSH sshd on 127.0.0.1 (fixtures in tests/sshd.py): no mocks."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from evopilot.core.config import HostConfig
from evopilot.core.hosts.base import HostState
from evopilot.core.hosts.ssh import (
    HostConnectError,
    HostUnavailable,
    KeyFile,
    NeedsPassphrase,
    NoAgent,
    NoKey,
    SshHost,
    key_status,
    ssh_command_args,
)
from evopilot.core.hosts.tmux import kill_session, list_sessions, new_session, session_name
from evopilot.core.quoting import quote


def _keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)],
        check=True, capture_output=True,
    )
    return path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and text.strip() == text
    return text


def _processes_with(needle: str) -> list[int]:
    """Pids whose command line (NUL-separated) contains ``needle``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if needle.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


async def _until(pred, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = await pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


# --- commands ------------------------------------------------------------------------------


async def test_run_status_stdout_stderr(sshd):
    host = sshd.make_host()
    await host.connect()
    try:
        assert host.state == HostState.CONNECTED and host.last_error is None
        res = await host.run("echo out; echo err >&2; exit 3")
        assert (res.exit_status, res.stdout, res.stderr) == (3, b"out\n", b"err\n")
        # quoting: the script reaches bash verbatim
        tricky = "printf '%s|' \"$HOME\" 'a b' \"it's\" '$(x)' `printf q`"
        res = await host.run(tricky)
        assert res.stdout == f"{sshd.home}|a b|it's|$(x)|q|".encode()
        res = await host.run("kill -9 $$")
        assert res.exit_status == 137 and b"KILL" in res.stderr
    finally:
        await host.close()
    assert host.state == HostState.DISCONNECTED


async def test_stdin_is_binary_exact_and_absent_stdin_is_eof(sshd):
    host = sshd.make_host()
    await host.connect()
    try:
        data = bytes(range(256)) * 4096 + b"\xff\xfe no newline"
        res = await host.run("cat", stdin=data)
        assert res.ok and res.stdout == data
        # without stdin the command must see EOF at once, not hang
        res = await host.run("cat; echo end", timeout=5)
        assert res.stdout == b"end\n"
        res = await host.run("wc -c", stdin=b"")
        assert res.stdout.strip() == b"0"
    finally:
        await host.close()


async def test_base_dir_resolved_remotely_and_private(sshd):
    host = sshd.make_host(base_dir=None)  # default ~/evopilot, ~ expanded on the host
    await host.connect()
    try:
        expected = os.path.realpath(os.path.join(sshd.home, "evopilot"))
        assert host.base_dir == expected
        assert stat.S_IMODE(os.stat(expected).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(expected + "/jobs").st_mode) == 0o700
        assert host.job_dir("k1") == expected + "/jobs/k1"
    finally:
        await host.close()
    # a base_dir with spaces and quotes, relative to the remote home
    host = sshd.make_host(base_dir="~/my 'base' dir")
    await host.connect()
    try:
        assert host.base_dir == os.path.realpath(os.path.join(sshd.home, "my 'base' dir"))
        assert os.path.isdir(host.base_dir + "/jobs")
    finally:
        await host.close()


async def test_fifty_concurrent_runs_share_one_connection(sshd):
    host = sshd.make_host(max_sessions=6)  # sshd MaxSessions 10
    await host.connect()
    try:
        results = await asyncio.gather(*(host.run(f"sleep 0.0$((RANDOM % 5)); echo {i}")
                                         for i in range(50)))
        assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(50)]
        assert host.connect_attempts == 1 and host.generation == 1
        # the sshd saw exactly one connection
        assert sshd.log().count("Accepted publickey") == 1
    finally:
        await host.close()


async def test_quick_commands_on_a_busy_loop_give_their_status_not_a_lost_connection(sshd):
    """The server may close a quick command's channel before the task that started it writes
    its stdin (the loop busy elsewhere): that command ended, the connection is fine."""
    host = sshd.make_host()
    await host.connect()
    busy = True

    async def hog():  # blocks the loop in slices, so replies pile up before a task resumes
        while busy:
            time.sleep(0.003)
            await asyncio.sleep(0)

    hogging = asyncio.create_task(hog())
    try:
        for _ in range(10):
            results = await asyncio.gather(*(host.run("exit 3", stdin=b"x") for _ in range(8)))
            assert [r.exit_status for r in results] == [3] * 8
        assert host.generation == 1
    finally:
        busy = False
        await hogging
        await host.close()


async def test_read_ranges_byte_exact(sshd, tmp_path):
    host = sshd.make_host()
    await host.connect()
    try:
        blob = tmp_path / "blob.bin"
        line = b"x" * (10 * 1024 * 1024)  # one 10 MB line
        payload = b"\xff\xfe\x80 invalid utf-8 \xc3\x28\n\x00\x01" + line + b"\n\xe2\x82 tail"
        blob.write_bytes(payload)
        reqs = [
            (str(blob), 0, 20),
            (str(blob), 5, len(payload)),
            (str(blob), len(payload) - 7, 100),
            (str(blob), len(payload) + 10, 100),
            (str(tmp_path / "missing"), 0, 10),
            (str(blob), 3, 0),
        ]
        got = await host.read_ranges(reqs)
        assert got == [payload[:20], payload[5:], payload[-7:], b"", b"", b""]
    finally:
        await host.close()


async def test_long_script_goes_over_stdin(sshd):
    host = sshd.make_host()
    await host.connect()
    try:
        script = "".join(f"v{i}='{'y' * 40}'\n" for i in range(6000)) + 'echo "$v5999"; cat\n'
        assert len(script) > 200_000
        res = await host.run(script, stdin=b"after")
        assert res.ok, res.stderr
        assert res.stdout == b"y" * 40 + b"\nafter"
    finally:
        await host.close()


async def test_timeout_returns_124(sshd):
    host = sshd.make_host()
    await host.connect()
    try:
        t = time.monotonic()
        res = await host.run("echo started; bash -c 'sleep 10.4242; :'; echo never", timeout=0.5)
        assert res.exit_status == 124 and time.monotonic() - t < 3
        assert res.stdout == b"started\n" and b"timed out after 0.5s" in res.stderr
        # the host killed the whole process group, grandchildren included
        await asyncio.sleep(0.2)
        assert not _processes_with("sleep\x0010.4242")
        assert (await host.run("echo still")).stdout == b"still\n"
    finally:
        await host.close()


async def test_tmux_over_ssh_uses_the_private_server(sshd):
    """A detached tmux session started over SSH outlives the command, on the fixture's own
    tmux server (not the test's), and the quoting survives the trip."""
    host = sshd.make_host()
    await host.connect()
    try:
        out = f"{host.base_dir}/out file"
        session = session_name("evp", "t", 1)
        command = f"printf '%s\\n' \"it's $((6 * 7))\" > {quote(out)}; sleep 30"
        res = await host.run(new_session(session, command))
        assert res.ok, res
        again = await host.run(new_session(session, "exit 1"))
        assert not again.ok and b"duplicate session" in again.stderr

        async def written():
            return os.path.exists(out) and Path(out).read_text() == "it's 42\n"

        await _until(written)
        listed = await host.run(list_sessions())
        assert listed.stdout.decode().split() == [session]
        local = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"],
                               capture_output=True, text=True, env=sshd.tmux_env())
        assert local.stdout.split() == [session]
        mine = subprocess.run(["tmux", "list-sessions"], capture_output=True, text=True)
        assert session not in mine.stdout
        assert (await host.run(kill_session(session))).ok
        assert (await host.run(list_sessions())).stdout == b""
    finally:
        await host.close()


async def test_two_hosts_are_independent(sshd, sshd2):
    a, b = sshd.make_host("a"), sshd2.make_host("b")
    await asyncio.gather(a.connect(), b.connect())
    try:
        ra, rb = await asyncio.gather(a.run("echo $TMUX_TMPDIR"), b.run("echo $TMUX_TMPDIR"))
        assert ra.stdout.decode().strip() == sshd.tmux_tmpdir
        assert rb.stdout.decode().strip() == sshd2.tmux_tmpdir
        assert a.base_dir != b.base_dir
    finally:
        await asyncio.gather(a.close(), b.close())


# --- refusals: one line each, naming the host ------------------------------------------------


async def test_unknown_host_key_refused_with_a_hint_that_works(sshd):
    Path(sshd.known_hosts).write_text("")
    host = sshd.make_host("box")
    with pytest.raises(HostConnectError) as ei:
        await host.connect()
    msg = _one_line(ei.value)
    assert ei.value.kind == "host_key_unknown"
    assert msg.startswith("host box: ") and "not known" in msg
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(sshd.host_key) + ".pub"], capture_output=True, text=True
    ).stdout.split()[1]
    assert fingerprint in msg
    hint = f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {sshd.known_hosts}"
    assert hint in msg
    assert host.state == HostState.ERROR and host.last_error == msg
    # following the hint makes the host usable
    subprocess.run(["bash", "-c", hint], check=True, capture_output=True)
    await host.connect()
    assert (await host.run("echo ok")).stdout == b"ok\n"
    await host.close()


async def test_changed_host_key_refused(sshd, tmp_path):
    other = _keygen(tmp_path / "other_host_key")
    pub = " ".join((tmp_path / "other_host_key.pub").read_text().split()[:2])
    Path(sshd.known_hosts).write_text(f"[127.0.0.1]:{sshd.port} {pub}\n")
    host = sshd.make_host("box")
    with pytest.raises(HostConnectError) as ei:
        await host.connect()
    msg = _one_line(ei.value)
    assert ei.value.kind == "host_key_changed"
    assert "CHANGED" in msg and f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in msg
    assert other.exists()


async def test_wrong_client_key_is_an_auth_error(sshd, tmp_path):
    key = _keygen(tmp_path / "stranger")
    host = sshd.make_host("box", identity_file=str(key))
    with pytest.raises(HostConnectError) as ei:
        await host.connect()
    msg = _one_line(ei.value)
    assert ei.value.kind == "auth"
    assert msg.startswith("host box: authentication failed for root@[127.0.0.1]:") or (
        msg.startswith("host box: authentication failed for ")
    )
    assert str(key) in msg and "ssh-copy-id" in msg


async def test_encrypted_key_without_agent_says_ssh_add(sshd, tmp_path):
    key = _keygen(tmp_path / "locked", passphrase="secret words")
    Path(sshd.authorized_keys).write_text((tmp_path / "locked.pub").read_text())
    host = sshd.make_host("box", identity_file=str(key))
    with pytest.raises(HostConnectError) as ei:
        await host.connect()
    msg = _one_line(ei.value)
    assert ei.value.kind == "auth" and "passphrase" in msg and f"ssh-add {key}" in msg


async def test_encrypted_key_through_the_agent(sshd, tmp_path, monkeypatch):
    key = _keygen(tmp_path / "locked", passphrase="pw")
    Path(sshd.authorized_keys).write_text((tmp_path / "locked.pub").read_text())
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        askpass = tmp_path / "askpass.sh"
        askpass.write_text("#!/bin/sh\necho pw\n")
        askpass.chmod(0o700)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(askpass),
               "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
        subprocess.run(["ssh-add", str(key)], env=env, check=True, capture_output=True,
                       stdin=subprocess.DEVNULL)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        cfg = dict(identity_file=str(key), use_agent=True)
        assert (await key_status("box", sshd.host_config(**cfg))).__class__.__name__ == "InAgent"
        host = sshd.make_host("box", **cfg)
        await host.connect()
        assert (await host.run("echo in")).stdout == b"in\n"
        await host.close()
    finally:
        agent.terminate()
        agent.wait()


async def test_key_status_variants(sshd, tmp_path, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    plain = sshd.host_config()
    assert await key_status("h", plain) == KeyFile(sshd.identity_file)
    locked = _keygen(tmp_path / "locked", passphrase="x")
    assert await key_status("h", sshd.host_config(identity_file=str(locked))) == (
        NeedsPassphrase(str(locked))
    )
    missing = str(tmp_path / "nope")
    assert await key_status("h", sshd.host_config(identity_file=missing)) == NoKey(missing)
    assert await key_status("h", sshd.host_config(identity_file=missing, use_agent=True)) == (
        NoAgent(missing)
    )


async def test_refused_port_is_one_line(sshd):
    port = _closed_port()
    host = sshd.make_host("box", port=port)
    with pytest.raises(HostConnectError) as ei:
        await host.connect()
    msg = _one_line(ei.value)
    assert ei.value.kind == "refused" and ei.value.transient
    assert msg == f"host box: cannot connect to [127.0.0.1]:{port}: connection refused"


async def test_dns_failure_is_one_line(sshd):
    host = sshd.make_host("box", hostname="no-such-host.invalid", connect_timeout=3)
    with pytest.raises(HostConnectError) as ei:
        await host.connect()
    msg = _one_line(ei.value)
    assert ei.value.kind in ("dns", "timeout") and msg.startswith("host box: ")
    assert "no-such-host.invalid" in msg


async def test_missing_identity_file_is_one_line(sshd, tmp_path):
    host = sshd.make_host("box", identity_file=str(tmp_path / "absent"))
    with pytest.raises(HostConnectError) as ei:
        await host.connect()
    assert str(tmp_path / "absent") in _one_line(ei.value)


# --- outages -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_reconnects_by_itself_after_sshd_outage(sshd):
    host = sshd.make_host(reconnect_initial=0.2, reconnect_max=1.0)
    states: list[HostState] = []
    host.on_state_change = lambda h: states.append(h.state)
    await host.connect()
    assert (await host.run("echo 1")).ok
    sshd.stop()
    assert sshd.drop_connections() >= 1
    await asyncio.sleep(0.3)  # the client notices the dead connection
    with pytest.raises(HostUnavailable) as ei:
        await host.run("echo 2")
    assert not ei.value.may_have_run
    assert host.state in (HostState.ERROR, HostState.DISCONNECTED)
    assert host.last_error and "host testhost" in host.last_error
    await asyncio.sleep(5)  # sshd down for ~5 s
    sshd.start()
    res = await _until(lambda: _try_run(host, "echo back"), timeout=10, step=0.2)
    assert res.stdout == b"back\n"
    assert host.state == HostState.CONNECTED and host.generation == 2
    assert HostState.CONNECTING in states and states[-1] == HostState.CONNECTED
    await host.close()


async def _try_run(host, script):
    try:
        return await host.run(script)
    except HostUnavailable:
        return None


@pytest.mark.slow
async def test_backoff_limits_attempts_while_down(sshd):
    host = sshd.make_host(reconnect_initial=0.5, reconnect_max=2.0)
    await host.connect()
    sshd.stop()
    sshd.drop_connections()
    await asyncio.sleep(0.3)
    failures = 0
    t = time.monotonic()
    while time.monotonic() - t < 1.6:
        with pytest.raises(HostUnavailable):
            await host.run("true")
        failures += 1
        await asyncio.sleep(0.02)
    # attempts at ~0, 0.5, 1.5 s: the other calls failed fast without dialing
    assert failures > 20
    assert 2 <= host.connect_attempts - 1 <= 4
    # reconnect() ignores the backoff
    sshd.start()
    await host.reconnect()
    assert host.state == HostState.CONNECTED
    assert (await host.run("echo ok")).stdout == b"ok\n"
    await host.close()


async def test_command_in_flight_is_not_resent(sshd, tmp_path):
    counter = tmp_path / "counter"
    host = sshd.make_host(reconnect_initial=0.1)
    await host.connect()
    task = asyncio.create_task(host.run(f"echo ran >> {counter}; sleep 3; echo done"))
    await _until(lambda: asyncio.sleep(0, counter.exists()))
    sshd.drop_connections()
    with pytest.raises(HostUnavailable) as ei:
        await task
    assert ei.value.may_have_run
    assert "not re-sent" in _one_line(ei.value)
    # the next command reconnects (sshd still listens) and the first was not run again
    res = await host.run(f"cat {counter}")
    assert res.stdout == b"ran\n"
    assert host.generation == 2
    await asyncio.sleep(0.5)
    assert counter.read_text() == "ran\n"
    await host.close()


async def test_close_then_run_refuses_until_connect(sshd):
    host = sshd.make_host()
    await host.connect()
    await host.close()
    with pytest.raises(HostUnavailable):
        await host.run("true")
    await host.connect()
    assert (await host.run("echo x")).ok
    await host.close()


# --- ssh config and the ssh argv ---------------------------------------------------------------


async def test_ssh_config_alias(sshd, tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host lab\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.identity_file}\n  IdentitiesOnly yes\n"
    )
    hc = HostConfig(known_hosts=sshd.known_hosts, use_agent=False, base_dir=sshd.base_dir)
    host = SshHost("lab", hc, ssh_config=[str(cfg)])
    assert (host.target.host, host.target.port, host.target.user) == (
        "127.0.0.1", sshd.port, sshd.user)
    await host.connect()
    assert (await host.run("echo via alias")).stdout == b"via alias\n"
    await host.close()
    # the ssh argv honours the same file
    argv = ssh_command_args("lab", hc, ssh_config=[str(cfg)])
    assert argv[1:3] == ["-F", str(cfg)] and argv[-1] == "lab"
    out = subprocess.run([*argv, "echo", "plain ssh"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=20)
    assert out.stdout == "plain ssh\n", out.stderr


def test_ssh_command_args_pure():
    cfg = HostConfig(hostname="gpu.example.org", port=2222, user="ann",
                     identity_file="/k/id_ed25519", known_hosts="/k/known hosts",
                     use_agent=False, connect_timeout=7.5, keepalive_interval=15)
    assert ssh_command_args("gpu", cfg) == [
        "ssh", "-p", "2222", "-i", "/k/id_ed25519",
        "-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes",
        "-o", 'UserKnownHostsFile="/k/known hosts"',
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=8",
        "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
        "ann@gpu.example.org",
    ]
    plain = ssh_command_args("box", HostConfig(keepalive_interval=0))
    assert plain[0] == "ssh" and plain[-1] == "box"
    assert "-p" not in plain and "-i" not in plain and "IdentityAgent=none" not in plain
    assert f"UserKnownHostsFile={Path.home()}/.ssh/known_hosts" in plain
    assert "StrictHostKeyChecking=yes" in plain and "BatchMode=yes" in plain
    assert ssh_command_args("box", HostConfig(), ssh_config=[])[1:3] == ["-F", "/dev/null"]
    with pytest.raises(Exception, match="not valid"):
        ssh_command_args("x", HostConfig(hostname="-oProxyCommand=evil"))


def test_ssh_command_args_reach_the_test_host(sshd):
    argv = ssh_command_args("t", sshd.host_config(), ssh_config=[sshd.ssh_config])
    out = subprocess.run([*argv, "echo $TMUX_TMPDIR"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == sshd.tmux_tmpdir


@pytest.mark.slow
async def test_silent_server_times_out_and_close_interrupts_waiters(sshd):
    """A port that accepts TCP but never speaks SSH: a one-line timeout; close() during the
    attempt makes waiting run() calls fail with HostUnavailable, not CancelledError."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        host = sshd.make_host("mute", port=port, connect_timeout=0.7)
        t = time.monotonic()
        with pytest.raises(HostConnectError) as ei:
            await host.connect()
        assert ei.value.kind == "timeout" and time.monotonic() - t < 3
        assert _one_line(ei.value) == (
            f"host mute: connecting to [127.0.0.1]:{port} timed out after 0.7s"
        )

        host = sshd.make_host("mute", port=port, connect_timeout=5)
        waiters = [asyncio.create_task(host.run("true")) for _ in range(3)]
        await asyncio.sleep(0.3)
        await host.close()
        for w in waiters:
            with pytest.raises(HostUnavailable):
                await w
        assert host.state == HostState.DISCONNECTED
    finally:
        silent.close()
