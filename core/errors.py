"""The one exception type users see: a clear, one-line message and an exit code."""


class EvopilotError(Exception):
    """An error caused by input, config or environment, shown to the user as one line.

    The CLI prints ``evopilot: error: <message>`` and exits with ``exit_code``; the TUI shows the
    message inline. Anything else escaping the core is a bug and keeps its traceback.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
