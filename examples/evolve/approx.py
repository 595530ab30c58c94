"""A polynomial that should approximate sin(x) on [0, pi]: its coefficients are what evolves.

The `params` mutator perturbs the numbers between the EVOLVE-BLOCK markers; the evaluation
(benchmarks/fit.py) scores how close the polynomial comes.
"""

# EVOLVE-BLOCK-START
A = 0.5
B = 0.5
C = -0.5
D = 0.05
# EVOLVE-BLOCK-END


def approx(x: float) -> float:
    return A + B * x + C * x * x + D * x * x * x
