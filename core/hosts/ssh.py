"""A host reached over SSH: one asyncssh connection, reused for every command.

* Every command is ``bash -c <script>`` on one kept connection; at most ``max_sessions`` channels
  are open at once (a semaphore: OpenSSH's ``MaxSessions 10`` makes asyncssh fail above ~6).
* Host keys are always verified against known_hosts (``hosts.X.known_hosts``, else
  ``~/.ssh/known_hosts`` and ``/etc/ssh/ssh_known_hosts``); the ssh config's
  ``UserKnownHostsFile``/``StrictHostKeyChecking`` are not consulted, so no config file can turn
  checking off. An unknown or changed key is refused with a one-line message saying how to
  trust it.
* ``~/.ssh/config`` applies (asyncssh loads it when ``config=()``): aliases, ``HostName``,
  ``Port``, ``User``, ``IdentityFile``, ``ProxyJump``... Values set in evopilot's config win.
* A lost connection is re-opened lazily by the next ``run`` (or at once by ``reconnect()``),
  with exponential backoff between failed attempts. A command is never re-sent: if the link
  drops while it is in flight, ``run`` raises ``HostUnavailable(may_have_run=True)`` and the
  caller decides (job start scripts are idempotent; probes are read-only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from evopilot.core.config import HostConfig
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts import probe
from evopilot.core.hosts.base import MAX_INLINE_SCRIPT, CommandResult, Host, HostState, stdin_script
from evopilot.core.quoting import join, quote

log = logging.getLogger(__name__)

KEEPALIVE_COUNT_MAX = 3
"""Keepalives without an answer before the connection is declared dead."""
RECONNECT_INITIAL_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0
DEFAULT_REMOTE_BASE = "~/evopilot"
# asyncssh's own order with AES-GCM first: with AES instructions it mirrors logs ~1.6x faster
# than chacha20-poly1305 (bench/remote_jobs.py, "what if" rows). All are OpenSSH defaults.
CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes256-ctr", "aes192-ctr", "aes128-ctr"]
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"


class HostUnavailable(EvopilotError):
    """The host cannot be reached right now (connection lost, or reconnecting failed).

    ``may_have_run`` is True when the connection dropped while the command was in flight: it
    may or may not have run on the host, and it was not re-sent. When False the command
    certainly did not start, and sending it again is safe.
    """

    def __init__(self, message: str, *, may_have_run: bool = False) -> None:
        super().__init__(message)
        self.may_have_run = may_have_run


class HostConnectError(EvopilotError):
    """Opening the connection failed; ``kind`` says why (for ``doctor`` and the UI).

    Kinds: ``config``, ``dns``, ``refused``, ``timeout``, ``unreachable``, ``host_key_unknown``,
    ``host_key_changed``, ``auth``, ``key``, ``protocol``, ``base_dir``.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def transient(self) -> bool:
        """Whether retrying later may help without the user changing anything."""
        return self.kind in ("dns", "refused", "timeout", "unreachable", "protocol")


# --- key status (auth diagnostics) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InAgent:
    """The agent holds the key (or, with no identity_file configured, some key)."""

    def describe(self) -> str:
        return "the key is in the ssh agent"


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A private key without a passphrase on disk."""

    key_path: str

    def describe(self) -> str:
        return f"using key {self.key_path}"


@dataclass(frozen=True, slots=True)
class NeedsPassphrase:
    """The key is encrypted and not in the agent: evopilot cannot prompt for it."""

    key_path: str

    def describe(self) -> str:
        return f"key {self.key_path} needs a passphrase and is not in the ssh agent"


@dataclass(frozen=True, slots=True)
class NoKey:
    expected_path: str

    def describe(self) -> str:
        return f"no private key found (expected {self.expected_path})"


@dataclass(frozen=True, slots=True)
class NoAgent:
    expected_path: str

    def describe(self) -> str:
        return f"no ssh agent is running (SSH_AUTH_SOCK unset) and no key at {self.expected_path}"


SshKeyStatus = InAgent | KeyFile | NeedsPassphrase | NoKey | NoAgent


def key_fix(status: SshKeyStatus, name: str, config: HostConfig) -> str | None:
    """What the user should do about ``status`` when authentication fails."""
    dest = _destination(name, config)
    port = ["-p", str(config.port)] if config.port else []
    match status:
        case NeedsPassphrase(key_path=p):
            return f"add it to the agent: eval \"$(ssh-agent)\" && {join(['ssh-add', p])}"
        case NoKey(expected_path=p) | NoAgent(expected_path=p):
            return (
                f"create a key and install it: {join(['ssh-keygen', '-t', 'ed25519', '-f', p])}"
                f" && {join(['ssh-copy-id', '-i', p + '.pub', *port, dest])}"
            )
        case KeyFile(key_path=p):
            copy = join(["ssh-copy-id", "-i", p + ".pub", *port, dest])
            return f"install the key on the host: {copy}"
        case InAgent():
            return f"install your key on the host: {join(['ssh-copy-id', *port, dest])}"
    return None


def _expand(path: str) -> str:
    return os.path.expanduser(path)


def _candidate_keys(config: HostConfig, ssh_options: asyncssh.SSHClientConnectionOptions | None):
    if config.identity_file:
        return [_expand(config.identity_file)]
    keys: list[str] = []
    if ssh_options is not None:
        for p in ssh_options.config.get("IdentityFile", ()) or ():
            keys.append(_expand(str(p)))
    keys += [str(Path.home() / ".ssh" / k) for k in DEFAULT_KEYS]
    return list(dict.fromkeys(keys))


def _agent_path(config: HostConfig, ssh_options) -> str | None:
    if not config.use_agent:
        return None
    path = ssh_options.config.get("IdentityAgent") if ssh_options is not None else None
    if path is None or path == "SSH_AUTH_SOCK":
        path = os.environ.get("SSH_AUTH_SOCK")
    if not path or str(path).lower() == "none":
        return None
    return _expand(str(path))


def _public_blob(key_path: str) -> bytes | None:
    try:
        return asyncssh.read_public_key(key_path + ".pub").public_data
    except (OSError, asyncssh.KeyImportError, ValueError):
        return None


async def key_status(
    name: str, config: HostConfig, *, ssh_config: Sequence[str] | None = None
) -> SshKeyStatus:
    """Which credentials an SSH connection to this host can use (no network access)."""
    options = _ssh_options(name, config, ssh_config)
    candidates = _candidate_keys(config, options)
    agent = _agent_path(config, options)
    if agent:
        try:
            async with asyncssh.connect_agent(agent) as client:
                agent_keys = await client.get_keys()
        except (OSError, asyncssh.Error, ValueError):
            agent_keys = []
        if agent_keys:
            if not config.identity_file:
                return InAgent()
            blob = _public_blob(candidates[0])
            if blob is not None and any(k.public_data == blob for k in agent_keys):
                return InAgent()
    encrypted: str | None = None
    for path in candidates:
        if not os.path.isfile(path):
            continue
        try:
            asyncssh.read_private_key(path)
        except asyncssh.KeyEncryptionError:
            encrypted = encrypted or path
            continue
        except asyncssh.KeyImportError as e:
            if "passphrase" in str(e).lower():
                encrypted = encrypted or path
            continue
        except (OSError, ValueError):
            continue
        return KeyFile(path)
    if encrypted:
        return NeedsPassphrase(encrypted)
    if config.use_agent and not agent:
        return NoAgent(candidates[0])
    return NoKey(candidates[0])


# --- pure helpers ------------------------------------------------------------------------


def _check_word(what: str, value: str) -> str:
    if not value or value.startswith("-") or any(c.isspace() for c in value):
        raise EvopilotError(f"{what} {value!r} is not valid (empty, starts with '-' or has spaces)")
    return value


def _target_host(name: str, config: HostConfig) -> str:
    return _check_word("hostname", config.hostname or name)


def _destination(name: str, config: HostConfig) -> str:
    host = _target_host(name, config)
    if config.user:
        return f"{_check_word('user', config.user)}@{host}"
    return host


def known_hosts_files(config: HostConfig) -> list[str]:
    """The known_hosts files checked for this host (they may not exist yet)."""
    if config.known_hosts:
        return [_expand(config.known_hosts)]
    return [str(Path.home() / ".ssh" / "known_hosts"), GLOBAL_KNOWN_HOSTS]


def user_known_hosts_file(config: HostConfig) -> str:
    """The file a new host key should be appended to."""
    return known_hosts_files(config)[0]


def _ssh_option_value(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


def ssh_command_args(
    name: str, config: HostConfig, *, ssh_config: Sequence[str] | None = None
) -> list[str]:
    """The ``ssh`` argv reaching this host with the same settings as ``SshHost``.

    The last element is the destination (``[user@]host``); ``argv[:-1]`` is what rsync's ``-e``
    wants. Strict host key checking, batch mode (never a prompt), the configured known_hosts,
    identity, agent, timeouts and keepalives. ``ssh_config``: as for ``SshHost`` (None reads
    ``~/.ssh/config``; a list uses its first file; an empty list none).
    """
    args = ["ssh"]
    if ssh_config is not None:
        args += ["-F", _expand(ssh_config[0]) if ssh_config else "/dev/null"]
    if config.port:
        args += ["-p", str(config.port)]
    if config.identity_file:
        args += ["-i", _expand(config.identity_file)]
    if not config.use_agent:
        args += ["-o", "IdentityAgent=none"]
        if config.identity_file:
            args += ["-o", "IdentitiesOnly=yes"]
    args += [
        "-o", f"UserKnownHostsFile={_ssh_option_value(user_known_hosts_file(config))}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={max(1, math.ceil(config.connect_timeout))}",
    ]
    if config.keepalive_interval:
        args += [
            "-o", f"ServerAliveInterval={max(1, math.ceil(config.keepalive_interval))}",
            "-o", f"ServerAliveCountMax={KEEPALIVE_COUNT_MAX}",
        ]
    args.append(_destination(name, config))
    return args


def remote_path_word(path: str) -> str:
    """Shell text for a path on the host: ``~`` and relative paths are under the remote $HOME."""
    if path in ("~", ""):
        return '"$HOME"'
    if path.startswith("~/"):
        path = path[2:]
    elif path.startswith("/"):
        return quote(path)
    return '"$HOME"/' + quote(path)


def base_dir_script(base_dir: str) -> str:
    """Create the base directory (private when new) and its ``jobs``; print its absolute path."""
    return (
        f"b={remote_path_word(base_dir)}\n"
        '( umask 077 && mkdir -p -- "$b/jobs" ) && chmod 700 -- "$b/jobs" && cd -- "$b" && pwd -P\n'
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _hostport(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _ssh_options(
    name: str, config: HostConfig, ssh_config: Sequence[str] | None
) -> asyncssh.SSHClientConnectionOptions | None:
    """asyncssh's view of the target (ssh config applied), without credentials; None if the
    ssh config cannot be read."""
    kwargs: dict = {
        "host": _target_host(name, config),
        "client_keys": None,
        "agent_path": None,
        "known_hosts": None,
        "config": tuple(ssh_config) if ssh_config is not None else (),
    }
    if ssh_config is not None and not ssh_config:
        kwargs["config"] = None
    if config.port:
        kwargs["port"] = config.port
    if config.user:
        kwargs["username"] = config.user
    try:
        return asyncssh.SSHClientConnectionOptions(**kwargs)
    except (OSError, ValueError, asyncssh.Error):
        return None


@dataclass(frozen=True, slots=True)
class SshTarget:
    """Where the host really is after ~/.ssh/config: address, port, user."""

    host: str
    port: int
    user: str
    proxy: str | None = None
    """ProxyJump or ProxyCommand from the ssh config, when one applies."""

    def __str__(self) -> str:
        return f"{self.user}@{_hostport(self.host, self.port)}"


def resolve_target(
    name: str, config: HostConfig, *, ssh_config: Sequence[str] | None = None
) -> SshTarget:
    options = _ssh_options(name, config, ssh_config)
    if options is None:
        return SshTarget(_target_host(name, config), config.port or 22, config.user or "")
    cfg = options.config
    proxy = cfg.get("ProxyJump") or cfg.get("ProxyCommand")
    if isinstance(proxy, (list, tuple)):
        proxy = " ".join(str(p) for p in proxy)
    if proxy and str(proxy).lower() == "none":
        proxy = None
    return SshTarget(
        str(options.host), int(options.port), str(options.username), str(proxy) if proxy else None
    )


# --- the host ------------------------------------------------------------------------------


class _Client(asyncssh.SSHClient):
    def __init__(self, host: SshHost) -> None:
        self._host = host
        self._conn: asyncssh.SSHClientConnection | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._host._connection_lost(self._conn, exc)


class SshHost(Host):
    """A host reached over SSH. See the module docstring for the connection rules."""

    is_local = False

    def __init__(
        self,
        name: str,
        config: HostConfig,
        *,
        ssh_config: Sequence[str] | None = None,
        reconnect_initial: float = RECONNECT_INITIAL_DELAY,
        reconnect_max: float = RECONNECT_MAX_DELAY,
    ) -> None:
        """``ssh_config``: OpenSSH client config files to read; None means ``~/.ssh/config``
        (when it exists), an empty list means none."""
        super().__init__(name, config)
        self.ssh_config = list(ssh_config) if ssh_config is not None else None
        self.target = resolve_target(name, config, ssh_config=self.ssh_config)
        self._sem = asyncio.Semaphore(config.max_sessions)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._attempt: asyncio.Task | None = None
        self._closed = False
        self._initial_delay = reconnect_initial
        self._max_delay = reconnect_max
        self._delay = 0.0
        self._retry_at = 0.0
        self.generation = 0
        """Counts successful connections: a change means "reconnected, reconcile jobs"."""
        self.connect_attempts = 0
        self.on_state_change: Callable[[SshHost], None] | None = None
        """Called (synchronously) after every change of ``state``."""

    # -- state ----------------------------------------------------------------------------

    def _set_state(self, state: HostState, error: str | None = None) -> None:
        changed = state != self.state or error != self.last_error
        self.state = state
        self.last_error = error
        if changed and self.on_state_change is not None:
            try:
                self.on_state_change(self)
            except Exception:  # a listener's bug must not break the connection logic
                log.exception("on_state_change callback failed for host %s", self.name)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def ssh_command_args(self) -> list[str]:
        return ssh_command_args(self.name, self.config, ssh_config=self.ssh_config)

    # -- connecting -----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection now (resetting the backoff); raises ``HostConnectError``."""
        self._closed = False
        if self.connected:
            return
        self._delay = 0.0
        self._retry_at = 0.0
        await self._connection()

    async def ensure_connected(self) -> None:
        """Connect unless connected; within the backoff after a failed attempt, raise
        ``HostUnavailable`` at once instead of dialling again."""
        self._closed = False
        await self._usable_connection()

    @property
    def unreachable(self) -> bool:
        return self._delay > 0 and not self.connected

    async def reconnect(self) -> None:
        """Drop the current connection (if any) and open a fresh one now, ignoring backoff.

        Commands in flight on the old connection raise ``HostUnavailable(may_have_run=True)``.
        """
        old = self._conn
        self._conn = None
        if old is not None:
            old.abort()
        await self.connect()

    async def close(self) -> None:
        """Close the connection; ``run`` refuses until ``connect``/``reconnect`` is called."""
        self._closed = True
        if self._attempt is not None and not self._attempt.done():
            self._attempt.cancel()
            with contextlib.suppress(BaseException):
                await self._attempt
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await conn.wait_closed()
        self._set_state(HostState.DISCONNECTED)

    async def _connection(self) -> asyncssh.SSHClientConnection:
        """The live connection, opening one if needed (several callers share one attempt)."""
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        if self._attempt is None or self._attempt.done():
            self._attempt = asyncio.ensure_future(self._open())
            # nobody may be left to await a failed attempt: do not log "never retrieved"
            self._attempt.add_done_callback(lambda t: t.cancelled() or t.exception())
        attempt = self._attempt
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if attempt.cancelled() and not (me is not None and me.cancelling()):
                # close() cancelled the shared attempt, not this caller
                raise HostUnavailable(f"host {self.name}: closed while connecting") from None
            raise

    async def _open(self) -> asyncssh.SSHClientConnection:
        self.connect_attempts += 1
        self._set_state(HostState.CONNECTING, self.last_error)
        try:
            conn = await self._dial()
            try:
                base = await self._init_base_dir(conn)
            except BaseException:
                conn.abort()
                raise
        except HostConnectError as e:
            self._delay = min(self._max_delay, max(self._initial_delay, self._delay * 2))
            self._retry_at = time.monotonic() + self._delay
            self._set_state(HostState.ERROR, e.message)
            raise
        except BaseException:
            self._set_state(HostState.DISCONNECTED, self.last_error)
            raise
        self.base_dir = base
        self._conn = conn
        self._delay = 0.0
        self._retry_at = 0.0
        self.generation += 1
        self._set_state(HostState.CONNECTED, None)
        return conn

    def _connect_kwargs(self) -> dict:
        c = self.config
        kw: dict = {
            "known_hosts": self._known_hosts(),
            "connect_timeout": c.connect_timeout,
            "keepalive_interval": c.keepalive_interval,
            "keepalive_count_max": KEEPALIVE_COUNT_MAX,
            "client_factory": lambda: _Client(self),
            "encryption_algs": CIPHERS,
        }
        if self.ssh_config is not None:
            kw["config"] = [_expand(p) for p in self.ssh_config] if self.ssh_config else None
        if c.port:
            kw["port"] = c.port
        if c.user:
            kw["username"] = c.user
        if c.identity_file:
            kw["client_keys"] = [_expand(c.identity_file)]
            kw["ignore_encrypted"] = True  # an encrypted key may be usable through the agent
        if not c.use_agent:
            kw["agent_path"] = None
        return kw

    def _known_hosts(self) -> asyncssh.SSHKnownHosts | list[str]:
        files = [f for f in known_hosts_files(self.config) if os.path.isfile(f)]
        # never an empty value: asyncssh would then fall back to ~/.ssh/known_hosts
        return files if files else asyncssh.import_known_hosts("")

    def _err(self, text: str, kind: str) -> HostConnectError:
        return HostConnectError(_one_line(f"host {self.name}: {text}"), kind)

    async def _dial(self) -> asyncssh.SSHClientConnection:
        t = self.target
        where = _hostport(t.host, t.port)
        host = _target_host(self.name, self.config)
        try:
            kwargs = self._connect_kwargs()
            return await asyncssh.connect(host, **kwargs)
        except asyncssh.HostKeyNotVerifiable:
            raise await self._host_key_error() from None
        except asyncssh.PermissionDenied:
            status = await key_status(self.name, self.config, ssh_config=self.ssh_config)
            fix = key_fix(status, self.name, self.config)
            raise self._err(
                f"authentication failed for {t}: {status.describe()}" + (f"; {fix}" if fix else ""),
                "auth",
            ) from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as e:
            ident = self.config.identity_file
            raise self._err(f"cannot use identity_file {ident}: {e}", "key") from None
        except FileNotFoundError as e:
            ident = _expand(self.config.identity_file) if self.config.identity_file else None
            if ident and e.filename == ident:
                raise self._err(f"identity_file {ident} does not exist", "key") from None
            raise self._err(f"file not found: {e.filename}", "config") from None
        except socket.gaierror as e:
            raise self._err(f"cannot resolve hostname {t.host!r}: {e.strerror}", "dns") from None
        except ConnectionRefusedError:
            raise self._err(f"cannot connect to {where}: connection refused", "refused") from None
        except TimeoutError:
            raise self._err(
                f"connecting to {where} timed out after {self.config.connect_timeout:g}s", "timeout"
            ) from None
        except asyncssh.DisconnectError as e:
            if "host key" in str(e.reason).lower() and host_key_known(self.config, t.host, t.port):
                raise await self._host_key_error() from None  # known key of another type
            raise self._err(f"ssh connection to {where} failed: {e.reason}", "protocol") from None
        except OSError as e:
            why = os.strerror(e.errno).lower() if e.errno else str(e)
            raise self._err(f"cannot connect to {where}: {why}", "unreachable") from None
        except (ValueError, asyncssh.Error) as e:
            raise self._err(f"ssh settings for {where} are not valid: {e}", "config") from None

    async def _host_key_error(self) -> HostConnectError:
        check = await check_host_key(self.name, self.config, ssh_config=self.ssh_config)
        where = _hostport(self.target.host, self.target.port)
        if check.status == "changed":
            return self._err(
                f"the host key of {where} has CHANGED ({check.seen}) and does not match "
                f"known_hosts; this may be an attack. If the change is expected, {check.fix}",
                "host_key_changed",
            )
        return self._err(
            f"the host key of {where} is not known ({check.seen}); {check.fix}",
            "host_key_unknown",
        )

    async def _init_base_dir(self, conn: asyncssh.SSHClientConnection) -> str:
        script = base_dir_script(self.config.base_dir or DEFAULT_REMOTE_BASE)
        try:
            async with self._sem:
                res = await self._exec(conn, script, None, self.config.connect_timeout)
        except HostUnavailable as e:
            raise self._err(
                f"lost the connection while preparing base_dir: {e}", "protocol"
            ) from None
        path = res.stdout.decode("utf-8", "replace").strip()
        if not res.ok or not path.startswith("/"):
            raise self._err(
                f"cannot create base_dir {self.config.base_dir or DEFAULT_REMOTE_BASE}: "
                f"{res.error_text()}",
                "base_dir",
            )
        return path

    def _connection_lost(self, conn: asyncssh.SSHClientConnection, exc: Exception | None) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        if self._closed:
            self._set_state(HostState.DISCONNECTED)
            return
        # the first attempt after a loss is immediate; failures back off from there
        self._delay = 0.0
        self._retry_at = 0.0
        reason = _one_line(exc) if exc else "closed by the host"
        self._set_state(HostState.DISCONNECTED, f"host {self.name}: connection lost: {reason}")

    async def _usable_connection(self) -> asyncssh.SSHClientConnection:
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        if self._closed:
            raise HostUnavailable(f"host {self.name}: not connected")
        attempting = self._attempt is not None and not self._attempt.done()
        wait = self._retry_at - time.monotonic()
        if not attempting and wait > 0:
            raise HostUnavailable(
                _one_line(f"{self.last_error or f'host {self.name}: unavailable'}"
                          f" (next reconnect attempt in {wait:.1f}s)")
            )
        try:
            return await self._connection()
        except HostConnectError as e:
            raise HostUnavailable(e.message) from None

    # -- commands -------------------------------------------------------------------------

    async def run(
        self, script: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run ``script`` with bash on the host. Never re-sent: see ``HostUnavailable``."""
        conn = await self._usable_connection()
        async with self._sem:
            return await self._exec(conn, script, stdin, timeout)

    async def _exec(
        self,
        conn: asyncssh.SSHClientConnection,
        script: str,
        stdin: bytes | None,
        timeout: float | None,
    ) -> CommandResult:
        body = script.encode("utf-8", "surrogateescape")
        # the host enforces the timeout itself: OpenSSH ignores signal requests, and closing the
        # channel leaves the command running. GNU timeout kills the whole process group.
        limit = f"timeout -k 2 {max(timeout, 0.001):.3f} " if timeout is not None else ""
        if len(body) > MAX_INLINE_SCRIPT:
            command = "bash -c " + quote(stdin_script(len(body), limit))
            data = body + (stdin or b"")
        else:
            command = limit + "bash -c " + quote(script)
            data = stdin or b""
        wait = timeout + 5 if timeout is not None else None  # in case the host stops answering
        started = time.monotonic()
        try:
            proc = await conn.create_process(command, encoding=None, request_pty=False)
        except asyncssh.ChannelOpenError as e:
            if conn.is_closed():
                raise self._lost_error(conn, e, may_have_run=False) from None
            raise HostUnavailable(
                _one_line(f"host {self.name}: the server refused a session ({e.reason}); "
                          f"lower hosts.{self.name}.max_sessions below its MaxSessions"),
            ) from None
        except (asyncssh.Error, OSError) as e:
            raise self._lost_error(conn, e, may_have_run=False) from None
        try:
            try:
                if data:
                    proc.stdin.write(data)
                proc.stdin.write_eof()
            except BrokenPipeError:
                # the server closed the channel first: a quick command ended before this task
                # resumed (a busy loop). Its exit status tells; a lost connection has none.
                pass
            async with asyncio.timeout(wait):
                out, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(Exception):
                proc.kill()
            proc.close()
            return CommandResult(124, b"", f"timed out after {timeout}s".encode())
        except (asyncssh.Error, OSError) as e:
            proc.close()
            raise self._lost_error(conn, e, may_have_run=True) from None
        except BaseException:
            proc.close()  # cancelled: free the channel
            raise
        status, sig = proc.exit_status, proc.exit_signal
        if status is None and sig is None:
            raise self._lost_error(conn, None, may_have_run=True)
        if status is not None and status >= 0:
            if timeout is not None and status in (124, 137) and (
                time.monotonic() - started >= timeout
            ):
                err = (err or b"") + f"timed out after {timeout:g}s\n".encode()
            return CommandResult(status, out or b"", err or b"")
        name = sig[0] if sig else "?"
        try:
            code = 128 + signal.Signals["SIG" + name].value
        except KeyError:
            code = 255
        return CommandResult(code, out or b"", (err or b"") + f"killed by signal {name}\n".encode())

    def _lost_error(
        self, conn: asyncssh.SSHClientConnection, exc: BaseException | None, *, may_have_run: bool
    ) -> HostUnavailable:
        if not conn.is_closed():
            conn.abort()  # a half-dead channel: start afresh next time
        self._connection_lost(conn, exc if isinstance(exc, Exception) else None)
        what = "the command may have run" if may_have_run else "the command did not start"
        reason = _one_line(exc) if exc else "connection closed"
        return HostUnavailable(
            f"host {self.name}: connection lost ({reason}); {what} and was not re-sent",
            may_have_run=may_have_run,
        )

    async def copy_from(self, path: str, offset: int, dest: str, at: int, seconds: float) -> int | None:
        """Copy the host's file ``path`` from ``offset`` into the local file ``dest`` (created
        private) at ``at``, through OpenSSH's ``ssh``, for at most ``seconds``: the bytes
        written (cut off, or a link that broke: those that came); None when ``ssh`` cannot do
        it (not installed, cannot connect or log in): the caller reads through asyncssh.

        For a log far behind: asyncssh handles each 32 KiB packet in Python (100-170 MB/s on
        2 cores), ``ssh`` at the speed of ``ssh host cat``, writing straight into the file.
        """
        argv = [*self.ssh_command_args(), "bash -c " + quote(probe.copy_from(path, offset))]
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.lseek(fd, at, os.SEEK_SET)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=fd,
                    stderr=asyncio.subprocess.PIPE, start_new_session=True)
            except OSError as e:
                log.info("host %s: no ssh client to copy logs with (%s)", self.name, e)
                return None
            err = b""
            try:
                async with asyncio.timeout(seconds):
                    _, err = await proc.communicate()
            except TimeoutError:
                pass  # what came is written: the next call goes on from there
            finally:
                if proc.returncode is None:  # cut off, or cancelled with the tick
                    proc.kill()
                    await asyncio.shield(proc.wait())
            written = os.lseek(fd, 0, os.SEEK_CUR) - at  # the child wrote through this file
        finally:
            os.close(fd)
        if proc.returncode == 255 and not written:
            log.info("host %s: ssh cannot copy logs: %s", self.name, _one_line(err.decode(errors="replace")))
            return None
        return written

    @contextlib.asynccontextmanager
    async def sftp(self) -> AsyncIterator[asyncssh.SFTPClient]:
        """An SFTP client on the host's connection (counts as one session)."""
        conn = await self._usable_connection()
        async with self._sem:
            try:
                client = await conn.start_sftp_client()
            except (asyncssh.Error, OSError) as e:
                if conn.is_closed():
                    raise self._lost_error(conn, e, may_have_run=False) from None
                why = _one_line(f"host {self.name}: cannot start SFTP: {e}")
                raise EvopilotError(why) from None
            try:
                yield client
            finally:
                client.exit()


def _known_keys(config: HostConfig, host: str, port: int):
    """(trusted host keys, trusted CA keys) in known_hosts for ``host``:``port``."""
    files = [f for f in known_hosts_files(config) if os.path.isfile(f)]
    if not files:
        return [], []
    try:
        addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        addr = ""
    try:
        found = asyncssh.read_known_hosts(files).match(host, addr, port if port != 22 else None)
    except (OSError, ValueError, asyncssh.Error):
        return [], []
    return list(found[0]), list(found[1])


def host_key_known(config: HostConfig, host: str, port: int) -> bool:
    """Whether known_hosts holds any key for ``host``:``port`` (by name or address)."""
    keys, cas = _known_keys(config, host, port)
    return bool(keys or cas)


@dataclass(frozen=True, slots=True)
class HostKeyCheck:
    status: str
    """``known``, ``unknown``, ``changed``, ``ca`` (a certificate authority is trusted: left to
    the connection) or ``unavailable`` (the server's key could not be fetched)."""
    seen: str
    """The server's key as ``ALG SHA256:...``, or why it is not known."""
    fix: str | None


async def check_host_key(
    name: str, config: HostConfig, *, ssh_config: Sequence[str] | None = None
) -> HostKeyCheck:
    """Fetch the server's host key (no authentication) and compare it with known_hosts."""
    t = resolve_target(name, config, ssh_config=ssh_config)
    where = _hostport(t.host, t.port)
    kh_file = user_known_hosts_file(config)
    scan = join(["ssh-keyscan", *(["-p", str(t.port)] if t.port != 22 else []), t.host])
    trust = f"trust it with: {scan} >> {quote(kh_file)}"
    keys, cas = _known_keys(config, t.host, t.port)
    try:
        async with asyncio.timeout(config.connect_timeout):
            key = await asyncssh.get_server_host_key(t.host, t.port, config=None)
    except (OSError, asyncssh.Error, TimeoutError) as e:
        # a timeout has no message of its own: a server that accepts and never answers
        why = f"no answer within {config.connect_timeout:g}s" if isinstance(e, TimeoutError) else (
            str(e) or type(e).__name__)
        return HostKeyCheck("unavailable", _one_line(f"cannot fetch the host key: {why}"), trust)
    if key is None:
        return HostKeyCheck("unavailable", "the server sent no host key", trust)
    seen = f"{key.get_algorithm()} {key.get_fingerprint()}"
    if any(k.public_data == key.public_data for k in keys):
        return HostKeyCheck("known", seen, None)
    if cas:
        return HostKeyCheck("ca", seen, None)
    if keys:
        remove = join(["ssh-keygen", "-R", where, "-f", kh_file])
        return HostKeyCheck("changed", seen, f"remove the old key with: {remove} and {trust}")
    return HostKeyCheck("unknown", seen, f"after checking that fingerprint, {trust}")
