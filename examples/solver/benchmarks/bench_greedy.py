"""Greedy knapsack against the exact optimum on 16 instances: the gap is the metric.

Exits non-zero with --fail (after all instances ran), to show a failing job.
"""

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from solver import greedy, solve_dp  # noqa: E402

N = 16
rng = random.Random(7)
gaps = []
for i in range(1, N + 1):
    values = [rng.randint(1, 100) for _ in range(40)]
    weights = [rng.randint(1, 50) for _ in range(40)]
    opt = solve_dp(values, weights, 300)
    got = greedy(values, weights, 300)
    gaps.append((opt - got) / opt)
    time.sleep(0.4)
    print(f"[{i}/{N}] gap {gaps[-1]:.3%}", flush=True)

results = os.environ.get("EVOPILOT_RESULTS")
if results:
    Path(results).write_text(json.dumps({
        "mean_gap": {"value": sum(gaps) / N, "unit": "ratio", "higher_is_better": False},
        "worst_gap": max(gaps),
    }))
if "--fail" in sys.argv:
    print("failing on purpose (--fail)", file=sys.stderr)
    sys.exit(3)
