"""A real OpenSSH server on 127.0.0.1 for tests: fixtures ``sshd``, ``sshd2``, ``sshd_factory``.

Each ``SshdServer`` is its own ``/usr/sbin/sshd -D -e -f <cfg>`` on a free loopback port with its
own ed25519 host key, client key pair, ``authorized_keys`` and client ``known_hosts`` (holding
``[127.0.0.1]:PORT <hostkey>``), all in a private temporary directory. The tests run as root, so
the server allows root with keys only (``PermitRootLogin prohibit-password``).

Isolation:

* **tmux**: the server's config has ``SetEnv TMUX_TMPDIR=<tmp>/tmux``, so every command run
  through it (by ``SshHost``, by ``ssh``/rsync) talks to a private tmux server, never the user's
  or another test's. ``close()`` kills that tmux server. For a local ``tmux`` against the same
  server use ``server.tmux_env()``.
* **HOME**: remote commands get a private, empty ``HOME`` (``<tmp>/home``, via ``SetEnv``), so
  ``~`` on the "remote" side never means the real home directory, and the user's login files
  are not read: root's ``~/.bashrc`` here runs ``pyenv init``, which made every command cost
  ~480 ms instead of ~13 ms and serialised concurrent ones. ``SshdServer(..., real_home=True)``
  keeps the passwd HOME (production-like). ``PATH`` is this process's PATH, so ``python3``,
  ``uv``, ``tmux`` resolve as they do locally; ``UV_CACHE_DIR`` and ``UV_PYTHON_INSTALL_DIR``
  point at the real user's (uv's defaults) so remote ``uv`` reuses the local caches.
* ``host_config()`` puts ``base_dir`` in the temporary directory, and ``ssh_config`` is an empty
  file so the developer's ``~/.ssh/config`` never leaks into a test (``make_host()`` passes it
  to ``SshHost``).
* **client side**: ``host_config()`` has an explicit identity file, ``use_agent=False`` and the
  private ``known_hosts``; ``~/.ssh`` is neither read nor written.

Outages: ``stop()`` ends the listener only (like OpenSSH, open connections live on);
``drop_connections()`` kills every per-connection sshd process (and the commands under it), so
clients see their connection die; ``start()`` listens again on the same port with the same keys.

If sshd cannot start the fixture fails (``pytest.fail`` with sshd's stderr); it never skips.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evopilot.core.config import HostConfig

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

__all__ = ["SshdServer", "sshd", "sshd2", "sshd_factory"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may hold spaces and parentheses: ppid follows the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def _kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _uv_dirs() -> dict[str, str]:
    """uv's cache and managed Pythons of the real user, so remote uv does not download anew."""
    home = Path.home()
    cache = os.environ.get("XDG_CACHE_HOME") or str(home / ".cache")
    data = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return {
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or f"{cache}/uv",
        "UV_PYTHON_INSTALL_DIR": os.environ.get("UV_PYTHON_INSTALL_DIR") or f"{data}/uv/python",
    }


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


class SshdServer:
    """One private sshd. Attributes: host, port, user, identity_file, known_hosts, ssh_config,
    tmux_tmpdir, base_dir, home (the remote HOME, None for the real one), dir (its temporary
    directory)."""

    def __init__(
        self,
        root: Path,
        *,
        real_home: bool = False,
        path: str | None = None,
        max_sessions: int = 10,
    ) -> None:
        """``path``: PATH for remote commands (default: this process's); only with a private
        HOME."""
        self.dir = root
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.user = getpass.getuser()
        self.home = None if real_home else str(root / "home")
        self.max_sessions = max_sessions
        self.proc: subprocess.Popen | None = None
        self._orphans: list[int] = []
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.host_key = root / "ssh_host_ed25519_key"
        self.identity_file = str(root / "id_ed25519")
        self.authorized_keys = root / "authorized_keys"
        self.known_hosts = str(root / "known_hosts")
        self.ssh_config = str(root / "ssh_config")
        self.config_file = root / "sshd_config"
        self.log_file = root / "sshd.log"
        self.tmux_tmpdir = str(root / "tmux")
        self.base_dir = str(root / "remote-base")
        os.makedirs(self.tmux_tmpdir, mode=0o700, exist_ok=True)
        if self.home:
            os.makedirs(self.home, mode=0o700, exist_ok=True)
        _keygen(self.host_key, "evopilot-test-host")
        _keygen(Path(self.identity_file), "evopilot-test-client")
        self.authorized_keys.write_text(Path(self.identity_file + ".pub").read_text())
        self.host_public_key = Path(str(self.host_key) + ".pub").read_text().split()[:2]
        Path(self.known_hosts).write_text(self.known_hosts_line())
        Path(self.ssh_config).write_text("")
        env = {"TMUX_TMPDIR": self.tmux_tmpdir, **_uv_dirs()}
        if self.home:
            env["HOME"] = self.home
            env["PATH"] = path or os.environ.get("PATH", os.defpath)
        setenv = " ".join(f'"{k}={v}"' for k, v in env.items())
        self.config_file.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {self.port}",
                    f"HostKey {self.host_key}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "UseDNS no",
                    "PrintMotd no",
                    "X11Forwarding no",
                    f"MaxSessions {max_sessions}",
                    "MaxStartups 100:30:200",
                    "LogLevel INFO",
                    "Subsystem sftp internal-sftp",
                    f"SetEnv {setenv}",
                    "",
                ]
            )
        )

    # -- what tests need -------------------------------------------------------------------

    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {' '.join(self.host_public_key)}\n"

    def host_config(self, **overrides) -> HostConfig:
        values = dict(
            hostname=self.host,
            port=self.port,
            user=self.user,
            identity_file=self.identity_file,
            use_agent=False,
            known_hosts=self.known_hosts,
            base_dir=self.base_dir,
            connect_timeout=5.0,
        )
        values.update(overrides)
        return HostConfig(**values)

    def make_host(self, name: str = "testhost", **overrides):
        """An ``SshHost`` for this server that reads no ``~/.ssh/config``. Keyword arguments
        are ``HostConfig`` fields, or ``SshHost`` options (``reconnect_initial``...)."""
        from evopilot.core.hosts.ssh import SshHost

        host_kw = {k: overrides.pop(k) for k in ("reconnect_initial", "reconnect_max", "ssh_config")
                   if k in overrides}
        host_kw.setdefault("ssh_config", [self.ssh_config])
        return SshHost(name, self.host_config(**overrides), **host_kw)

    def tmux_env(self) -> dict[str, str]:
        """Environment for running ``tmux`` locally against this server's tmux."""
        return {**os.environ, "TMUX_TMPDIR": self.tmux_tmpdir}

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        check = subprocess.run(
            [SSHD, "-t", "-f", str(self.config_file)], capture_output=True, text=True
        )
        if check.returncode != 0:
            pytest.fail(f"sshd config rejected: {check.stderr.strip()}", pytrace=False)
        log = open(self.log_file, "ab")
        try:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"sshd exited with status {self.proc.returncode}: {self.log().strip()}",
                    pytrace=False,
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                    s.settimeout(2.0)
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self._stop_listener()
                pytest.fail(
                    f"sshd did not accept connections on port {self.port} within {timeout}s: "
                    f"{self.log().strip()}",
                    pytrace=False,
                )
            time.sleep(0.02)

    def _stop_listener(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # its connection processes outlive it (re-parented): remember them for drop
            self._orphans.extend(_descendants(self.proc.pid))
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """Stop listening; connections already open keep working (see ``drop_connections``)."""
        self._stop_listener()

    def connection_pids(self) -> list[int]:
        pids = list(self._orphans)
        if self.proc is not None and self.proc.poll() is None:
            pids += _descendants(self.proc.pid)
        alive = []
        for p in dict.fromkeys(pids):
            try:
                os.kill(p, 0)
            except ProcessLookupError:
                continue
            alive.append(p)
        return alive

    def drop_connections(self) -> int:
        """Kill every per-connection sshd process and what runs under it; returns how many."""
        pids = self.connection_pids()
        for p in list(pids):
            pids.extend(q for q in _descendants(p) if q not in pids)
        _kill(pids)
        self._orphans = []
        return len(pids)

    def close(self) -> None:
        self.drop_connections()
        self._stop_listener()
        self.drop_connections()
        subprocess.run(
            ["tmux", "kill-server"],
            env=self.tmux_env(),
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def sshd_factory() -> Iterator:
    """Call it to get another running ``SshdServer`` (each a separate host on its own port)."""
    servers: list[SshdServer] = []
    tmp = Path(tempfile.mkdtemp(prefix="evp-sshd-"))

    def make(**kwargs) -> SshdServer:
        server = SshdServer(tmp / f"s{len(servers)}", **kwargs)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def sshd(sshd_factory) -> SshdServer:
    """A running private sshd (function scope: tests may stop and restart it)."""
    return sshd_factory()


@pytest.fixture
def sshd2(sshd_factory) -> SshdServer:
    """A second, independent sshd: a second host."""
    return sshd_factory()
