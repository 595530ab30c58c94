"""Descriptors: the tree-sitter embedding, its cache by git blob hash, metrics, and PCA."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from evopilot.core.evolution import descriptors
from evopilot.core.evolution.descriptors import (
    PCA,
    DirectoryEmbeddingCache,
    MemoryEmbeddingCache,
    blob_sha,
    embed,
    embed_files,
    from_metrics,
)
from tests.conftest import REPO

SOLVER = b'''\
import math


def solve(points, budget=100):
    """Greedy tour: always go to the nearest unvisited point."""
    tour = [0]
    left = set(range(1, len(points)))
    while left:
        here = points[tour[-1]]
        best = min(left, key=lambda i: math.dist(here, points[i]))
        tour.append(best)
        left.remove(best)
    return tour


def length(points, tour):
    return sum(math.dist(points[a], points[b]) for a, b in zip(tour, tour[1:] + tour[:1]))
'''

# The same program after a typical mutation: one loop changed, a constant and a name changed.
SOLVER_MUTATED = SOLVER.replace(b"budget=100", b"budget=250").replace(b"here", b"current").replace(
    b"        tour.append(best)\n", b"        if best not in tour:\n            tour.append(best)\n")

OTHER = b'''\
class Config:
    def __init__(self, path):
        self.path = path
        self.values = {}

    def load(self):
        with open(self.path) as f:
            for line in f:
                key, _, value = line.partition("=")
                self.values[key.strip()] = value.strip()
        return self.values


try:
    import tomllib
except ImportError:
    tomllib = None
'''


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embedding_is_a_unit_float32_vector_of_the_asked_length():
    for dim in (8, 64, 100):
        v = embed(SOLVER, dim)
        assert v.shape == (dim,) and v.dtype == np.float32
        assert abs(float(np.linalg.norm(v)) - 1) < 1e-6
    assert np.array_equal(embed(SOLVER), embed(SOLVER))
    assert not np.array_equal(embed(SOLVER), embed(SOLVER_MUTATED))
    with pytest.raises(ValueError):
        embed(SOLVER, 0)


def test_embedding_is_the_same_in_every_process():
    """Python's hash() is salted per process: two interpreters with different seeds must agree
    with each other and with this one, bit for bit."""
    code = ("import sys; from evopilot.core.evolution.descriptors import embed, embed_files\n"
            "src = sys.stdin.buffer.read()\n"
            "both = embed_files({'a.py': src, 'b.py': b'x = 1'}, 16)\n"
            "print(embed(src, 32).tobytes().hex(), both.tobytes().hex())")
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", code], input=SOLVER, capture_output=True,
                             cwd=REPO, env=env, check=True)
        outputs.append(run.stdout.decode().split())
    here = [embed(SOLVER, 32).tobytes().hex(), embed_files({"a.py": SOLVER, "b.py": b"x = 1"}, 16).tobytes().hex()]
    assert outputs[0] == outputs[1] == here


def test_similar_code_is_closer_than_different_code():
    solver, mutated, other = embed(SOLVER), embed(SOLVER_MUTATED), embed(OTHER)
    assert cos(solver, mutated) > 0.8
    assert cos(solver, mutated) > cos(solver, other) + 0.3
    assert cos(mutated, other) < cos(solver, mutated) - 0.3
    # renaming every identifier moves the vector less than writing other code does
    renamed = SOLVER.replace(b"points", b"pts").replace(b"tour", b"route").replace(b"left", b"todo")
    assert cos(solver, embed(renamed)) > cos(solver, other)


def test_a_file_with_syntax_errors_still_embeds_near_its_fixed_version():
    broken = SOLVER.replace(b"def length(points, tour):", b"def length(points, tour:")
    v = embed(broken)
    assert np.isfinite(v).all() and abs(float(np.linalg.norm(v)) - 1) < 1e-6
    assert not np.array_equal(v, embed(SOLVER))  # the ERROR node is counted
    assert cos(v, embed(SOLVER)) > cos(v, embed(OTHER)) + 0.3
    garbage = embed(b"\xff\xfe)))(((:::\x00 def def class")
    assert np.isfinite(garbage).all() and abs(float(np.linalg.norm(garbage)) - 1) < 1e-6
    assert np.isfinite(embed(b"")).all()


def test_blob_sha_is_git_s_blob_hash(tmp_path):
    path = tmp_path / "solver.py"
    path.write_bytes(SOLVER)
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert blob_sha(SOLVER) == git.stdout.strip()


def test_embed_files_sums_unit_embeddings_and_normalises():
    a, b = embed(SOLVER, 32), embed(OTHER, 32)
    both = embed_files({"solver.py": SOLVER, "config.py": OTHER}, 32)
    expected = (a.astype(np.float64) + b) / np.linalg.norm(a.astype(np.float64) + b)
    assert both.dtype == np.float32 and np.allclose(both, expected, atol=1e-6)
    assert np.array_equal(both, embed_files({"config.py": OTHER, "solver.py": SOLVER}, 32))
    assert np.array_equal(embed_files({}, 8), np.zeros(8, dtype=np.float32))


@pytest.mark.parametrize("kind", ["memory", "directory"])
def test_the_cache_is_keyed_by_blob_hash_and_dimension(kind, tmp_path, monkeypatch):
    def make():
        return MemoryEmbeddingCache() if kind == "memory" else DirectoryEmbeddingCache(tmp_path / "cache")

    parsed: list[bytes] = []
    real_embed = descriptors.embed
    monkeypatch.setattr(descriptors, "embed", lambda source, dim: parsed.append(source) or real_embed(source, dim))
    cache = make()
    first = embed_files({"solver.py": SOLVER, "config.py": OTHER}, 16, cache)
    assert sorted(parsed) == sorted([SOLVER, OTHER])
    assert np.array_equal(cache.get(blob_sha(SOLVER), 16), real_embed(SOLVER, 16))
    parsed.clear()
    # a candidate that changed only one file re-parses only that file
    again = embed_files({"solver.py": SOLVER_MUTATED, "config.py": OTHER}, 16, cache)
    assert parsed == [SOLVER_MUTATED]
    parsed.clear()
    cache = make() if kind == "directory" else cache  # the directory outlives the process's objects
    assert np.array_equal(embed_files({"solver.py": SOLVER, "config.py": OTHER}, 16, cache), first)
    assert np.array_equal(embed_files({"solver.py": SOLVER_MUTATED, "config.py": OTHER}, 16, cache), again)
    assert parsed == []
    assert cache.get(blob_sha(SOLVER), 32) is None  # another dimension is another vector
    embed_files({"solver.py": SOLVER}, 32, cache)
    assert parsed == [SOLVER]


def test_a_hit_is_the_stored_vector_whatever_the_source_would_give():
    cache = MemoryEmbeddingCache()
    stored = np.zeros(4, dtype=np.float32)
    stored[2] = 3.0
    cache.put(blob_sha(SOLVER), stored)
    assert embed_files({"solver.py": SOLVER}, 4, cache).tolist() == [0.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError):  # a cached vector cannot be changed through a hit
        cache.get(blob_sha(SOLVER), 4)[0] = 1.0


def test_a_damaged_directory_cache_entry_is_a_miss(tmp_path):
    cache = DirectoryEmbeddingCache(tmp_path)
    sha = blob_sha(SOLVER)
    cache.put(sha, embed(SOLVER, 16))
    [path] = (tmp_path).rglob(f"{sha}.npy")
    path.write_bytes(b"not numpy")
    assert cache.get(sha, 16) is None
    assert np.array_equal(embed_files({"s.py": SOLVER}, 16, cache), embed(SOLVER, 16))
    assert np.array_equal(cache.get(sha, 16), embed(SOLVER, 16))  # repaired by the miss
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_from_metrics_marks_missing_or_non_numeric_metrics_nan():
    d = from_metrics({"loss": 0.25, "size": 12, "ok": True, "name": "x"}, ["size", "loss", "ok", "name", "absent"])
    assert d[:2].tolist() == [12.0, 0.25] and np.isnan(d[2:]).all()


def data(rng: np.random.Generator, n: int = 200) -> np.ndarray:
    """Points near a plane in 6-D: two strong directions, then small noise."""
    basis = np.array([[3.0, 1, 0, 0, -1, 0], [0, -2, 1, 0, 0, 0.5]])
    return rng.normal(size=(n, 2)) * [5.0, 2.0] @ basis + rng.normal(size=(n, 6)) * 0.1 + 7.0


def test_pca_projects_onto_the_directions_of_largest_variance():
    x = data(np.random.default_rng(0))
    pca = PCA.fit(x, 2)
    assert pca.k == 2 and pca.components.shape == (2, 6)
    assert np.allclose(pca.components @ pca.components.T, np.eye(2))
    y = pca.transform(x)
    assert y.shape == (200, 2) and np.allclose(y.mean(axis=0), 0)
    assert np.allclose(y.var(axis=0, ddof=1), pca.explained_variance)
    assert pca.explained_variance[0] > pca.explained_variance[1] > 10 * 0.1**2
    # two components carry nearly all the variance of the data
    assert pca.explained_variance.sum() / x.var(axis=0, ddof=1).sum() > 0.99
    assert pca.transform(x[0]).shape == (2,) and np.allclose(pca.transform(x[0]), y[0])
    with pytest.raises(ValueError):
        PCA.fit(x, 7)
    with pytest.raises(ValueError):
        PCA.fit(x[:1], 2)
    assert PCA.fit(x[:1], 1).explained_variance.tolist() == [0.0]  # a warm-up of one candidate


def test_pca_round_trips_through_json_exactly():
    x = data(np.random.default_rng(1))
    pca = PCA.fit(x, 3)
    back = PCA.from_dict(json.loads(json.dumps(pca.to_dict(), allow_nan=False)))
    for name in ("mean", "components", "explained_variance"):
        assert np.array_equal(getattr(back, name), getattr(pca, name))
    assert np.array_equal(back.transform(x), pca.transform(x))


def test_pca_signs_do_not_flip_between_refits():
    """The same spread of data must give the same components, whichever signs the SVD picks:
    negated data has the same principal axes; so do the rows in another order."""
    x = data(np.random.default_rng(2))
    pca = PCA.fit(x, 3)
    loadings = pca.components[np.arange(3), np.argmax(np.abs(pca.components), axis=1)]
    assert (loadings > 0).all()
    for refit in (PCA.fit(-x, 3), PCA.fit(x[::-1], 3), PCA.fit(x[np.random.default_rng(3).permutation(200)], 3)):
        assert np.allclose(refit.components, pca.components, atol=1e-9)
        assert np.allclose(refit.explained_variance, pca.explained_variance)
    # a refit on a little more data stays close: the archive is not mirrored
    more = np.vstack([x, data(np.random.default_rng(4), 20)])
    assert np.allclose(PCA.fit(more, 2).components, pca.components[:2], atol=0.05)


def test_embeddings_projected_by_pca_place_similar_code_together():
    extra = b"\n\ndef helper(x):\n    return [v * 2 for v in x if v]\n"
    solvers = [SOLVER, SOLVER_MUTATED, SOLVER.replace(b"points", b"pts"), SOLVER + extra]
    others = [OTHER, OTHER.replace(b"values", b"table"), OTHER + extra,
              OTHER.replace(b"    def load(self):", b"    def load(self, strict=False):")]
    y = PCA.fit(np.array([embed(s) for s in solvers + others]), 2).transform(
        np.array([embed(s) for s in solvers + others]))
    within = max(math.dist(y[i], y[j]) for group in (range(4), range(4, 8)) for i in group for j in group)
    across = min(math.dist(y[i], y[j]) for i in range(4) for j in range(4, 8))
    assert within < across
