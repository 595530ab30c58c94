"""Attaching to a tmux session from the app (a job's, an attempt's agent) and coming back."""

from __future__ import annotations

import asyncio
import subprocess
from typing import TYPE_CHECKING

from textual.app import App

if TYPE_CHECKING:
    from evopilot.core.jobs.interactive import AttachCommand


async def attach(app: App, command: AttachCommand) -> None:
    """Run ``command``; a failure is a notification."""
    if command.takes_terminal:
        with app.suspend():  # the terminal is tmux's until the user detaches
            code, err = subprocess.run(command.argv).returncode, ""
    else:  # switch-client: this tmux client now shows the session, the app runs on
        proc = await asyncio.create_subprocess_exec(
            *command.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = (await proc.communicate())[1].decode(errors="replace")
        code = proc.returncode
    if code:
        app.notify(f"{command.command}: {err.strip() or f'exit status {code}'}", severity="error")
