"""A scripted coding agent for the task tests: it does what its options say, in the current
directory (an attempt's worktree), with the prompt as its last argument.

    agent.py [--write FILE] [--lines N] [--commit] [--exit N] [--usage-dollars X]
             [--usage-first] [--hang] [--interactive] PROMPT

--write FILE       write N lines (default 1) of the prompt into FILE
--commit           commit what it wrote (else it leaves it uncommitted)
--usage-dollars X  print a usage report as Claude Code's JSON output does (at the end; with
                   --usage-first before anything else)
--hang             sleep until killed (after writing)
--interactive      read lines from the terminal: each is appended to FILE (a follow-up);
                   the line `done` ends it
--exit N           exit status
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def usage(dollars: float) -> None:
    print(json.dumps({"type": "result", "result": "done", "total_cost_usd": dollars, "model": "scripted-1",
                      "usage": {"input_tokens": 100, "output_tokens": 20}}), flush=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--write")
    p.add_argument("--lines", type=int, default=1)
    p.add_argument("--commit", action="store_true")
    p.add_argument("--exit", type=int, default=0)
    p.add_argument("--usage-dollars", type=float)
    p.add_argument("--usage-first", action="store_true")
    p.add_argument("--hang", action="store_true")
    p.add_argument("--interactive", action="store_true")
    p.add_argument("prompt")
    a = p.parse_args()
    print(f"agent pid {os.getpid()} working on: {a.prompt}", flush=True)
    if a.usage_dollars is not None and a.usage_first:
        usage(a.usage_dollars)
    if a.write:
        with open(a.write, "a") as f:
            for i in range(a.lines):
                f.write(f"{a.prompt} {i}\n")
        if a.commit:
            env = {**os.environ, "GIT_AUTHOR_NAME": "agent", "GIT_AUTHOR_EMAIL": "agent@test",
                   "GIT_COMMITTER_NAME": "agent", "GIT_COMMITTER_EMAIL": "agent@test"}
            subprocess.run(["git", "add", a.write], check=True, env=env)
            subprocess.run(["git", "commit", "-q", "-m", f"agent: {a.prompt}"], check=True, env=env)
    if a.interactive:
        print("ready for input", flush=True)
        for line in sys.stdin:
            line = line.strip()
            if line == "done":
                break
            with open(a.write or "followups.txt", "a") as f:
                f.write(f"followup: {line}\n")
            print(f"got: {line}", flush=True)
    while a.hang:
        time.sleep(1)
    if a.usage_dollars is not None and not a.usage_first:
        usage(a.usage_dollars)
    print(f"agent finished: {a.prompt}", flush=True)
    return a.exit


if __name__ == "__main__":
    sys.exit(main())
