"""What the bench scripts share: the environment of a timed CLI, the closing summary of a run
on a loopback sshd."""

from __future__ import annotations

import json
import os
import time

# A CLI timed as installed: bytecode is cached (a PYTHONDONTWRITEBYTECODE=1, as this machine's
# shells set, would compile evopilot's modules on every start, which no installed copy does)
CLI_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def print_summary(rows: list[tuple[str, ...]], *, connect_s: float, started: float, note: str = "",
                  raw: dict | None = None) -> None:
    """The machine's load and the run's facts, then ``rows`` as a table (first column left,
    the others right), then ``raw`` as JSON when given."""
    load = os.getloadavg()
    print(f"\nloopback sshd, {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f}, "
          f"connect {connect_s * 1000:.0f} ms, {note}run {time.perf_counter() - started:.0f} s")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
    if raw is not None:
        print(json.dumps(raw, default=str))
