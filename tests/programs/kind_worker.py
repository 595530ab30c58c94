"""A worker process that knows one extra job kind, ``probe``, whose end handler counts its calls.

    python tests/programs/kind_worker.py submit SECONDS   queue one probe job, print its id
    python tests/programs/kind_worker.py work [--crash]   run until idle; --crash: die with
                                                          SIGKILL inside the handler, after its
                                                          write and before the commit

The handler adds 1 to the meta row ``probe-<job id>`` through the transaction it is given, so
the count in the database is the number of committed handler runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from evopilot.core import locations
from evopilot.core.config import load_config
from evopilot.core.engine import Engine
from evopilot.core.jobs.kinds import JobKind


async def main(argv: list[str]) -> None:
    crash = "--crash" in argv

    async def on_end(db, job):
        await db.execute(
            "INSERT INTO meta(key, value) VALUES (?, '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1", (f"probe-{job.id}",))
        if crash:
            os.kill(os.getpid(), signal.SIGKILL)
        return ()

    engine = await Engine.open(load_config(), locations.data_home())
    engine.kinds.register(JobKind("probe", on_end=on_end))
    try:
        if argv[0] == "submit":
            job = await engine.submit(f"sleep {float(argv[1])}; echo probe done", kind="probe",
                                      origin=("test", 7))
            print(job.id, flush=True)
        else:
            await engine.run_forever(until_idle=True)
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
