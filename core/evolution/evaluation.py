"""The ``evaluation`` job kind: a candidate's benchmark, run on its commit, owned by an iteration.

Its end handler records the outcome on the iteration in the scheduler's transaction (exactly
once, whichever process sees the job end): the metrics go to the candidate's commit, and the
iteration moves on to the next stage of the cascade, to ``evaluated``, or to ``failed`` with
the reason. The loop (core/evolution/loop.py) takes it from there.
"""

from __future__ import annotations

import aiosqlite

from evopilot.core.db import evolution as evo_db
from evopilot.core.events import IterationEvent
from evopilot.core.jobs.kinds import JobKind
from evopilot.core.models import IterationRow, Job, JobStatus

ORIGIN = "iteration"


def passes(value: float, threshold: float | None, maximize: bool) -> bool:
    return threshold is None or (value >= threshold if maximize else value <= threshold)


async def on_evaluation_end(db: aiosqlite.Connection, job: Job) -> list[IterationEvent]:
    if job.origin_kind != ORIGIN or job.origin_id is None:
        return []
    it = await evo_db.get_iteration(db, job.origin_id)
    if it is None or it.status not in ("mutated", "evaluating") or it.job_id not in (None, job.id):
        return []  # a stale job (an earlier stage, or the experiment moved on)
    status = await _record(db, it, job)
    return [IterationEvent(experiment_id=it.experiment_id, number=it.number, status=status)]


async def _record(db: aiosqlite.Connection, it: IterationRow, job: Job) -> str:
    """The job's outcome on the iteration and its commit; returns the iteration's new status."""
    row = await evo_db.get_experiment(db, it.experiment_id)
    from evopilot.core.evolution.experiment import parse_experiment  # pydantic models: only here

    exp = parse_experiment(row.config_snapshot)
    commit = await evo_db.commit_by_hash(db, it.experiment_id, it.candidate_hash)
    stages = exp.evaluation.stages
    await evo_db.set_commit_metrics(db, commit.id, job.id)
    if job.status != JobStatus.SUCCEEDED:
        reason = f"evaluation job {job.id} {job.status.value}: {job.error_message or f'exit code {job.exit_code}'}"
        return await _end(db, it.id, commit.id, "failed", reason, job.id)
    objective = job.metrics.get(exp.evaluation.objective)
    missing = [m for m in [exp.evaluation.objective, *exp.descriptors.metrics] if m not in job.metrics]
    if objective is None or missing:
        return await _end(db, it.id, commit.id, "failed",
                          f"evaluation job {job.id} reported no {', '.join(repr(m) for m in missing)} in results.json",
                          job.id)
    stage = stages[it.stage]
    if not passes(objective, stage.threshold, exp.maximize):
        return await _end(db, it.id, commit.id, "skipped",
                          f"filtered at stage {it.stage + 1}: {exp.evaluation.objective} {objective:g} "
                          f"does not reach {stage.threshold:g}", job.id)
    if it.stage + 1 < len(stages):  # on to the next stage of the cascade
        await evo_db.update_iteration(db, it.id, status="mutated", stage=it.stage + 1, job_id=None)
        return "mutated"
    raw = [job.metrics[m] for m in exp.descriptors.metrics]
    extra = {**commit.extra_context, **({"raw": raw} if raw else {})}
    await evo_db.update_commit(db, commit.id, objective=objective, extra_context=extra,
                               evaluation_summary=f"evaluated by job {job.id}")
    await evo_db.update_iteration(db, it.id, status="evaluated", job_id=job.id)
    return "evaluated"


async def _end(db: aiosqlite.Connection, it_id: int, commit_id: int, status: str, reason: str, job_id: int) -> str:
    await evo_db.update_commit(db, commit_id, evaluation_summary=reason)
    await evo_db.update_iteration(db, it_id, status=status, last_error=reason, job_id=job_id)
    return status


EVALUATION = JobKind("evaluation", workspace="project", on_end=on_evaluation_end)
MUTATION = JobKind("mutation")
"""A `command` mutator's coding agent, run in a worktree of the parent; the loop waits for it."""
