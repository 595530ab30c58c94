"""Benchmark of the evolution archive and descriptors (core.evolution), not a test.

Archive: the same candidates (commit, objective, 2-D descriptor; 1 in 6 outside the range)
are added to evopilot's `Archive` and to pyribs' `GridArchive` (package `ribs`, bench-only:
`.venv/bin/pip install ribs`) over the same grid (100 x 100, 10 x 10, 1 x 1), the commit
stored as pyribs' 1-D solution. Timed: 20,000 adds one at a time (`add` / `add_single`);
100,000 adds in batches of 1,000 (`add_batch` / `add`); first batches of 1,000 into empty
archives (where every candidate contends); sampling of the filled archive (`sample` /
`sample_elites`), 1 and 1,000 at a time. Both archives must end with the same elite in every
cell, and one-at-a-time adds must report the same statuses. Target: no slower than pyribs.
Times are CPU time of the process, runs of the two alternated; figures are candidates (or
sample calls) per second.

Descriptors: `embed` of a 5,000-line Python file (the first 5,000 lines of the standard
library's _pydecimal.py), a cached `embed_files`, and a PCA fit and transform of 2,000 x 64.

Run: .venv/bin/python bench/archive.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evopilot.core.evolution.archive import Archive  # noqa: E402
from evopilot.core.evolution.descriptors import (  # noqa: E402
    PCA,
    MemoryEmbeddingCache,
    _features,
    embed,
    embed_files,
)

try:
    from ribs.archives import GridArchive
except ImportError:
    sys.exit("bench/archive.py needs pyribs: .venv/bin/pip install ribs")

LOWER, UPPER = (-1.0, -1.0), (1.0, 1.0)
# 10,000 cells; 100, where a batch puts ~10 in each cell; 1, where all of a batch contend
GRIDS = ((100, 100), (10, 10), (1, 1))


def runs(fn, repeat: int, clock=time.process_time) -> list[float]:
    """Seconds per run, by default CPU seconds of the process: on a machine shared with other
    test suites the time spent waiting for a CPU is left out (the archive runs on one thread)."""
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return times


def paired(mine, pyribs, repeat: int) -> tuple[list[float], list[float]]:
    """Runs of the two alternated, so that a change of load hits both alike."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        a += runs(mine, 1)
        b += runs(pyribs, 1)
    return a, b


def rate(times: list[float], count: int) -> str:
    return f"best {count / min(times):>12,.0f}/s  median {count / statistics.median(times):>12,.0f}/s"


def ours(bins: tuple[int, int]) -> Archive:
    return Archive(bins, LOWER, UPPER)


def theirs(bins: tuple[int, int]) -> GridArchive:
    return GridArchive(solution_dim=1, dims=bins, ranges=list(zip(LOWER, UPPER)), seed=0)


def same_elites(a: Archive, g: GridArchive) -> None:
    data = g.data()
    assert len(data["index"]) == a.num_elites, (len(data["index"]), a.num_elites)
    order = np.argsort(data["index"])
    elites = a.elites()
    assert np.array_equal(data["index"][order], elites.cells)
    assert np.array_equal(data["solution"][order, 0].astype(np.int64), elites.commits)
    assert np.array_equal(data["objective"][order], elites.objectives)


def compare(line: str, mine, pyribs, repeat: int, count: int) -> None:
    a, b = paired(mine, pyribs, repeat)
    print(f"  {line:<32} evopilot {rate(a, count)}")
    print(f"  {'':<32} pyribs   {rate(b, count)}   ratio x{min(b) / min(a):.1f} (best), "
          f"x{statistics.median(b) / statistics.median(a):.1f} (median)")


def bench_archive(bins: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    commits = np.arange(n)
    objectives = rng.normal(size=n)
    descriptors = rng.uniform(-1.2, 1.2, size=(n, 2))
    solutions = commits[:, None].astype(np.float64)

    single = 20_000

    def one_by_one_ours() -> list:
        a = ours(bins)
        return [a.add(int(commits[i]), objectives[i], descriptors[i]) for i in range(single)]

    def one_by_one_theirs() -> list:
        g = theirs(bins)
        return [g.add_single(solutions[i], objectives[i], descriptors[i]) for i in range(single)]

    a, g = ours(bins), theirs(bins)
    statuses = [a.add(int(commits[i]), objectives[i], descriptors[i]).status for i in range(single)]
    codes = [int(g.add_single(solutions[i], objectives[i], descriptors[i])["status"]) for i in range(single)]
    assert [("not_added", "improved", "new").index(s) for s in statuses] == codes
    same_elites(a, g)

    def batches_ours() -> Archive:
        a = ours(bins)
        for start in range(0, n, 1000):
            batch = slice(start, start + 1000)
            a.add_batch(commits[batch], objectives[batch], descriptors[batch])
        return a

    def batches_theirs() -> GridArchive:
        g = theirs(bins)
        for start in range(0, n, 1000):
            batch = slice(start, start + 1000)
            g.add(solutions[batch], objectives[batch], descriptors[batch])
        return g

    a, g = batches_ours(), batches_theirs()
    same_elites(a, g)
    print(f"archive {bins[0]} x {bins[1]}: after {n:,} adds {a.num_elites:,} elites "
          f"(coverage {a.coverage:.3f}), identical in both archives")

    compare(f"add, one at a time ({single:,})", one_by_one_ours, one_by_one_theirs, 5, single)
    compare(f"add, batches of 1,000 ({n:,})", batches_ours, batches_theirs, 9, n)

    def first_batches(make, add) -> list[float]:
        """CPU time of 200 first batches, each of 1,000 into a new empty archive (where every
        candidate contends), the archives' construction left out."""
        total = 0.0
        for _ in range(200):
            archive = make(bins)
            t = time.process_time()
            add(archive, slice(0, 1000))
            total += time.process_time() - t
        return [total]

    a_first, b_first = [], []
    for _ in range(5):
        a_first += first_batches(ours, lambda a, s: a.add_batch(commits[s], objectives[s], descriptors[s]))
        b_first += first_batches(theirs, lambda g, s: g.add(solutions[s], objectives[s], descriptors[s]))
    print(f"  {'add, first batch, empty archive':<32} evopilot {rate(a_first, 200 * 1000)}")
    print(f"  {'':<32} pyribs   {rate(b_first, 200 * 1000)}   ratio x{min(b_first) / min(a_first):.1f} (best), "
          f"x{statistics.median(b_first) / statistics.median(a_first):.1f} (median)")

    sample_rng = np.random.default_rng(1)
    for size, calls in ((1, 20_000), (1000, 2_000)):
        def sample_ours() -> None:
            for _ in range(calls):
                a.sample(sample_rng, size)

        def sample_theirs() -> None:
            for _ in range(calls):
                g.sample_elites(size)

        compare(f"sample {size:,}, {calls:,} calls", sample_ours, sample_theirs, 5, calls)


def bench_descriptors() -> None:
    path = Path(os.__file__).parent / "_pydecimal.py"
    source = b"".join(path.read_bytes().splitlines(keepends=True)[:5000])
    nodes = len(_features(source)[0])
    print(f"embed: {path.name}, first 5,000 lines ({len(source):,} bytes, {nodes:,} nodes); wall time")
    ms = [t * 1000 for t in runs(lambda: embed(source, 64), 30, time.perf_counter)]
    print(f"  embed(dim=64)              best {min(ms):6.1f} ms  median {statistics.median(ms):6.1f} ms")
    cache = MemoryEmbeddingCache()
    embed_files({"a.py": source}, 64, cache)
    us = [t * 1e6 for t in runs(lambda: embed_files({"a.py": source}, 64, cache), 200, time.perf_counter)]
    print(f"  embed_files, cache hit     best {min(us):6.1f} us  median {statistics.median(us):6.1f} us  "
          f"(hashing the blob)")
    x = np.random.default_rng(2).normal(size=(2000, 64)).astype(np.float32)
    ms = [t * 1000 for t in runs(lambda: PCA.fit(x, 2), 20, time.perf_counter)]
    print(f"  PCA.fit 2,000 x 64, k=2    best {min(ms):6.2f} ms  median {statistics.median(ms):6.2f} ms")
    pca = PCA.fit(x, 2)
    ms = [t * 1000 for t in runs(lambda: pca.transform(x), 20, time.perf_counter)]
    print(f"  PCA.transform 2,000 x 64   best {min(ms):6.2f} ms  median {statistics.median(ms):6.2f} ms")


def main() -> None:
    import ribs

    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"numpy {np.__version__}, ribs {ribs.__version__}, Python {sys.version.split()[0]}")
    for bins in GRIDS:
        bench_archive(bins)
    bench_descriptors()


if __name__ == "__main__":
    main()
