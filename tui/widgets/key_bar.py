"""KeyBar: the footer line of active key bindings, drawn as one line of text.

Textual's ``Footer`` recomposes one widget per key whenever the bindings change (every focus
change); with ~25 keys that cost ~60 ms of CSS work per change here. This bar renders the same
information (``screen.active_bindings`` with ``show=True``, grouped by ``Binding.group``,
keymap overrides applied) as a single ``Text``. Keys are bold, so they stand out with NO_COLOR
too. Mouse clicks are not needed: every key is also in the command palette.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
    }
    KeyBar > .key-bar--key { text-style: bold; color: $footer-key-foreground; }
    """

    COMPONENT_CLASSES = {"key-bar--key"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._items: list[tuple[str, str]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        if screen is not self.screen:
            return
        items: list[tuple[str, str]] = []
        seen_actions: set[str] = set()
        group = None
        group_keys: list[str] = []
        app = self.app

        def flush() -> None:
            nonlocal group, group_keys
            if group is not None and group_keys:
                items.append(("".join(group_keys) if group.compact else " ".join(group_keys), group.description))
            group, group_keys = None, []

        palette_key = None
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE:
                palette_key = app.get_key_display(binding)
                continue
            if not binding.show or binding.action in seen_actions:
                continue
            seen_actions.add(binding.action)
            shown = app.get_key_display(binding)
            if binding.group is not None:
                if group is not binding.group:
                    flush()
                    group = binding.group
                group_keys.append(shown)
                continue
            flush()
            items.append((shown, binding.description))
        flush()
        # Help first: at 80 columns the end of the line is cut off.
        items.sort(key=lambda item: item[1] != "Help")
        if palette_key:
            items.append((palette_key, "palette"))
        if items != self._items:
            self._items = items
            self.refresh()

    @property
    def items(self) -> list[tuple[str, str]]:
        """(keys, description) as shown (for tests)."""
        return list(self._items)

    def render(self) -> RenderResult:
        key_style = self.get_component_rich_style("key-bar--key")
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for keys, description in self._items:
            text.append(f" {keys} ", style=key_style)
            text.append(f" {description} ")
        return text

