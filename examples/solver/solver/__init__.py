"""A toy 0/1 knapsack solver, the code under test of the example benchmarks."""

from solver.knapsack import greedy, solve_dp

__all__ = ["greedy", "solve_dp"]
