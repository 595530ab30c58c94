"""KeyBar: the footer line of active key bindings, drawn as one line of text.

Textual's ``Footer`` recomposes one widget per key whenever the bindings change (every focus
change); with ~25 keys that cost ~60 ms of CSS work per change here. This bar renders the same
information (``screen.active_bindings`` with ``show=True``, grouped by ``Binding.group``,
keymap overrides applied) as a single ``Text``. Keys are bold, so they stand out with NO_COLOR
too. Mouse clicks are not needed: every key is also in the command palette.

When the line is too narrow for every key, whole items are left out by rank (``Spec.rank``:
Help and Quit always stay, then the tabs, then the pane's main keys), never cut mid-item.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from evopilot.tui import keymap

PALETTE_RANK = 5


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
        self._ranks: list[int] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        if screen is not self.screen:
            return
        items: list[tuple[str, str, int]] = []
        seen_actions: set[str] = set()
        group = None
        group_keys: list[str] = []
        group_rank = 9
        app = self.app

        def flush() -> None:
            nonlocal group, group_keys, group_rank
            if group is not None and group_keys:
                keys = "".join(group_keys) if group.compact else " ".join(group_keys)
                items.append((keys, group.description, group_rank))
            group, group_keys, group_rank = None, [], 9

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
                group_rank = min(group_rank, keymap.rank(binding.id))
                continue
            flush()
            items.append((shown, binding.description, keymap.rank(binding.id)))
        flush()
        items.sort(key=lambda item: item[1] != "Help")  # where the eye looks for it
        if palette_key:
            items.append((palette_key, "palette", PALETTE_RANK))
        if [i[:2] for i in items] != self._items or [i[2] for i in items] != self._ranks:
            self._items = [i[:2] for i in items]
            self._ranks = [i[2] for i in items]
            self.refresh()

    @property
    def items(self) -> list[tuple[str, str]]:
        """(keys, description) of every active key (for tests); ``shown`` is what fits."""
        return list(self._items)

    def fitted(self, width: int) -> list[tuple[str, str]]:
        """The items that fit in ``width`` cells: by rank (rank 0 always), in their order."""
        cells = [len(keys) + len(description) + 4 for keys, description in self._items]
        order = sorted(range(len(cells)), key=lambda i: (self._ranks[i], i))
        keep, used = set(), 0
        for i in order:
            if self._ranks[i] == 0 or used + cells[i] <= width:
                keep.add(i)
                used += cells[i]
        return [item for i, item in enumerate(self._items) if i in keep]

    @property
    def shown(self) -> list[tuple[str, str]]:
        """(keys, description) as drawn at the bar's width now (for tests)."""
        return self.fitted(self.size.width)

    def render(self) -> RenderResult:
        key_style = self.get_component_rich_style("key-bar--key")
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for keys, description in self.shown:
            text.append(f" {keys} ", style=key_style)
            text.append(f" {description} ")
        return text

