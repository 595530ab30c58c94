"""The Hosts tab: every configured host, its connection state, running jobs and free slots;
under the table, the highlighted Slurm host's partition nodes by state and evopilot's jobs there
by Slurm state (pending, running), as its last tick saw them (``formatting.cluster_line``): a
line of its own, which the table's 80 columns have no room for.

Rows are ``Engine.hosts()`` as it gives them (state, running, slots, free slots, load, last
error; connecting nothing); the head line says whether the queue is paused, read once the engine is open and again when a host changes or a job
changes status, coalesced to at most one read per ``COUNT_INTERVAL``. ``d`` runs
``Engine.doctor`` on the highlighted host, ``r`` (re)connects it with ``Engine.connect_host``.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.widgets import DataTable, Static

from evopilot.core import formatting
from evopilot.core.errors import EvopilotError
from evopilot.tui import keymap
from evopilot.tui.messages import HostChanged, JobsChanged, QueueChanged
from evopilot.tui.screens.dialogs import ReportDialog
from evopilot.tui.screens.pane import Pane

LOAD_INTERVAL = 2.0
"""While the tab is shown, rows are re-read this often for the load (the local host's is read
then; an SSH host's comes from its monitor's last probe: no round trip)."""

COUNT_INTERVAL = 0.25
"""Host rows are re-read at most this often while jobs or hosts change."""

STATE_WORDS = {"disconnected": "not connected"}
STATE_WIDTH = len("not connected")
"""The longest state shown: the column keeps its width as hosts connect and disconnect."""


class HostTable(DataTable):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.HOSTS)

    def action_doctor(self) -> None:
        self.parent.doctor()  # type: ignore[union-attr]

    def action_reconnect(self) -> None:
        self.parent.reconnect()  # type: ignore[union-attr]


class HostsPane(Pane):
    DEFAULT_CSS = """
    HostsPane #hosts-head { height: 1; padding: 0 1; }
    HostsPane HostTable { height: 1fr; border: round $foreground 30%; }
    HostsPane HostTable:focus { border: round $accent; }
    HostsPane #hosts-cluster { height: 1; padding: 0 1; display: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[dict] = []
        self.errors: dict[str, str] = {}
        """Errors of our own actions (a failed reconnect), shown until the next success."""
        self._pending = False

    @property
    def table(self) -> HostTable:
        return self.query_one(HostTable)

    def compose(self) -> ComposeResult:
        yield Static("", id="hosts-head", markup=False)
        table = HostTable(cursor_type="row", zebra_stripes=False)
        table.add_column("HOST")
        table.add_column("STATE", width=STATE_WIDTH)
        table.add_columns("RUNNING", "SLOTS", "FREE", "LOAD", "MEM", "GPU", "LAST ERROR")
        yield table
        yield Static("", id="hosts-cluster", markup=False)

    def focus_default(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        self.set_interval(LOAD_INTERVAL, self._refresh_load)

    def _refresh_load(self) -> None:
        if self.evo.engine is not None and self.is_on_screen:
            self.changed()

    def names(self) -> list[str]:
        return [r["name"] for r in self.rows]

    def _fill(self) -> None:
        t = self.table
        row = t.cursor_row
        t.clear()
        for r in self.rows:
            error = self.errors.get(r["name"]) or r.get("last_error")
            state = "error" if r["name"] in self.errors else STATE_WORDS.get(r["state"], r["state"])
            t.add_row(r["name"], state, str(r["running"]), str(r["slots"]), str(r["free_slots"]),
                      *formatting.host_load(r.get("load")), formatting.last_line(error), key=r["name"])
        if row:
            t.move_cursor(row=min(row, t.row_count - 1))
        self._show_cluster()

    def _show_cluster(self) -> None:
        """The highlighted host's cluster line; hidden for a host that is not a Slurm cluster."""
        name = self._current()
        row = next((r for r in self.rows if r["name"] == name), None)
        line = self.query_one("#hosts-cluster", Static)
        line.display = row is not None and "slurm" in row
        if line.display:
            line.update(formatting.cluster_line(name, row["slurm"]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_cluster()

    async def engine_ready(self) -> None:
        self._show_queue(await self.evo.engine.queue_paused())
        await self._read()

    def _show_queue(self, paused: bool) -> None:
        queue = "queue: PAUSED (p in Jobs resumes)" if paused else "queue: running"
        self.query_one("#hosts-head", Static).update(
            f"Hosts: config.toml [hosts] and local · {queue} · d doctor · r reconnect")

    def on_queue_changed(self, message: QueueChanged) -> None:
        self._show_queue(message.paused)

    def on_host_changed(self, message: HostChanged) -> None:
        self.changed()

    def on_jobs_changed(self, message: JobsChanged) -> None:
        if message.status_changed:
            self.changed()

    def changed(self) -> None:
        """Something about hosts or running jobs changed: re-read the rows (coalesced)."""
        if self._pending:
            return
        self._pending = True
        self.set_timer(COUNT_INTERVAL, lambda: self.run_worker(self._read(), group="host-rows"))

    async def _read(self) -> None:
        self._pending = False
        engine = self.evo.engine
        if engine is None:
            return
        self.rows = await engine.hosts()
        if self.is_attached and self.query(HostTable):  # not while the app closes
            self._fill()

    def _current(self) -> str | None:
        t = self.table
        if t.row_count == 0:
            return None
        return self.names()[t.cursor_row]

    def doctor(self) -> None:
        name = self._current()
        engine = self.evo.engine
        if name is None or engine is None:
            return
        dialog = ReportDialog(f"doctor: {name}", [f"checking {name}…"])
        self.app.push_screen(dialog)

        async def go() -> None:
            try:
                lines = formatting.check_lines(await engine.doctor(name)) or ["no checks"]
            except EvopilotError as e:
                lines = [f"doctor failed: {e.message}"]
            except Exception as e:  # noqa: BLE001 - show what went wrong in the dialog
                lines = [f"doctor failed: {type(e).__name__}: {e}"]
            dialog.update_lines(lines)

        self.run_worker(go(), group="doctor", exclusive=True)

    def reconnect(self) -> None:
        name = self._current()
        if name is None:
            return

        async def go() -> None:
            self.app.notify(f"connecting {name}…")
            row = await self.evo.call(self.evo.engine.connect_host, name)
            self.errors.pop(name, None)
            self.rows = [row if r["name"] == name else r for r in self.rows]
            self._fill()
            self.app.notify(f"{name}: {row['state']}")

        def failed(message: str) -> None:
            self.errors[name] = message
            self._fill()

        self.evo.act(go(), on_error=failed)
