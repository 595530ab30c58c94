"""The search state of an experiment restored from its snapshots, as a resumed run restores it."""

from __future__ import annotations

from evopilot.core.evolution.experiment import load_experiment
from evopilot.core.evolution.search import Candidate, SearchState
from tests.conftest import REPO


def test_restore_before_an_island_has_a_snapshot_places_into_it_like_the_uninterrupted_state():
    exp = load_experiment(REPO / "examples" / "evolve" / "experiment.toml")  # 2 islands, declared bounds
    outcomes = [Candidate(1, 0, -0.5, (0.1, 0.4)), Candidate(2, 1, -0.3, (-0.2, 0.6)),
                Candidate(3, 0, -0.2, (0.0, 0.3))]
    whole = SearchState(exp, seed_commit=1)
    for c in outcomes:
        whole.apply(c)

    # killed after the seed: only island 0's archive (and the shared state) were saved
    first = SearchState(exp, seed_commit=1)
    changed = first.apply(outcomes[0])
    assert changed == {0}
    saved = {i: first.snapshot(i) for i in changed} | {-1: first.shared()}
    resumed = SearchState.restore(exp, 1, saved, outcomes[:1])
    for c in outcomes[1:]:
        resumed.apply(c)
    assert [resumed.snapshot(i) for i in range(2)] == [whole.snapshot(i) for i in range(2)]
    assert resumed.applied == whole.applied == 3
