"""What every tab's content is (``Pane``) and what it may ask of the app (``AppContext``).

The app composes one pane per tab, awaits each pane's ``engine_ready`` once the engine is open,
calls ``focus_default`` when its tab is shown and posts every pane the messages of
``tui.messages``. Panes see the app only through ``AppContext``: they never import it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from textual.containers import Vertical

from evopilot.core.config import Config
from evopilot.core.engine import Engine
from evopilot.tui.widgets.job_table import Clock


class AppContext(Protocol):
    """The app as its panes use it (``EvopilotApp`` implements it)."""

    engine: Engine | None
    """None until the engine is open (then every pane's ``engine_ready`` has run or runs)."""
    config: Config
    clock: Clock
    """"Now", for elapsed times (tests freeze it)."""

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Await an engine method (an error if the engine is not open yet)."""
        ...

    def act(self, coro: Coroutine, on_error: Callable[[str], None] | None = None) -> None:
        """Run ``coro`` in a worker; an ``EvopilotError`` becomes a notification."""
        ...


class Pane(Vertical):
    """The content of one tab."""

    @property
    def evo(self) -> AppContext:
        return self.app  # type: ignore[return-value]

    @property
    def shown(self) -> bool:
        """Whether the pane's tab is the active one (set at once when tabs switch, unlike
        ``is_on_screen``, which waits for the next screen update)."""
        return all(node.display for node in self.ancestors_with_self)

    async def engine_ready(self) -> None:
        """The engine is open: read what the pane shows first (the app waits for every pane)."""

    def focus_default(self) -> None:
        """The tab was shown: focus the widget its keys belong to (none by default)."""
        self.app.set_focus(None)
