"""The search state of one experiment: the islands' archives, the warm-up, the PCA of the code
embedding, and how parents and inspirations are chosen from it.

It changes only through ``apply`` (one iteration's outcome, strictly in iteration order) and is
sampled only through ``choose`` (with an rng seeded by the experiment seed and the iteration
number). So the same evaluated candidates give the same state, whatever the timing of the
evaluations, and a state rebuilt from the database equals the one saved in snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evopilot.core.evolution.archive import Archive, freeze_bounds
from evopilot.core.evolution.descriptors import PCA
from evopilot.core.evolution.experiment import Experiment


@dataclass(frozen=True, slots=True)
class Candidate:
    """An evaluated candidate: its commit row id, island, objective and raw descriptor (metric
    values, or the code embedding before the PCA projection)."""

    commit_id: int
    island: int
    objective: float
    raw: tuple[float, ...]


@dataclass(slots=True)
class Choice:
    island: int
    parent: int
    """A commit row id (the seed's when nothing is placed yet)."""
    inspirations: list[int]
    mutator: int
    """Index into the experiment's mutators."""
    seed: int
    """For the mutator."""


@dataclass
class SearchState:
    exp: Experiment
    seed_commit: int
    archives: list[Archive | None] = field(default_factory=list)
    held: list[Candidate] = field(default_factory=list)
    """Candidates waiting for the warm-up to freeze the grid's bounds."""
    candidates: list[Candidate] = field(default_factory=list)
    """Every evaluated candidate applied so far, in order (the 'random' parents, PCA refits)."""
    pca: PCA | None = None
    pca_history: list[int] = field(default_factory=list)
    """The number of placed candidates at each (re)fit."""
    bounds: tuple[list[float], list[float]] | None = None
    applied: int = 0
    """Iterations applied so far (0 .. applied-1)."""
    qd_offset: float = 0.0
    """The configured one, else the seed's objective once it is applied."""

    def __post_init__(self) -> None:
        if self.exp.descriptors.qd_offset is not None:
            self.qd_offset = self.exp.descriptors.qd_offset
        if not self.archives:
            self.archives = [None] * self.exp.islands.count
        d = self.exp.descriptors
        if d.lower and not d.embedding:
            self.bounds = (list(d.lower), list(d.upper))
            self.archives = [self._new_archive() for _ in range(self.exp.islands.count)]

    # ---- applying outcomes -----------------------------------------------------------------

    def apply(self, cand: Candidate | None) -> set[int]:
        """Apply iteration ``self.applied``'s outcome (None: skipped or failed); returns the
        islands whose archive changed."""
        changed: set[int] = set()
        number = self.applied
        self.applied += 1
        if number == 0 and cand is not None and self.exp.descriptors.qd_offset is None:
            self._set_qd_offset(cand.objective)
        if cand is not None:
            self.candidates.append(cand)
            if self.bounds is None:
                self.held.append(cand)
                if len(self.held) >= self.exp.descriptors.warmup:
                    changed |= self._freeze()
            else:
                self._place(cand)
                changed.add(cand.island)
            d = self.exp.descriptors
            if d.embedding and self.pca is not None and len(self.candidates) % d.refit_every == 0:
                changed |= self._refit()
        interval = self.exp.islands.migration_interval
        if interval and number and number % interval == 0 and self.bounds is not None:
            changed |= self._migrate()
        return changed

    def _set_qd_offset(self, offset: float) -> None:
        self.qd_offset = offset
        for a in self.archives:
            if a is not None:
                a.qd_offset = offset

    def _project(self, raws: list[tuple[float, ...]]) -> np.ndarray:
        x = np.asarray(raws, dtype=np.float64)
        return self.pca.transform(x) if self.pca is not None else x

    def _new_archive(self) -> Archive:
        lower, upper = self.bounds
        return Archive(self.exp.descriptors.bins, lower, upper, maximize=self.exp.maximize,
                       qd_offset=self.qd_offset)

    def _place(self, cand: Candidate) -> None:
        (desc,) = self._project([cand.raw])
        self.archives[cand.island].add(cand.commit_id, cand.objective, desc)

    def _freeze(self) -> set[int]:
        """The warm-up is over: fit the PCA (for embeddings), freeze the bounds, place the held."""
        d = self.exp.descriptors
        if d.embedding:
            self.pca = PCA.fit(np.asarray([c.raw for c in self.candidates]), d.embedding)
            self.pca_history.append(len(self.candidates))
        if d.lower:
            self.bounds = (list(d.lower), list(d.upper))
        else:
            lo, hi = freeze_bounds(self._project([c.raw for c in self.held]))
            self.bounds = ([float(v) for v in lo], [float(v) for v in hi])
        self.archives = [self._new_archive() for _ in range(self.exp.islands.count)]
        held, self.held = self.held, []
        for c in held:
            self._place(c)
        return set(range(self.exp.islands.count))

    def _refit(self) -> set[int]:
        """Refit the PCA on every candidate so far and re-bin each island's elites."""
        d = self.exp.descriptors
        self.pca = PCA.fit(np.asarray([c.raw for c in self.candidates]), d.embedding)
        self.pca_history.append(len(self.candidates))
        if not d.lower:
            lo, hi = freeze_bounds(self._project([c.raw for c in self.candidates]))
            self.bounds = ([float(v) for v in lo], [float(v) for v in hi])
        projected = self._project([c.raw for c in self.candidates])
        by_id = {c.commit_id: p for c, p in zip(self.candidates, projected)}
        lower, upper = self.bounds
        self.archives = [a.rebinned(by_id, lower, upper) if a is not None else self._new_archive()
                         for a in self.archives]
        return set(range(self.exp.islands.count))

    def _migrate(self) -> set[int]:
        """Each island sends its best ``migration_count`` elites to the next island (a ring)."""
        n = len(self.archives)
        if n < 2:
            return set()
        by_id = {c.commit_id: c for c in self.candidates}
        sends = []
        for i, arch in enumerate(self.archives):
            el = arch.elites()
            order = np.argsort(-el.objectives if self.exp.maximize else el.objectives, kind="stable")
            for j in order[: self.exp.islands.migration_count]:
                sends.append(((i + 1) % n, by_id[int(el.commits[j])]))
        for island, c in sends:
            (desc,) = self._project([c.raw])
            self.archives[island].add(c.commit_id, c.objective, desc)
        return {island for island, _ in sends}

    # ---- choosing parents --------------------------------------------------------------------

    def choose(self, number: int) -> Choice:
        """Island, parent, inspirations and mutator of iteration ``number`` (>= 1)."""
        exp = self.exp
        rng = np.random.default_rng([exp.seed, number])
        island = (number - 1) % exp.islands.count
        arch = self.archives[island]
        elites = arch.elites() if arch is not None and arch.num_elites else None
        sel = exp.selection
        p = np.array([sel.exploit, sel.explore, sel.random], dtype=np.float64)
        how = int(rng.choice(3, p=p / p.sum()))
        pool = [c.commit_id for c in self.candidates if c.island == island] or \
               [c.commit_id for c in self.candidates]
        if elites is None and not pool:
            parent = self.seed_commit
        elif elites is None or how == 2:
            parent = pool[int(rng.integers(len(pool)))] if pool else self.seed_commit
        elif how == 0:
            parent = int(arch.best()[0])
        else:
            parent = int(arch.sample(rng, 1)[0])
        inspirations: list[int] = []
        if sel.inspirations and elites is not None:
            others = [int(c) for c in elites.commits if int(c) != parent]
            if others:
                k = min(sel.inspirations, len(others))
                inspirations = [others[i] for i in sorted(rng.choice(len(others), k, replace=False))]
        w = np.array([m.weight for m in exp.mutators], dtype=np.float64)
        mutator = int(rng.choice(len(w), p=w / w.sum()))
        return Choice(island, parent, inspirations, mutator, int(rng.integers(2**31)))

    # ---- snapshots ---------------------------------------------------------------------------

    def shared(self) -> dict:
        """The state all islands share: iterations applied, warm-up, bounds and PCA."""
        return {
            "applied": self.applied,
            "held": [c.commit_id for c in self.held],
            "bounds": [list(b) for b in self.bounds] if self.bounds else None,
            "pca": self.pca.to_dict() if self.pca is not None else None,
            "pca_history": self.pca_history,
            "qd_offset": self.qd_offset,
        }

    def snapshot(self, island: int) -> dict:
        """What seed 000 keeps per island: feature bounds, PCA state and history, entries."""
        arch = self.archives[island]
        shared = self.shared()
        return {"bounds": shared["bounds"], "pca": shared["pca"], "pca_history": shared["pca_history"],
                "archive": arch.snapshot() if arch is not None else None}

    @classmethod
    def restore(cls, exp: Experiment, seed_commit: int, snapshots: dict[int, dict],
                candidates: list[Candidate], shared_key: int = -1) -> "SearchState":
        """The state from its snapshots (``shared_key``: the shared state's) and the evaluated
        candidates of the iterations they cover (read from the database)."""
        state = cls(exp, seed_commit)
        shared = snapshots.get(shared_key)
        if not shared:
            return state
        state.applied = shared["applied"]
        state.bounds = tuple(shared["bounds"]) if shared["bounds"] else None
        state.pca = PCA.from_dict(shared["pca"]) if shared["pca"] else None
        state.pca_history = list(shared["pca_history"])
        state.qd_offset = shared.get("qd_offset", state.qd_offset)
        state.candidates = list(candidates)
        by_id = {c.commit_id: c for c in candidates}
        state.held = [by_id[i] for i in shared["held"]]
        # an island with nothing placed yet has no snapshot: empty, once the bounds are known
        state.archives = [Archive.restore(snapshots[i]["archive"]) if snapshots.get(i, {}).get("archive")
                          else state._new_archive() if state.bounds is not None else None
                          for i in range(exp.islands.count)]
        return state
