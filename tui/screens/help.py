"""``?``: every binding of the app with its id, its key (after config overrides) and what it does."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from evopilot.tui import keymap


def key_label(keys: str, app) -> str:
    from textual.binding import Binding

    return ", ".join(app.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))


def help_rows(app, overrides: dict[str, str]) -> list[tuple[str, str, str]]:
    """(id, key, description) of every binding, keys as the user types them."""
    rows = []
    for spec in keymap.all_specs():
        keys = overrides.get(spec.id, spec.key)
        rows.append((spec.id, key_label(keys, app), spec.long))
    return rows


class HelpScreen(ModalScreen):
    BINDINGS: ClassVar[list[BindingType]] = keymap.bindings(keymap.HELP)

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 90; max-width: 100%; height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    HelpScreen #help-title { text-style: bold; }
    HelpScreen DataTable { height: 1fr; }
    HelpScreen .hint { color: $text-muted; }
    """

    def __init__(self, overrides: dict[str, str]) -> None:
        super().__init__()
        self.overrides = overrides

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Keys — change any of them in config.toml: [keys] \"jobs.kill\" = \"ctrl+k\"",
                         id="help-title", markup=False)
            table = DataTable(cursor_type="row", id="help-table")
            rows = help_rows(self.app, self.overrides)
            id_w = max(len(r[0]) for r in rows)
            key_w = max(len(r[1]) for r in rows)
            # the box is 90 wide at most; less its border, padding, cell padding and scrollbar
            room = min(90, self.app.size.width) - 4 - 6 - 2 - id_w - key_w
            table.add_column("ID", width=id_w)
            table.add_column("KEY", width=key_w)
            table.add_column("ACTION", width=max(16, room))
            for spec_id, key, text in rows:
                table.add_row(spec_id, key, Text(text), height=None)  # wraps at words
            yield table
            yield Static("Esc / ? / q: close · ctrl+p: command palette", classes="hint", markup=False)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()

    def action_close(self) -> None:
        self.dismiss(None)
