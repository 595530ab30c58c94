"""The Hosts tab: every configured host, its connection state, running jobs and free slots.

The state comes from ``HostEvent``s (a host the engine has not needed yet shows "not
connected"); running counts are re-read when a job changes status (coalesced). ``d`` runs
``core.hosts.doctor`` on the highlighted host, ``r`` reconnects it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from core.config import LOCAL
from core.models import HostEvent
from tui import data, keymap
from tui.screens.dialogs import ReportDialog

if TYPE_CHECKING:
    from tui.app import EvopilotApp

COUNT_INTERVAL = 0.25
"""Running counts are re-read at most this often while jobs change."""


class HostTable(DataTable):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.HOSTS)

    def action_doctor(self) -> None:
        self.parent.doctor()  # type: ignore[union-attr]

    def action_reconnect(self) -> None:
        self.parent.reconnect()  # type: ignore[union-attr]


class HostsPane(Vertical):
    DEFAULT_CSS = """
    HostsPane #hosts-head { height: 1; padding: 0 1; }
    HostsPane HostTable { height: 1fr; border: round $foreground 30%; }
    HostsPane HostTable:focus { border: round $accent; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.states: dict[str, tuple[str, str | None]] = {}
        self.running: dict[str, int] = {}
        self._count_pending = False

    @property
    def evo(self) -> EvopilotApp:
        return self.app  # type: ignore[return-value]

    @property
    def table(self) -> HostTable:
        return self.query_one(HostTable)

    def compose(self) -> ComposeResult:
        yield Static("Hosts: config.toml [hosts] and local · d doctor · r reconnect",
                     id="hosts-head", markup=False)
        table = HostTable(cursor_type="row", zebra_stripes=False)
        table.add_columns("HOST", "STATE", "RUNNING", "SLOTS", "FREE", "LAST ERROR")
        yield table

    def on_mount(self) -> None:
        self._fill()

    def names(self) -> list[str]:
        return self.evo.config.host_names()

    def _fill(self) -> None:
        t = self.table
        row = t.cursor_row
        t.clear()
        for name in self.names():
            state, error = self.states.get(name, ("not connected", None))
            slots = self.evo.config.host(name).slots(name == LOCAL)
            running = self.running.get(name, 0)
            t.add_row(name, state, str(running), str(slots), str(max(0, slots - running)),
                      (error or "").splitlines()[-1][:200] if error else "", key=name)
        if row:
            t.move_cursor(row=min(row, t.row_count - 1))

    async def engine_ready(self) -> None:
        await self._count()

    def on_host(self, event: HostEvent) -> None:
        self.states[event.host] = (event.state, event.last_error)
        self._fill()

    def on_jobs_changed(self) -> None:
        """Some job changed status: re-read the running counts (coalesced)."""
        if self._count_pending:
            return
        self._count_pending = True
        self.set_timer(COUNT_INTERVAL, lambda: self.run_worker(self._count(), group="host-count"))

    async def _count(self) -> None:
        self._count_pending = False
        engine = self.evo.engine
        if engine is None:
            return
        self.running = await data.running_by_host(engine, self.names())
        self._fill()

    def _current(self) -> str | None:
        t = self.table
        if t.row_count == 0:
            return None
        return self.names()[t.cursor_row]

    def doctor(self) -> None:
        name = self._current()
        if name is None:
            return
        if not data.doctor_available():
            self.app.notify("doctor not available", severity="warning")
            return
        dialog = ReportDialog(f"doctor: {name}", [f"checking {name}…"])
        self.app.push_screen(dialog)

        async def go() -> None:
            try:
                lines = await data.run_doctor(self.evo.config, self.evo.home, name)
            except Exception as e:  # noqa: BLE001 - show what went wrong in the dialog
                lines = [f"doctor failed: {type(e).__name__}: {e}"]
            dialog.update_lines(lines if lines is not None else ["doctor not available"])

        self.run_worker(go(), group="doctor", exclusive=True)

    def reconnect(self) -> None:
        name = self._current()
        if name is None:
            return

        async def go() -> None:
            host = await self.evo.call(self.evo.engine.host, name)
            again = getattr(host, "reconnect", None)
            if again is None:
                self.app.notify(f"{name}: nothing to reconnect (a local host has no connection)")
            else:
                self.app.notify(f"reconnecting {name}…")
                await again()
                self.app.notify(f"{name}: {host.state}")
            self.states[name] = (str(host.state), host.last_error)
            self._fill()

        self.evo.act(go(), on_error=lambda msg: self._error(name, msg))

    def _error(self, name: str, message: str) -> None:
        self.states[name] = ("error", message)
        self._fill()
