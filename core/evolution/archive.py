"""A MAP-Elites grid archive of one island: the best candidate (a commit) per descriptor cell.

Pure numpy, in the layout of pyribs' ``GridArchive``: parallel arrays indexed by cell, holding
each elite's objective, descriptor and commit (the caller's index of the candidate), plus an
occupancy mask. A candidate enters an empty cell, or replaces the elite of its cell when its
objective is strictly better (greater when maximising, smaller when minimising); a tie keeps
the elite already there.

Cells: ``bins[i]`` equal intervals over ``[lower[i], upper[i]]`` per descriptor dimension,
flattened in C order (as ``numpy.ravel_multi_index``). A value on an interval's lower edge
belongs to that interval; values outside the range go to the edge cells. A candidate with a
non-finite objective or descriptor (NaN, ±inf: a failed or broken evaluation) is never added,
which also keeps snapshots plain JSON.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from evopilot.core.errors import EvopilotError

# Cells are dense arrays: a grid past this many cells is a mistake in the declared bins.
MAX_CELLS = 10_000_000

_NOT_ADDED, _IMPROVED, _NEW = 0, 1, 2  # pyribs' status codes


class AddStatus(enum.StrEnum):
    NOT_ADDED = "not_added"
    IMPROVED = "improved"
    NEW = "new"


_STATUS_OF_CODE = (AddStatus.NOT_ADDED, AddStatus.IMPROVED, AddStatus.NEW)


class AddResult(NamedTuple):
    """What one add did. ``cell`` is -1 for a non-finite candidate (it has no cell);
    ``previous`` is the commit it replaced, only when ``status`` is "improved"."""

    status: AddStatus
    cell: int
    previous: int | None


class BatchAddResult(NamedTuple):
    """What :meth:`Archive.add_batch` did, as arrays: ``status`` in pyribs' codes (0 not added,
    1 improved, 2 new), ``cell`` (-1: non-finite), ``previous`` (-1: nothing replaced).
    Iterating yields the :class:`AddResult` of each candidate, in order."""

    status: np.ndarray
    cell: np.ndarray
    previous: np.ndarray

    def __iter__(self) -> Iterator[AddResult]:  # type: ignore[override]
        for status, cell, previous in zip(self.status.tolist(), self.cell.tolist(), self.previous.tolist()):
            yield AddResult(_STATUS_OF_CODE[status], cell, previous if status == _IMPROVED else None)

    def __len__(self) -> int:
        return len(self.status)


class Elites(NamedTuple):
    """The occupied cells in ascending order, with their elites."""

    cells: np.ndarray
    commits: np.ndarray
    objectives: np.ndarray
    descriptors: np.ndarray


class ArchiveStats(NamedTuple):
    """The figures to record over time; ``best_*`` are None while the archive is empty."""

    num_elites: int
    coverage: float
    qd_score: float
    best_commit: int | None
    best_objective: float | None


class Archive:
    """One island's MAP-Elites grid.

    ``objective`` (float64, NaN where empty), ``descriptors`` (cells x dims, NaN where empty),
    ``commit`` (int64, -1 where empty) and ``occupied`` (bool) are indexed by cell; read them,
    never write them. Commits are non-negative integers.

    QD score, as pyribs: the sum over elites of ``objective - qd_offset`` when maximising, and
    of ``qd_offset - objective`` when minimising (the objective negated, so that a better
    archive scores higher). Choose ``qd_offset`` no better than any objective (a lower bound
    when maximising, an upper bound on the loss when minimising) so that every elite adds a
    non-negative amount and filling a cell never lowers the score.
    """

    def __init__(self, bins: Sequence[int], lower: Sequence[float], upper: Sequence[float],
                 maximize: bool = True, qd_offset: float = 0.0) -> None:
        bins_list = [int(b) for b in bins]
        lower_list = [float(x) for x in lower]
        upper_list = [float(x) for x in upper]
        if not bins_list:
            raise EvopilotError("archive grid: at least one descriptor dimension is needed")
        if not len(bins_list) == len(lower_list) == len(upper_list):
            raise EvopilotError(f"archive grid: {len(bins_list)} bins but {len(lower_list)} lower and "
                                f"{len(upper_list)} upper bounds")
        for i, (b, lo, hi) in enumerate(zip(bins_list, lower_list, upper_list)):
            if b < 1:
                raise EvopilotError(f"archive grid: dimension {i} has {b} bins (at least 1)")
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise EvopilotError(f"archive grid: dimension {i} range [{lo}, {hi}] is not a finite "
                                    f"range with lower < upper")
        cells = math.prod(bins_list)
        if cells > MAX_CELLS:
            raise EvopilotError(f"archive grid: {cells:,} cells is too many (at most {MAX_CELLS:,}); "
                                f"use fewer bins")
        if not math.isfinite(qd_offset):
            raise EvopilotError(f"archive qd_offset must be finite, not {qd_offset}")
        self.bins = tuple(bins_list)
        self.lower = np.array(lower_list)
        self.upper = np.array(upper_list)
        self.maximize = bool(maximize)
        self.qd_offset = float(qd_offset)
        self.cells = cells
        self.dims = len(bins_list)
        self.objective = np.full(cells, np.nan)
        self.descriptors = np.full((cells, self.dims), np.nan)
        self.commit = np.full(cells, -1, dtype=np.int64)
        self.occupied = np.zeros(cells, dtype=bool)
        self._num_elites = 0
        self._occupied_cells: np.ndarray | None = None  # cache for sample(); reset on a new cell
        self._sign = 1.0 if self.maximize else -1.0
        # (bins, lower, width) per dimension, as plain numbers: a single add computes its cell in
        # Python floats (cheaper than numpy calls for a few values), a batch column by column;
        # both compute bins * (x - lower) / width, so they place a value identically.
        self._grid = list(zip(bins_list, lower_list, (hi - lo for lo, hi in zip(lower_list, upper_list))))

    # -- placement --------------------------------------------------------------------------

    def cell_of(self, descriptor: ArrayLike) -> int | np.ndarray:
        """The cell of one descriptor (shape (dims,)) as an int, or of a batch (n, dims) as an
        array. Values outside the range clip to the edge cells; non-finite values raise."""
        d = np.asarray(descriptor, dtype=np.float64)
        if d.ndim == 1:
            return int(self._cells(self._batch_shape(d[None, :]))[0])
        return self._cells(self._batch_shape(d))

    def _batch_shape(self, d: np.ndarray) -> np.ndarray:
        if d.ndim != 2 or d.shape[1] != self.dims:
            raise ValueError(f"descriptors of shape {d.shape}, expected (n, {self.dims})")
        if not np.isfinite(d).all():
            raise ValueError("descriptors must be finite")
        return d

    def _cells(self, d: np.ndarray) -> np.ndarray:
        # Column by column with scalars: numpy broadcasting a row of `dims` values costs several
        # times more per element, and this is a large share of add_batch.
        cells = np.zeros(len(d), dtype=np.int64)
        with np.errstate(over="ignore"):  # a huge value overflows to inf: the edge cell all the same
            for i, (b, lo, width) in enumerate(self._grid):
                t = d[:, i] - lo
                t *= b
                t /= width
                np.maximum(t, 0, out=t)
                np.minimum(t, b - 1, out=t)
                cells *= b
                cells += t.astype(np.int64)
        return cells

    def _cell_single(self, d: list[float]) -> int:
        cell = 0
        for x, (b, lo, width) in zip(d, self._grid):
            t = b * (x - lo) / width
            cell = cell * b + (0 if t < 0 else b - 1 if t >= b - 1 else int(t))
        return cell

    # -- insertion --------------------------------------------------------------------------

    def add(self, commit: int, objective: float, descriptor: ArrayLike) -> AddResult:
        """Offer one candidate to the archive."""
        if isinstance(descriptor, np.ndarray):
            d = descriptor.tolist() if descriptor.ndim == 1 else []
        else:
            d = [float(x) for x in descriptor]
        if len(d) != self.dims:
            raise ValueError(f"descriptor {descriptor!r}: expected {self.dims} numbers")
        if commit < 0:
            raise ValueError(f"commit must be a non-negative index, not {commit}")
        objective = float(objective)
        if not (math.isfinite(objective) and all(map(math.isfinite, d))):
            return AddResult(AddStatus.NOT_ADDED, -1, None)
        cell = self._cell_single(d)
        if not self.occupied[cell]:
            self._num_elites += 1
            self._occupied_cells = None
            status, previous = AddStatus.NEW, None
        elif objective > self.objective[cell] if self.maximize else objective < self.objective[cell]:
            status, previous = AddStatus.IMPROVED, int(self.commit[cell])
        else:
            return AddResult(AddStatus.NOT_ADDED, cell, None)
        self.objective[cell] = objective
        self.descriptors[cell] = d
        self.commit[cell] = commit
        self.occupied[cell] = True
        return AddResult(status, cell, previous)

    def add_batch(self, commits: ArrayLike, objectives: ArrayLike, descriptors: ArrayLike) -> BatchAddResult:
        """Offer candidates as if :meth:`add` were called on each in order, vectorised.

        Statuses are those of the sequential adds: two candidates that reach the same empty cell
        are "new" then "improved" (or "not_added"), and the second's ``previous`` is the first.
        (pyribs instead rates every candidate of a batch against the archive before the batch;
        the archive that results is the same: per cell the best, the earliest among equals.)
        """
        commits = np.asarray(commits, dtype=np.int64)
        objectives = np.asarray(objectives, dtype=np.float64)
        descriptors = np.asarray(descriptors, dtype=np.float64)
        n = len(commits)
        if commits.shape != (n,) or objectives.shape != (n,) or descriptors.shape != (n, self.dims):
            raise ValueError(f"add_batch: commits {commits.shape}, objectives {objectives.shape} and "
                             f"descriptors {descriptors.shape} do not match (n,), (n,), (n, {self.dims})")
        if n and commits.min() < 0:
            raise ValueError("commits must be non-negative indices")
        status = np.zeros(n, dtype=np.int8)
        cell = np.full(n, -1, dtype=np.int64)
        previous = np.full(n, -1, dtype=np.int64)
        with np.errstate(all="ignore"):  # a finite sum means all finite; else look closer
            all_finite = np.isfinite(objectives.sum() + descriptors.sum())
        if all_finite:
            valid = np.arange(n)
        else:
            valid = np.flatnonzero(np.isfinite(objectives) & np.isfinite(descriptors).all(axis=1))
        if valid.size == 0:
            return BatchAddResult(status, cell, previous)
        new_cells = self._cells(descriptors[valid] if valid.size < n else descriptors)
        cell[valid] = new_cells

        # Candidates grouped by cell, in order within a cell: one sort of cell * n + position
        # (np.sort is several times faster than a stable argsort).
        grouped = np.sort(new_cells * valid.size + np.arange(valid.size))
        order, sorted_cells = grouped % valid.size, grouped // valid.size
        rows = valid[order]
        starts = np.empty(valid.size, dtype=bool)
        starts[0] = True
        np.not_equal(sorted_cells[1:], sorted_cells[:-1], out=starts[1:])
        group = np.cumsum(starts) - 1
        group_cells = sorted_cells[np.flatnonzero(starts)]
        held = self.occupied[group_cells]

        # Only candidates that beat their cell's elite from before the batch can enter (in an
        # empty cell, all): in a filling archive, few. Among them, one is accepted when it also
        # beats every one before it in its cell: a running maximum within groups, by doubling.
        scores = self._sign * objectives[rows]
        bar = np.where(held, self._sign * self.objective[group_cells], -np.inf)
        contenders = np.flatnonzero(scores > bar[group])
        size = contenders.size
        if not size:  # (so every cell was held: nothing new either)
            return BatchAddResult(status, cell, previous)
        c_group = group[contenders]
        c_scores = scores[contenders]
        c_starts = np.empty(size, dtype=bool)
        c_starts[:1] = True
        np.not_equal(c_group[1:], c_group[:-1], out=c_starts[1:])
        c_first = np.flatnonzero(c_starts)
        c_first_of = c_first[np.cumsum(c_starts) - 1]
        rank = np.arange(size) - c_first_of  # place among its cell's contenders
        running = c_scores.copy()
        deep = np.flatnonzero(rank)
        step = 1
        while deep.size:  # after steps 1..s, running[i] is the best of the 2s up to i
            running[deep] = np.maximum(running[deep], running[deep - step])
            step *= 2
            deep = deep[rank[deep] >= step]
        accepted = c_starts.copy()  # the first contender of a cell has only the elite to beat
        accepted[1:] |= c_scores[1:] > running[:-1]

        last_accepted = np.maximum.accumulate(np.where(accepted, np.arange(size), -1))
        before = np.empty(size, dtype=np.int64)  # the last accepted one before each contender
        before[:1] = -1
        before[1:] = last_accepted[:-1]
        replaces_batch = before >= c_first_of  # else it meets the elite from before the batch
        improved = accepted & (replaces_batch | held[c_group])
        c_rows = rows[contenders]
        status[c_rows[accepted]] = _NEW
        status[c_rows[improved]] = _IMPROVED
        c_cells = sorted_cells[contenders]
        previous[c_rows[improved]] = np.where(replaces_batch, commits[c_rows[before]],
                                              self.commit[c_cells])[improved]

        final = last_accepted[np.append(c_first[1:], size) - 1]  # per cell, its last accepted
        final_cells = c_cells[final]
        final_rows = c_rows[final]
        self.objective[final_cells] = objectives[final_rows]
        self.descriptors[final_cells] = descriptors[final_rows]
        self.commit[final_cells] = commits[final_rows]
        self.occupied[final_cells] = True
        new_count = int(np.count_nonzero(~held))  # the first of a group in an empty cell is new
        if new_count:
            self._num_elites += new_count
            self._occupied_cells = None
        return BatchAddResult(status, cell, previous)

    # -- reading ----------------------------------------------------------------------------

    @property
    def num_elites(self) -> int:
        return self._num_elites

    @property
    def coverage(self) -> float:
        """The fraction of cells occupied."""
        return self._num_elites / self.cells

    @property
    def qd_score(self) -> float:
        """See the class docstring for the convention."""
        objectives = self.objective[self.occupied]
        return float(self._sign * (objectives.sum() - objectives.size * self.qd_offset))

    def best(self) -> tuple[int, float] | None:
        """(commit, objective) of the best elite (the lowest cell among equals), None if empty."""
        if not self._num_elites:
            return None
        cells = self._occupied()
        cell = cells[np.argmax(self._sign * self.objective[cells])]
        return int(self.commit[cell]), float(self.objective[cell])

    def stats(self) -> ArchiveStats:
        best = self.best()
        return ArchiveStats(self._num_elites, self.coverage, self.qd_score,
                            best[0] if best else None, best[1] if best else None)

    def elites(self) -> Elites:
        cells = self._occupied()
        return Elites(cells.copy(), self.commit[cells], self.objective[cells], self.descriptors[cells])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` commits drawn with replacement, each occupied cell equally likely."""
        if not self._num_elites:
            raise ValueError("cannot sample an empty archive")
        cells = self._occupied()
        return self.commit[cells[rng.integers(0, cells.size, size=n)]]

    def _occupied(self) -> np.ndarray:
        if self._occupied_cells is None:
            self._occupied_cells = np.flatnonzero(self.occupied)
        return self._occupied_cells

    # -- persistence and re-binning ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable copy: the grid, and the elites in cell order as
        ``[commit, objective, [descriptor...]]``. JSON keeps floats exactly."""
        elites = self.elites()
        entries = [[c, o, d] for c, o, d in zip(elites.commits.tolist(), elites.objectives.tolist(),
                                                elites.descriptors.tolist())]
        return {"bins": list(self.bins), "lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "maximize": self.maximize, "qd_offset": self.qd_offset, "entries": entries}

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any]) -> Archive:
        """The archive :meth:`snapshot` copied; raises ValueError on an inconsistent snapshot."""
        archive = cls(snapshot["bins"], snapshot["lower"], snapshot["upper"], snapshot["maximize"],
                      snapshot["qd_offset"])
        entries = snapshot["entries"]
        descriptors = np.array([e[2] for e in entries], dtype=np.float64).reshape(len(entries), archive.dims)
        result = archive.add_batch([e[0] for e in entries], [e[1] for e in entries], descriptors)
        if not (result.status == _NEW).all():
            raise ValueError("archive snapshot: entries are not one finite elite per cell")
        return archive

    def rebinned(self, descriptors_by_commit: Mapping[int, ArrayLike], lower: Sequence[float],
                 upper: Sequence[float], bins: Sequence[int] | None = None) -> Archive:
        """A new archive of the current elites under new descriptors and bounds (after a PCA
        refit), with the same bins unless given. Elites that now share a cell keep the better
        one (among equals, the one from the lower old cell); the others leave the archive."""
        elites = self.elites()
        bins = self.bins if bins is None else bins
        archive = Archive(bins, lower, upper, self.maximize, self.qd_offset)
        missing = [c for c in elites.commits.tolist() if c not in descriptors_by_commit]
        if missing:
            raise ValueError(f"rebinned: no new descriptor for commits {missing[:5]}")
        descriptors = np.array([descriptors_by_commit[c] for c in elites.commits.tolist()],
                               dtype=np.float64).reshape(elites.commits.size, archive.dims)
        archive.add_batch(elites.commits, elites.objectives, descriptors)
        return archive


def freeze_bounds(descriptors: ArrayLike, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Grid bounds from the descriptors of a warm-up: per column, the range seen widened by
    ``margin`` times its span on each side. A constant column c gets the range
    c ± max(|c|, 1) / 2 before the margin. Rows with a non-finite value are ignored."""
    d = np.asarray(descriptors, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"descriptors of shape {d.shape}, expected (n, dims)")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, not {margin}")
    d = d[np.isfinite(d).all(axis=1)]
    if not d.size:
        raise EvopilotError("cannot freeze the archive bounds: no candidate of the warm-up has "
                            "finite descriptors")
    lo, hi = d.min(axis=0), d.max(axis=0)
    constant = lo == hi
    half = np.maximum(np.abs(lo), 1.0) / 2
    lo = np.where(constant, lo - half, lo)
    hi = np.where(constant, hi + half, hi)
    pad = margin * (hi - lo)
    return lo - pad, hi + pad
