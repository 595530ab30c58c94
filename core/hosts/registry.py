"""The hosts this engine talks to: one ``Host`` object per configured name, made on first use.

The local host is always there (it needs no connection); an SSH host connects on first use and,
once it has connected, reconnects by itself with backoff. State changes are published as
``HostEvent``s.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from evopilot.core import locations
from evopilot.core.config import LOCAL, Config, HostConfig
from evopilot.core.errors import EvopilotError
from evopilot.core.events import EventBus, HostEvent
from evopilot.core.hosts.probe import Load, load_dict
from evopilot.core.hosts.base import Host
from evopilot.core.hosts.local import LocalHost


class HostRegistry:
    def __init__(self, config: Config, home: Path, bus: EventBus) -> None:
        self.config = config
        self.home = home
        self.bus = bus
        self._hosts: dict[str, Host] = {}

    def _make(self, name: str, cfg: HostConfig) -> Host:
        if name == LOCAL:
            return LocalHost(name, cfg, locations.local_base(self.home))
        ssh_config = None if cfg.ssh_config is None else [cfg.ssh_config] if cfg.ssh_config else []
        if cfg.kind == "slurm":
            from evopilot.core.hosts import slurm

            return slurm.make(name, cfg, locations.local_base(self.home) / "slurm" / name, ssh_config)
        from evopilot.core.hosts.ssh import SshHost  # asyncssh only when a remote host is used

        return SshHost(name, cfg, ssh_config=ssh_config)

    async def get(self, name: str) -> Host:
        """The host, connected (an SSH host: until its first connect succeeds)."""
        if name not in self._hosts:
            host = self._make(name, self.config.host(name))  # raises for an unknown host
            if not host.is_local:
                host.on_state_change = lambda h: self.bus.emit(
                    HostEvent(host=h.name, state=h.state, last_error=h.last_error))
            self._hosts[name] = host
        host = self._hosts[name]
        if host.is_local and host.state != "connected":
            await host.connect()
            self.bus.emit(HostEvent(host=name, state=host.state, last_error=host.last_error))
        elif not host.base_dir:
            # An SSH host connects here until it first succeeds (that resolves its base
            # directory), with the same backoff as its later reconnects: a host that never
            # answers is not dialled again on every tick.
            await host.ensure_connected()
        return host

    async def ask_local_clusters(self) -> None:
        """Make the Slurm hosts whose commands run here (``local = true``): they need no
        connection, and making one asks for its nodes (``evopilot hosts`` shows them)."""
        for name in self.config.host_names():
            cfg = self.config.host(name)
            if cfg.kind == "slurm" and cfg.local and name not in self._hosts:
                try:
                    await self.get(name)
                except EvopilotError:
                    pass  # its row says what it can; a tick gives the error

    def connected(self, name: str) -> Host | None:
        """The host if it is connected now (never connects)."""
        host = self._hosts.get(name)
        return host if host is not None and host.state == "connected" else None

    def ssh_command_args(self, name: str) -> list[str]:
        """The `ssh` arguments that reach an SSH host with its settings (no connection made)."""
        return self._make(name, self.config.host(name)).ssh_command_args()

    def known(self, name: str) -> Host | None:
        """The host object if it was used in this process (never connects)."""
        return self._hosts.get(name)

    def states(self) -> dict[str, tuple[str, str | None]]:
        """Connection state and last error of every configured host (not connecting any)."""
        out = {}
        for name in self.config.host_names():
            h = self._hosts.get(name)
            if h:
                out[name] = (h.state.value, h.last_error)
            else:  # the local host needs no connection; SSH hosts connect on first use
                out[name] = ("connected" if name == LOCAL else "disconnected", None)
        return out

    def rows(self, running: dict[str, int], local_load: Load | None = None) -> list[dict]:
        """Each host with its state, running jobs, free slots, last error and load (the local
        one's ``local_load``, an SSH host's from its last probe: None while it runs nothing).
        A host that cannot be reached has no free slots: nothing can start there now."""
        out = []
        for name, (state, error) in self.states().items():
            slots = self.config.host(name).slots(name == LOCAL)
            n = running.get(name, 0)
            host = self._hosts.get(name)
            reachable = host is None or not host.unreachable
            load = local_load if name == LOCAL else host.load if host is not None else None
            row = {"name": name, "state": state, "running": n, "slots": slots,
                   "free_slots": max(0, slots - n) if reachable else 0, "last_error": error,
                   "load": load_dict(load)}
            if self.config.host(name).kind == "slurm":
                row["slurm"] = host.summary() if host is not None else None  # type: ignore[attr-defined]
            out.append(row)
        return out

    async def reconnect(self, name: str) -> None:
        """Connect a host now (a user asked: ``hosts --connect``, the Hosts tab), and look at
        it so that its row shows its load (a Slurm cluster: its nodes) at once."""
        host = self._hosts.get(name)
        if host is not None and hasattr(host, "reconnect"):
            await host.reconnect()
        else:
            host = await self.get(name)
        await host.refresh()

    async def doctor(self, name: str) -> list:
        from evopilot.core.hosts.doctor import doctor

        return await doctor(name, self.config.host(name), self._make)

    @contextmanager
    def unreachable_skipped(self, name: str):
        """An SSH host that cannot be reached is skipped (its last error kept): its jobs keep
        running there and are caught up once it is back. Local errors are real errors."""
        try:
            yield
        except EvopilotError as e:
            if name == LOCAL or name not in self._hosts:
                raise
            self._hosts[name].last_error = str(e)

    async def close(self) -> None:
        for h in self._hosts.values():
            await h.close()
