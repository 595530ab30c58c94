"""Waiting with a time limit without losing a cancellation.

Python 3.11's ``asyncio.wait_for`` returns the awaited result when that finishes in the same
loop step as its caller is cancelled: the cancellation is lost, and a loop that is stopped by
cancelling it runs on for ever (the worker under `evolve start` did, after its experiment was
stopped). ``asyncio.timeout`` does not lose it, so evopilot waits with that alone
(tests/test_imports.py checks), and with ``wait_set`` for the common case of an event.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` is set within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False
