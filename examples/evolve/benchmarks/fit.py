"""Score approx.py against sin(x) on [0, pi]: objective = -mean squared error (higher is better).

Descriptors for the archive: the signed mean error (bias) and the worst absolute error.
"""

import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from approx import approx  # noqa: E402

N = 200
xs = [math.pi * i / (N - 1) for i in range(N)]
errors = [approx(x) - math.sin(x) for x in xs]
mse = sum(e * e for e in errors) / N
results = {
    "objective": -mse,
    "bias": sum(errors) / N,
    "max_error": max(abs(e) for e in errors),
}
print(f"[1/1] mse {mse:.6f}", flush=True)
with open(os.environ["EVOPILOT_RESULTS"], "w") as f:
    json.dump(results, f)
