"""Exact knapsack on 12 random instances: prints [i/n] progress, writes metrics to $EVOPILOT_RESULTS.

Pass --fail to make the last instance raise, to see how a failed job looks.
"""

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from solver import solve_dp  # noqa: E402

N = 12
fail = "--fail" in sys.argv
rng = random.Random(42)
start = time.perf_counter()
total = 0
for i in range(1, N + 1):
    values = [rng.randint(1, 100) for _ in range(60)]
    weights = [rng.randint(1, 50) for _ in range(60)]
    total += solve_dp(values, weights, 500)
    time.sleep(0.5)  # a real solver would take this long
    print(f"[{i}/{N}] instance {i}: running total {total}", flush=True)
    if fail and i == N:
        raise RuntimeError(f"instance {i}: solver diverged (--fail was given)")
elapsed = time.perf_counter() - start

results = os.environ.get("EVOPILOT_RESULTS")
if results:
    Path(results).write_text(json.dumps({
        "objective": total,
        "runtime": {"value": elapsed, "unit": "s", "higher_is_better": False},
    }))
print(f"done: objective {total} in {elapsed:.1f}s")
