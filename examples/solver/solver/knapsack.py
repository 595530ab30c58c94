"""Two ways to fill a knapsack: exact dynamic programming and a greedy ratio heuristic."""


def solve_dp(values: list[int], weights: list[int], capacity: int) -> int:
    best = [0] * (capacity + 1)
    for v, w in zip(values, weights):
        for c in range(capacity, w - 1, -1):
            best[c] = max(best[c], best[c - w] + v)
    return best[capacity]


def greedy(values: list[int], weights: list[int], capacity: int) -> int:
    order = sorted(range(len(values)), key=lambda i: values[i] / weights[i], reverse=True)
    total = room = 0
    room = capacity
    for i in order:
        if weights[i] <= room:
            room -= weights[i]
            total += values[i]
    return total
