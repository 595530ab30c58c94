"""doctor against a real sshd and the local host."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from evopilot.core.config import HostConfig
from evopilot.core.hosts.doctor import Check, doctor
from evopilot.core.hosts.local import LocalHost
from evopilot.core.hosts.ssh import SshHost

SSH_CHECKS = ["reachable", "host key", "authentication", "base_dir", "tmux", "uv", "rsync",
              "python", "disk"]


def _uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    import uv  # the test extra installs it

    return uv.find_uv_bin()


def _factory(server):
    def make(name: str, config: HostConfig) -> SshHost:
        return SshHost(name, config, ssh_config=[server.ssh_config])

    return make


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_doctor_all_ok(sshd, tmp_path):
    data = tmp_path / "gurobi"
    data.mkdir()
    cfg = sshd.host_config(uv_path=_uv(), python=sys.executable,
                           env={"GUROBI_HOME": str(data), "MODE": "fast"})
    checks = await doctor("box", cfg, _factory(sshd))
    assert [c.name for c in checks] == SSH_CHECKS + [f"env GUROBI_HOME={data}"]
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    c = _by_name(checks)
    assert "tmux" in c["tmux"].detail
    assert c["python"].detail == "Python %d.%d.%d" % sys.version_info[:3]
    assert c["base_dir"].detail == sshd.base_dir
    assert c["host key"].detail.startswith("ssh-ed25519 SHA256:")
    assert all(ch.fix is None and ch.ran for ch in checks)


async def test_doctor_reports_missing_tools_with_fixes(sshd):
    cfg = sshd.host_config(uv_path="/nowhere/uv", python="/nowhere/python3.99",
                           env={"GRB_LICENSE_FILE": "/nowhere/gurobi.lic"})
    c = _by_name(await doctor("box", cfg, _factory(sshd)))
    assert not c["uv"].ok and "uv_path" in c["uv"].fix and "hosts.box" in c["uv"].fix
    assert not c["python"].ok and "hosts.box.python" in c["python"].fix
    env = c["env GRB_LICENSE_FILE=/nowhere/gurobi.lic"]
    assert not env.ok and "hosts.box.env.GRB_LICENSE_FILE" in env.fix
    assert c["tmux"].ok and c["authentication"].ok  # the rest still ran


async def test_doctor_unreachable_skips_the_rest(sshd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    checks = await doctor("box", sshd.host_config(port=port), _factory(sshd))
    assert [c.name for c in checks] == SSH_CHECKS
    assert not checks[0].ok and checks[0].ran and "refused" in checks[0].detail
    assert checks[0].fix and "sshd" in checks[0].fix
    assert all(not c.ran and not c.ok and c.detail.startswith("not run") for c in checks[1:])


async def test_doctor_on_a_server_that_never_answers_says_why(sshd):
    """It accepts the connection and never sends a banner: the check names the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts; nothing ever answers
        cfg = sshd.host_config(port=silent.getsockname()[1], connect_timeout=0.5)
        checks = await doctor("box", cfg, _factory(sshd))
    assert checks[0].ok
    hk = checks[1]
    assert hk.name == "host key" and not hk.ok
    assert hk.detail == "cannot fetch the host key: no answer within 0.5s"


async def test_doctor_unknown_host_key(sshd):
    Path(sshd.known_hosts).write_text("")
    checks = await doctor("box", sshd.host_config(), _factory(sshd))
    hk = checks[1]
    assert hk.name == "host key" and not hk.ok
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {sshd.known_hosts}" in hk.fix
    assert [c.ran for c in checks] == [True, True] + [False] * (len(SSH_CHECKS) - 2)


async def test_doctor_auth_failure(sshd, tmp_path):
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    checks = await doctor("box", sshd.host_config(identity_file=str(key)), _factory(sshd))
    auth = _by_name(checks)["authentication"]
    assert not auth.ok and "ssh-copy-id" in auth.fix and str(key) in auth.fix
    assert "\n" not in auth.detail
    assert not _by_name(checks)["tmux"].ran and [c.name for c in checks] == SSH_CHECKS


async def test_doctor_local_host(tmp_path):
    def make(name: str, config: HostConfig) -> LocalHost:
        return LocalHost(name, config, tmp_path / "local")

    cfg = HostConfig(uv_path=_uv(), python=sys.executable)
    checks = await doctor("local", cfg, make)
    assert [c.name for c in checks] == ["base_dir", "tmux", "uv", "rsync", "python", "disk"]
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    bad = _by_name(await doctor("local", HostConfig(uv_path="/nowhere/uv"), make))
    assert not bad["uv"].ok and "locally" in bad["uv"].fix


@pytest.mark.parametrize("base", ["/proc/evopilot-cannot-exist"])
async def test_doctor_unusable_base_dir(sshd, base):
    checks = await doctor("box", sshd.host_config(base_dir=base), _factory(sshd))
    c = _by_name(checks)
    assert c["authentication"].ok
    assert not c["base_dir"].ok and "hosts.box.base_dir" in c["base_dir"].fix
    assert not c["tmux"].ran and [ch.name for ch in checks] == SSH_CHECKS
