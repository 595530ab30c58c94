"""Code evolution as the CLI and the app see it: start, resume, stop and inspect experiments.

An experiment's loop runs in one process at a time (a claim renewed by heartbeats): the
foreground `evolve start`, or a worker or the app adopting a detached or orphaned one.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import aiosqlite
import numpy as np

from evopilot.core import gitops
from evopilot.core.db import evolution as evo_db
from evopilot.core.db import jobs as jobs_db
from evopilot.core.db import projects as projects_db
from evopilot.core.errors import EvopilotError
from evopilot.core.events import EventBus
from evopilot.core.evolution.archive import Archive
from evopilot.core.evolution.experiment import Experiment, load_experiment, parse_experiment
from evopilot.core.evolution.loop import STALE_AFTER, EvolutionLoop, dead_owners, ref_name
from evopilot.core.models import CommitRow, ExperimentRow
from evopilot.core.jobs.submit import Submitter
from evopilot.core.waits import wait_set

ADOPT_EVERY = 2.0


class Evolution:
    def __init__(self, db: aiosqlite.Connection, submitter: Submitter, bus: EventBus) -> None:
        self.db, self.submitter, self.bus = db, submitter, bus

    # ---- lifecycle -------------------------------------------------------------------------

    async def create(self, path: str | Path, iterations: int | None = None) -> ExperimentRow:
        """The experiment of this file: the existing one when its settings are the same (more
        ``iterations`` extend it), else a new one at the file's base commit."""
        exp = load_experiment(path)
        project = await projects_db.get_project(self.db, exp.project)
        for f in exp.files:
            if Path(f).is_absolute() or ".." in Path(f).parts:
                raise EvopilotError(f"{path}: files: {f!r} must be a path inside the project")
        row = await evo_db.experiment_by_hash(self.db, exp.config_hash())
        planned = iterations or exp.budget.iterations
        if row is not None:
            if planned > row.iterations_planned:
                async with jobs_db.transaction(self.db):
                    await evo_db.update_experiment(self.db, row.id, iterations_planned=planned)
            return await evo_db.get_experiment(self.db, row.id)
        commit, _ = await gitops.resolve(project.path, exp.base, project.name)
        if commit.prefix:
            raise EvopilotError(f"project {project.name} is the folder {commit.prefix} of its git repository: "
                                "evolution needs a project at its repository's root")
        base = commit.sha
        await gitops.read_files(project.path, base, exp.files)  # each file exists at the base
        for stage in exp.evaluation.stages:
            await self.submitter.projects.resolve_benchmark(project, stage.benchmark)
        for host in exp.evaluation.hosts:
            self.submitter.config.host(host)
        async with jobs_db.transaction(self.db):
            row = await evo_db.create_experiment(
                self.db, name=exp.name, project_id=project.id, config_hash=exp.config_hash(),
                config_snapshot=exp.canonical_json(), source_path=str(Path(path).resolve()),
                iterations=planned, base_commit=base)
        await gitops.update_ref(project.path, ref_name(row.id, 0), base)  # kept from gc with the rest
        return row

    async def demo_repository(self, example: Path, dest: Path) -> Path:
        """A git repository of the example at ``dest`` (made once: an existing one is kept as
        it is), so that its candidates are commits of a repository of its own."""
        if not (dest / ".git").exists():
            shutil.copytree(example, dest, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".venv"))
            await gitops.git(dest, "init", "-q")
            await gitops.git(dest, "add", "-A")
            await gitops.git(dest, "commit", "-q", "-m", "the example's seed program",
                             env={**gitops.IDENTITY, "GIT_AUTHOR_DATE": "1700000000 +0000",
                                  "GIT_COMMITTER_DATE": "1700000000 +0000"})
        return dest / "experiment.toml"

    async def run(self, ref: str | int, stop: asyncio.Event,
                  on_progress: Callable[[dict], None] | None = None) -> tuple[str, str | None]:
        """Run (or resume) the experiment's loop in this process until it ends or ``stop``."""
        row = await evo_db.get_experiment(self.db, ref)
        loop = await self._loop(row, on_progress)
        return await loop.run(stop)

    async def _loop(self, row: ExperimentRow, on_progress=None) -> EvolutionLoop:
        exp = parse_experiment(row.config_snapshot)
        project = await projects_db.get_project_by_id(self.db, row.project_id)
        return EvolutionLoop(db=self.db, submitter=self.submitter, bus=self.bus, row=row, exp=exp,
                             project=project, on_progress=on_progress)

    async def detach(self, ref: str | int) -> ExperimentRow:
        """Leave the experiment to whichever worker (or app) adopts it."""
        row = await evo_db.get_experiment(self.db, ref)
        if row.state not in ("running",):
            async with jobs_db.transaction(self.db):
                await evo_db.update_experiment(self.db, row.id, state="running", stop_reason=None)
        return await evo_db.get_experiment(self.db, row.id)

    async def stop(self, ref: str | int) -> ExperimentRow:
        row = await evo_db.get_experiment(self.db, ref)
        if row.state not in ("running", "created"):
            raise EvopilotError(f"experiment {row.name} is {row.state}, not running")
        live = row.owner and row.owner not in dead_owners([row.owner]) and \
            (row.heartbeat_at or 0) > time.time() - STALE_AFTER
        async with jobs_db.transaction(self.db):
            if live:  # its loop sees this at its next heartbeat and stops
                await evo_db.update_experiment(self.db, row.id, state="stopping")
            else:
                await evo_db.update_experiment(self.db, row.id, state="stopped", owner=None,
                                               stop_reason="stopped by `evolve stop`")
        return await evo_db.get_experiment(self.db, row.id)

    async def adopt(self, stop: asyncio.Event) -> None:
        """Run detached or orphaned experiments (state running, no live owner) until ``stop``:
        the background worker's and the app's share of the evolution work."""
        running: dict[int, asyncio.Task] = {}
        try:
            while not stop.is_set():
                for row in await evo_db.list_experiments(self.db):
                    if row.state != "running" or row.id in running:
                        continue
                    if row.owner and row.owner not in dead_owners([row.owner]) and \
                            (row.heartbeat_at or 0) > time.time() - STALE_AFTER:
                        continue
                    loop = await self._loop(row)
                    task = asyncio.create_task(loop.run(stop))
                    running[row.id] = task
                    task.add_done_callback(lambda t, i=row.id: running.pop(i, None))
                await wait_set(stop, ADOPT_EVERY)
        finally:
            if not stop.is_set():  # cancelled: the loops let go of their experiments
                for t in running.values():
                    t.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

    # ---- views -----------------------------------------------------------------------------

    async def list(self) -> list[dict]:
        return [await self.status(r.id, brief=True) for r in await evo_db.list_experiments(self.db)]

    async def status(self, ref: str | int, *, brief: bool = False) -> dict:
        row = await evo_db.get_experiment(self.db, ref)
        exp = parse_experiment(row.config_snapshot)
        counts = await evo_db.iteration_counts(self.db, row.id)
        out = {"id": row.id, "name": row.name, "state": row.state,
               "iterations_done": sum(counts.get(s, 0) for s in ("placed", "skipped", "failed")),
               "iterations_planned": row.iterations_planned}
        if brief:
            return out
        snaps = await evo_db.snapshots(self.db, row.id)
        best = await self._best(row, exp, snaps)
        archives = [s["archive"] for i, s in sorted(snaps.items()) if i >= 0 and s.get("archive")]
        cells = sum(math.prod(a["bins"]) for a in archives)
        history = await evo_db.history(self.db, row.id)
        qd = {}
        for h in history:
            qd[h["island_id"]] = h["qd_score"]
        spend = await evo_db.spend(self.db, row.id)
        seed = await evo_db.commit_by_hash(self.db, row.id, row.base_commit)
        return {
            **out,
            "counts": counts,
            "best": best,
            "seed_objective": seed.objective if seed else None,
            "coverage": (sum(len(a["entries"]) for a in archives) / cells) if cells else 0.0,
            "qd_score": sum(qd.values()),
            "evaluations_running": counts.get("evaluating", 0),
            "spend": spend,
            "dollars": sum(s["dollars"] or 0 for s in spend),
            "active_seconds": row.active_seconds,
            "stop_reason": row.stop_reason,
            "objective": exp.evaluation.objective,
            "direction": exp.evaluation.direction,
            "base_commit": row.base_commit,
        }

    async def _best(self, row: ExperimentRow, exp: Experiment, snaps: dict) -> dict | None:
        entries = [e for i, s in snaps.items() if i >= 0 and s.get("archive") for e in s["archive"]["entries"]]
        if not entries:
            return None
        commit_id, objective, _ = (max if exp.maximize else min)(entries, key=lambda e: e[1])
        c = (await evo_db.commits_by_id(self.db, [commit_id]))[commit_id]
        return {"objective": objective, "commit": c.commit_hash, "iteration": c.iteration}

    async def show(self, commit: str, *, experiment: str | int | None = None,
                   diff_limit: int | None = None) -> dict:
        """A candidate by (a prefix of) its hash; ``experiment`` looks only there (a seed
        commit is in every experiment started at it). ``diff_limit`` caps the bytes of diff
        read (``diff_cut`` says whether it was cut)."""
        if experiment is None:
            c = await evo_db.find_commit(self.db, commit)
            row = await evo_db.get_experiment(self.db, c.experiment_id)
        else:
            row = await evo_db.get_experiment(self.db, experiment)
            c = await self._commit(row, commit)
        project = await projects_db.get_project_by_id(self.db, row.project_id)
        its = await evo_db.iterations(self.db, row.id, from_number=c.iteration or 0, limit=1)
        it = its[0] if its and its[0].candidate_hash == c.commit_hash else None
        diff, cut = "", False
        if c.parent_hash and diff_limit is not None:
            diff, cut = await gitops.diff_head(project.path, c.parent_hash, c.commit_hash, diff_limit)
        elif c.parent_hash:
            diff = await gitops.diff_text(project.path, c.parent_hash, c.commit_hash)
        return {
            "commit": c.commit_hash, "experiment": row.name, "experiment_id": row.id,
            "iteration": c.iteration, "island": c.island, "parent": c.parent_hash,
            "objective": c.objective, "summary": c.evaluation_summary,
            "metrics": await evo_db.commit_metrics(self.db, c.id),
            "mutator": c.extra_context.get("mutator"), "cost": c.extra_context.get("cost", 0.0),
            "message": c.message, "diff": diff, "diff_cut": cut,
            "prompt": it.payload.get("prompt") if it else None,
            "answer": json.loads(it.answer)["raw"] if it and it.answer else None,  # the mutator's own text
            "job_id": it.job_id if it else None,
        }

    async def best(self, ref: str | int, branch: str | None = None, *, force: bool = False) -> dict:
        row = await evo_db.get_experiment(self.db, ref)
        exp = parse_experiment(row.config_snapshot)
        best = await self._best(row, exp, await evo_db.snapshots(self.db, row.id))
        if best is None:
            raise EvopilotError(f"experiment {row.name} has no evaluated candidate yet")
        if branch:
            await self.branch_at(row.id, best["commit"], branch, force=force)
            best["branch"] = branch
        return best

    async def branch_at(self, ref: str | int, commit: str, name: str, *, force: bool = False) -> dict:
        """A branch ``name`` at a candidate of the experiment, in its project's repository."""
        row = await evo_db.get_experiment(self.db, ref)
        c = await self._commit(row, commit)
        project = await projects_db.get_project_by_id(self.db, row.project_id)
        await gitops.branch(project.path, name, c.commit_hash, force=force)
        return {"branch": name, "commit": c.commit_hash, "project": project.name, "path": project.path}

    async def _commit(self, row: ExperimentRow, commit: str) -> CommitRow:
        c = await evo_db.commit_by_hash(self.db, row.id, commit)
        if c is None:
            raise EvopilotError(f"no candidate commit {commit!r} in experiment {row.name}")
        return c

    async def export(self, ref: str | int) -> list[dict]:
        row = await evo_db.get_experiment(self.db, ref)
        its = {it.candidate_hash: it for it in await evo_db.iterations(self.db, row.id) if it.candidate_hash}
        out = []
        for c in await evo_db.commits(self.db, row.id):
            it = its.get(c.commit_hash)
            out.append({"commit": c.commit_hash, "parent": c.parent_hash, "iteration": c.iteration,
                        "island": c.island, "status": it.status if it else None,
                        "objective": c.objective, "mutator": c.extra_context.get("mutator"),
                        "cost": c.extra_context.get("cost", 0.0), "summary": c.evaluation_summary,
                        "metrics": c.metrics})
        return out

    async def archive(self, ref: str | int) -> dict:
        """The islands' archives and curves, for the Archive tab."""
        row = await evo_db.get_experiment(self.db, ref)
        snaps = await evo_db.snapshots(self.db, row.id)
        return {"experiment": row.model_dump(), "islands": {i: s for i, s in snaps.items() if i >= 0},
                "history": await evo_db.history(self.db, row.id)}

    async def cells(self, ref: str | int, island: int) -> dict:
        """One island's grid for the Archive tab: the descriptor names, bins and bounds, and
        each occupied cell's bin per dimension (``index``), commit and objective. ``bins`` is
        None and ``cells`` empty while the island has no archive (the warm-up)."""
        row = await evo_db.get_experiment(self.db, ref)
        exp = parse_experiment(row.config_snapshot)
        if not 0 <= island < exp.islands.count:
            raise EvopilotError(f"experiment {row.name} has islands 0..{exp.islands.count - 1}, not {island}")
        d = exp.descriptors
        out = {"island": island, "islands": exp.islands.count, "objective": exp.evaluation.objective,
               "maximize": exp.maximize,
               "descriptors": list(d.metrics) or [f"pc{i + 1}" for i in range(d.embedding)],
               "bins": None, "lower": None, "upper": None, "cells": []}
        snap = await evo_db.snapshot(self.db, row.id, island)
        if not snap or not snap.get("archive"):
            return out
        archive = Archive.restore(snap["archive"])
        elites = archive.elites()
        hashes = await evo_db.commit_hashes(self.db, elites.commits.tolist())
        index = np.stack(np.unravel_index(elites.cells, archive.bins), axis=1).tolist()
        out.update(bins=list(archive.bins), lower=archive.lower.tolist(), upper=archive.upper.tolist())
        out["cells"] = [{"index": i, "commit": hashes[c], "objective": o}
                        for i, c, o in zip(index, elites.commits.tolist(), elites.objectives.tolist())]
        return out

    async def stamp(self, experiment_id: int | None = None) -> tuple:
        """Changes when experiments do, or that experiment's iterations or archives: cheap to
        poll (the Archive tab's view of a run in another process)."""
        return await evo_db.change_stamp(self.db, experiment_id)

