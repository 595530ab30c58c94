"""The MAP-Elites archive of one island: insertion, replacement, batches, sampling, QD figures,
snapshots and re-binning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evopilot.core.errors import EvopilotError
from evopilot.core.evolution.archive import Archive, freeze_bounds


def grid(maximize: bool = True, **kw) -> Archive:
    """3 x 4 cells over [0, 3) x [0, 4): cell (i, j) holds descriptors [i, i+1) x [j, j+1)."""
    return Archive([3, 4], [0.0, 0.0], [3.0, 4.0], maximize=maximize, **kw)


def same_state(a: Archive, b: Archive) -> None:
    assert np.array_equal(a.occupied, b.occupied)
    assert np.array_equal(a.commit, b.commit)
    assert np.array_equal(a.objective, b.objective, equal_nan=True)
    assert np.array_equal(a.descriptors, b.descriptors, equal_nan=True)
    assert a.num_elites == b.num_elites


def test_insertion_into_an_empty_cell():
    a = grid()
    result = a.add(7, 1.5, [1.2, 2.7])
    assert (result.status, result.cell, result.previous) == ("new", 1 * 4 + 2, None)
    assert a.occupied.sum() == 1 and a.occupied[6]
    assert (a.commit[6], a.objective[6]) == (7, 1.5)
    assert a.descriptors[6].tolist() == [1.2, 2.7]
    assert a.num_elites == 1
    assert a.commit[~a.occupied].tolist() == [-1] * 11 and np.isnan(a.objective[~a.occupied]).all()


def test_replacement_only_when_better_when_maximising():
    a = grid()
    a.add(1, 5.0, [0.5, 0.5])
    assert a.add(2, 4.0, [0.9, 0.1]) == ("not_added", 0, None)
    assert a.add(3, 5.0, [0.1, 0.9]) == ("not_added", 0, None)  # a tie keeps the elite
    assert (a.commit[0], a.objective[0], a.descriptors[0].tolist()) == (1, 5.0, [0.5, 0.5])
    assert a.add(4, 6.0, [0.2, 0.3]) == ("improved", 0, 1)
    assert (a.commit[0], a.objective[0], a.descriptors[0].tolist()) == (4, 6.0, [0.2, 0.3])
    assert a.num_elites == 1


def test_replacement_only_when_better_when_minimising():
    a = grid(maximize=False)
    a.add(1, 5.0, [2.5, 3.5])
    assert a.add(2, 6.0, [2.5, 3.5]).status == "not_added"
    assert a.add(3, 5.0, [2.5, 3.5]).status == "not_added"
    assert a.add(4, -1.0, [2.9, 3.1]) == ("improved", 11, 1)
    assert (a.commit[11], a.objective[11]) == (4, -1.0)
    assert a.best() == (4, -1.0)


@pytest.mark.parametrize("objective, descriptor", [
    (math.nan, [1.0, 1.0]), (math.inf, [1.0, 1.0]), (-math.inf, [1.0, 1.0]),
    (1.0, [math.nan, 1.0]), (1.0, [1.0, math.inf]),
])
def test_a_non_finite_candidate_is_not_added(objective, descriptor):
    a = grid()
    a.add(1, 0.0, [1.0, 1.0])
    assert a.add(2, objective, descriptor) == ("not_added", -1, None)
    batch = a.add_batch([3], [objective], [descriptor])
    assert (batch.status.tolist(), batch.cell.tolist()) == ([0], [-1])
    assert a.num_elites == 1 and a.commit[5] == 1


def test_descriptors_outside_the_range_clip_to_the_edge_cells():
    a = grid()
    assert a.cell_of([-5.0, -1e300]) == 0
    assert a.cell_of([1e300, 99.0]) == 11
    assert a.cell_of([-1.0, 2.5]) == 2
    assert a.cell_of([3.0, 4.0]) == 11  # the upper bound belongs to the last cell
    assert a.cell_of([1.0, 3.0]) == 7  # a lower edge belongs to the cell above it
    assert a.cell_of(np.array([[0.5, 0.5], [2.99, 0.0], [9.0, 1.5]])).tolist() == [0, 8, 9]
    assert a.add(1, 1.0, [7.0, -7.0]) == ("new", 8, None)
    assert a.descriptors[8].tolist() == [7.0, -7.0]  # the elite keeps its real descriptor
    with pytest.raises(ValueError):
        a.cell_of([math.nan, 0.0])


def test_a_batch_with_two_candidates_for_one_cell_keeps_the_better_and_the_first_of_equals():
    a = grid()
    result = a.add_batch([1, 2, 3, 4, 5], [1.0, 3.0, 3.0, 2.0, 9.0],
                         [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.4, 0.4], [2.5, 3.5]])
    assert [tuple(r) for r in result] == [("new", 0, None), ("improved", 0, 1), ("not_added", 0, None),
                                          ("not_added", 0, None), ("new", 11, None)]
    assert result.status.tolist() == [2, 1, 0, 0, 2]  # pyribs' codes
    assert result.previous.tolist() == [-1, 1, -1, -1, -1]
    assert (a.commit[0], a.objective[0]) == (2, 3.0)
    assert a.num_elites == 2


candidates = st.lists(
    st.tuples(st.integers(-3, 3), st.floats(-0.5, 3.5), st.floats(-0.5, 4.5), st.booleans()),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(before=candidates, batch=candidates, maximize=st.booleans())
def test_add_batch_is_adding_one_by_one_in_order(before, batch, maximize):
    """Integer objectives make ties common; a flag turns some objectives into NaN."""
    def arrays(cands, first):
        commits = np.arange(first, first + len(cands))
        objectives = np.array([math.nan if bad else float(o) for o, _, _, bad in cands])
        descriptors = np.array([[x, y] for _, x, y, _ in cands]).reshape(len(cands), 2)
        return commits, objectives, descriptors

    one, many = grid(maximize), grid(maximize)
    for archive in (one, many):  # the same archive to start from
        for c, o, d in zip(*arrays(before, 0)):
            archive.add(int(c), o, d)
    commits, objectives, descriptors = arrays(batch, 100)
    sequential = [one.add(int(c), o, d) for c, o, d in zip(commits, objectives, descriptors)]
    assert list(many.add_batch(commits, objectives, descriptors)) == sequential
    same_state(one, many)


@pytest.mark.parametrize("maximize", [True, False])
def test_add_batch_with_hundreds_of_candidates_per_cell_is_adding_one_by_one(maximize):
    rng = np.random.default_rng(11)
    n = 2000
    commits = np.arange(n)
    objectives = rng.integers(0, 300, size=n).astype(np.float64)  # many ties
    objectives[rng.random(n) < 0.05] = math.nan
    descriptors = rng.uniform(-1.0, 4.0, size=(n, 2)) * [1.0, 0.4]  # 4 cells, some far busier
    one, many = grid(maximize), grid(maximize)
    one.add(5000, 150.0, [0.5, 0.5])
    many.add(5000, 150.0, [0.5, 0.5])
    sequential = [one.add(int(c), o, d) for c, o, d in zip(commits, objectives, descriptors)]
    assert list(many.add_batch(commits, objectives, descriptors)) == sequential
    same_state(one, many)
    assert sum(r.status == "improved" for r in sequential) > 10


def test_a_late_candidate_in_a_batch_is_compared_with_the_best_far_before_it():
    # a best first, then a rising ramp below it, all in one cell: only the first is added (the
    # last one is 1,024 places after it, where a running maximum by doubling steps is exact or not)
    objectives = np.concatenate(([1000.0], np.arange(1023) * 0.5, [999.5]))
    n = len(objectives)
    a = grid()
    assert a.add_batch(np.arange(n), objectives, np.full((n, 2), 0.5)).status.tolist() == [2] + [0] * 1024
    result = a.add_batch([n, n + 1], [1000.0, 1001.0], [[0.5, 0.5], [0.5, 0.5]])
    assert list(result) == [("not_added", 0, None), ("improved", 0, 0)]


def test_sample_returns_only_elites_each_cell_equally_often():
    a = Archive([10, 10], [0.0, 0.0], [1.0, 1.0])
    rng = np.random.default_rng(3)
    cells = rng.choice(100, size=20, replace=False)
    for commit, cell in enumerate(cells.tolist()):
        i, j = divmod(cell, 10)
        # many offers per cell: sampling must follow the cells, not how often they were offered
        for k in range(1 + commit * 3):
            a.add(commit * 1000 + k, float(k), [(i + 0.5) / 10, (j + 0.5) / 10])
    elites = set(a.elites().commits.tolist())
    n = 200_000
    drawn = a.sample(np.random.default_rng(42), n)
    assert drawn.shape == (n,)
    values, counts = np.unique(drawn, return_counts=True)
    assert set(values.tolist()) == elites and len(elites) == 20
    expected = n / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 50, chi2  # 19 degrees of freedom: P(chi2 > 50) < 2e-4 for a uniform sampler
    assert np.abs(counts / expected - 1).max() < 0.05
    assert a.sample(np.random.default_rng(0), 0).shape == (0,)


def test_sample_of_an_empty_archive_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        grid().sample(np.random.default_rng(0), 1)


def test_coverage_qd_score_and_best():
    a = grid(qd_offset=-10.0)
    assert (a.coverage, a.qd_score, a.best(), a.num_elites) == (0.0, 0.0, None, 0)
    a.add(1, 2.0, [0.5, 0.5])
    a.add(2, -4.0, [1.5, 0.5])
    a.add(3, 7.0, [2.5, 3.5])
    a.add(4, 7.0, [2.5, 0.5])  # ties the best in a lower cell (8 < 11): the lower cell wins
    assert a.coverage == 4 / 12
    assert a.qd_score == (2 + 10) + (-4 + 10) + (7 + 10) + (7 + 10)
    assert a.best() == (4, 7.0)
    stats = a.stats()
    assert stats._asdict() == {"num_elites": 4, "coverage": 4 / 12, "qd_score": 52.0,
                               "best_commit": 4, "best_objective": 7.0}

    m = grid(maximize=False, qd_offset=100.0)  # minimising: offset - objective per elite
    m.add(1, 30.0, [0.5, 0.5])
    m.add(2, 10.0, [1.5, 0.5])
    assert m.qd_score == (100 - 30) + (100 - 10)
    assert m.best() == (2, 10.0)
    m.add(3, 5.0, [0.5, 0.5])  # a better elite raises the score
    assert m.qd_score == (100 - 5) + (100 - 10)


def test_snapshot_round_trip_through_json_is_exact():
    a = Archive([5, 3, 2], [-1.0, 0.0, 1e-3], [1.0, 1.0 / 3, 2.0], maximize=False, qd_offset=1.25)
    rng = np.random.default_rng(7)
    a.add_batch(np.arange(60), rng.normal(size=60) * 1e-7 + 1 / 3, rng.uniform(-1.5, 2.5, size=(60, 3)))
    snapshot = a.snapshot()
    text = json.dumps(snapshot, allow_nan=False)  # strict JSON, as a database column holds it
    b = Archive.restore(json.loads(text))
    same_state(a, b)
    assert b.snapshot() == snapshot
    assert (b.bins, b.lower.tolist(), b.upper.tolist(), b.maximize, b.qd_offset) == \
        ((5, 3, 2), [-1.0, 0.0, 1e-3], [1.0, 1.0 / 3, 2.0], False, 1.25)
    assert (b.qd_score, b.best(), b.coverage) == (a.qd_score, a.best(), a.coverage)
    # the restored archive goes on exactly as the original would
    more = (np.arange(100, 140), rng.normal(size=40) * 1e-7 + 1 / 3, rng.uniform(-1.5, 2.5, size=(40, 3)))
    assert list(a.add_batch(*more)) == list(b.add_batch(*more))
    same_state(a, b)
    assert Archive.restore(json.loads(json.dumps(grid().snapshot()))).num_elites == 0


def test_restore_refuses_two_entries_in_one_cell():
    snapshot = grid().snapshot()
    snapshot["entries"] = [[1, 1.0, [0.1, 0.1]], [2, 2.0, [0.2, 0.2]]]
    with pytest.raises(ValueError, match="one finite elite per cell"):
        Archive.restore(snapshot)


def test_rebinned_moves_elites_to_their_new_cells_and_colliding_ones_keep_the_better():
    a = grid()
    a.add(1, 1.0, [0.5, 0.5])
    a.add(2, 5.0, [1.5, 0.5])
    a.add(3, 3.0, [2.5, 3.5])
    a.add(4, 2.0, [0.5, 3.5])
    new = {1: [10.0, 10.0], 2: [11.0, 11.0], 3: [19.0, 19.0], 4: [10.5, 10.9], 99: [0.0, 0.0]}
    b = a.rebinned(new, [10.0, 10.0], [20.0, 20.0], bins=[2, 2])
    assert (b.bins, b.lower.tolist(), b.upper.tolist(), b.maximize) == ((2, 2), [10.0, 10.0], [20.0, 20.0], True)
    elites = b.elites()
    assert elites.cells.tolist() == [0, 3]
    assert elites.commits.tolist() == [2, 3]  # 1, 2 and 4 share cell 0: the best (2) stays
    assert elites.descriptors.tolist() == [[11.0, 11.0], [19.0, 19.0]]
    assert a.num_elites == 4  # the original is untouched
    assert a.rebinned({c: [float(c)] * 2 for c in (1, 2, 3, 4)}, [0.0, 0.0], [5.0, 5.0]).bins == (3, 4)
    with pytest.raises(ValueError, match="no new descriptor for commits \\[4\\]"):
        a.rebinned({1: [0, 0], 2: [0, 0], 3: [0, 0]}, [0.0, 0.0], [1.0, 1.0])


def test_freeze_bounds_covers_the_warm_up_with_a_margin():
    seen = np.array([[0.0, 5.0, -2.0], [10.0, 5.0, -1.0], [40.0, 5.0, math.nan], [2.0, 5.0, -1.5]])
    lower, upper = freeze_bounds(seen, margin=0.1)
    # the row with a NaN is ignored whole; column 1 is constant: 5 +- max(5, 1) / 2, then the margin
    assert np.allclose(lower, [-1.0, 2.5 - 0.5, -2.1]) and np.allclose(upper, [11.0, 7.5 + 0.5, -0.9])
    lower, upper = freeze_bounds([[0.0], [0.0]], margin=0.0)
    assert (lower.tolist(), upper.tolist()) == ([-0.5], [0.5])
    # every warm-up descriptor falls inside the grid, none on a clipped edge
    warm = np.random.default_rng(0).normal(size=(50, 2))
    lower, upper = freeze_bounds(warm)
    assert ((warm > lower) & (warm < upper)).all()
    with pytest.raises(EvopilotError, match="no candidate of the warm-up has finite descriptors"):
        freeze_bounds([[math.nan, 1.0]])


@pytest.mark.parametrize("bins, lower, upper, message", [
    ([], [], [], "at least one descriptor dimension"),
    ([3, 3], [0.0], [1.0, 1.0], "2 bins but 1 lower and 2 upper"),
    ([0], [0.0], [1.0], "dimension 0 has 0 bins"),
    ([4], [1.0], [1.0], "range \\[1.0, 1.0\\]"),
    ([4], [0.0], [math.inf], "not a finite range"),
    ([10_000] * 2, [0.0] * 2, [1.0] * 2, "100,000,000 cells is too many"),
])
def test_a_bad_grid_is_a_one_line_error(bins, lower, upper, message):
    with pytest.raises(EvopilotError, match=message) as info:
        Archive(bins, lower, upper)
    assert "\n" not in str(info.value)


def test_bad_shapes_are_refused():
    a = grid()
    with pytest.raises(ValueError):
        a.add(1, 1.0, [0.5])
    with pytest.raises(ValueError):
        a.add(1, 1.0, np.zeros((2, 1)))
    with pytest.raises(ValueError):
        a.add(-1, 1.0, [0.5, 0.5])
    with pytest.raises(ValueError):
        a.add_batch([1, 2], [1.0], [[0.5, 0.5], [0.5, 0.5]])
    assert a.num_elites == 0
