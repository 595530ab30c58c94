"""Wake the scheduler the moment a local job ends.

A job's wrapper writes a byte to a FIFO in the local jobs directory right after its exit code
(see ``core.jobs.scripts.wrapper``). tmux's ``wait-for`` channel, which remote hosts use, lives
in the tmux server, and the server exits whenever its last session ends: with short jobs it
comes and goes between them, and a waiter on it fails and falls back to polling.

The wrapper opens the FIFO read-write, which never blocks; with no engine holding it open, the
byte is dropped when the wrapper closes it. Each engine holds it open for reading and writing
(so it never reads end-of-file between writers). With several engines on one machine a byte
wakes one of them; the others see the end at their next poll.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable

from evopilot.core.hosts.base import Host


def fifo_path(host: Host, instance: str) -> str:
    """The FIFO the wrappers of this database's jobs on ``host`` write to (local hosts only)."""
    return host.job_dir(f"{instance}.done")


async def watch(path: str, wake: Callable[[], None]) -> None:
    """Call ``wake`` whenever a byte arrives on the FIFO at ``path``; runs until cancelled."""
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(os.lstat(path).st_mode):  # not ours: leave it, keep polling
            await asyncio.Future()
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()

    def drain() -> None:
        try:
            while os.read(r, 4096):
                pass
        except BlockingIOError:
            pass
        wake()

    loop.add_reader(r, drain)
    try:
        await asyncio.Future()
    finally:
        loop.remove_reader(r)
        os.close(r)
        os.close(w)
