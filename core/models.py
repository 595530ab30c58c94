"""Domain models (rows and events) and status enums, shared by the core, the CLI and the TUI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from evopilot.core.job_json import elapsed_seconds, public_job
from evopilot.core.status import FINISHED, TASK_STATUSES, JobStatus  # noqa: F401 (re-exported: models are where they are used from)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_iso(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def _decode_json(cls, v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def json_columns(*fields: str):
    """A validator for the fields a row stores as JSON text (decoded; given values pass)."""
    return field_validator(*fields, mode="before")(_decode_json)


class _Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def from_row(cls, row: Any) -> "_Row":
        return cls.model_validate(dict(row))


class Project(_Row):
    id: int
    name: str
    path: str
    python_version: str
    created_at: str
    updated_at: str


class Benchmark(_Row):
    id: int
    project_id: int
    name: str
    path: str
    created_at: str


class Metric(_Row):
    name: str
    value: float
    unit: str | None = None
    higher_is_better: bool | None = None


class Job(_Row):
    id: int
    project_id: int | None
    project: str | None = None
    kind: str
    name: str
    """Display name: a benchmark's file name, "setup PROJECT", an evaluation's candidate."""
    benchmark_path: str | None
    args: list[str]
    command: str
    workdir: str
    host: str
    status: JobStatus
    priority: int
    seq: float
    timeout_s: float | None
    tmux_session: str | None
    job_dir: str | None
    pid: int | None
    pgid: int | None
    exit_code: int | None
    progress_current: int
    progress_total: int
    results_path: str | None
    error_message: str | None
    log_path: str | None
    log_offset: int
    requested: str | None
    retry_of: int | None
    depends_on: int | None = None
    origin_kind: str | None = None
    """Who owns the job (an evolution iteration, a task attempt), with ``origin_id``."""
    origin_id: int | None = None
    mode: Literal["batch", "tty"] = "batch"
    """batch: stdin from /dev/null; tty: the command runs on the tmux pane's terminal."""
    commit_sha: str | None = None
    """The commit whose files the job runs on; None: the project's working tree."""
    end_handled: bool = False
    slot_group: str | None = None
    """Jobs of one group run at most ``slot_limit`` at once, over all hosts."""
    slot_limit: int | None = None
    slurm_id: str | None = None
    """Its job id in Slurm, on a Slurm host (see ``core.hosts.slurm``)."""
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    metrics: dict[str, float] = {}
    metric_units: dict[str, str] = {}
    """The unit of each metric that has one (results.json's ``"unit"``)."""
    metric_higher_is_better: dict[str, bool] = {}
    """The direction of each metric that has one (results.json's ``"higher_is_better"``)."""

    _json = json_columns("args")

    def elapsed(self, now: datetime | None = None) -> float | None:
        """Seconds from start to finish, or to ``now`` (default: the current time) while it runs."""
        return elapsed_seconds(self.started_at, self.finished_at, now)

    def public(self) -> dict[str, Any]:
        """The fields `evopilot jobs --json` prints (names are a public interface; see
        ``core.job_json``, which ``core.jobs.listing`` also prints them with, without models)."""
        return public_job(self.__dict__)


# ---- code evolution (core/evolution) -------------------------------------------------------


class ExperimentRow(_Row):
    id: int
    name: str
    project_id: int
    config_hash: str
    config_snapshot: str
    source_path: str | None
    state: str
    stop_reason: str | None
    iterations_planned: int
    base_commit: str
    active_seconds: float
    owner: str | None
    heartbeat_at: float | None
    created_at: str
    updated_at: str


class IterationRow(_Row):
    id: int
    experiment_id: int
    number: int
    status: str
    base_commit_hash: str
    island: int
    inspiration_hashes: list[str]
    payload: dict[str, Any]
    plan_summary: str | None
    answer: str | None
    candidate_hash: str | None
    stage: int
    job_id: int | None
    last_error: str | None
    created_at: str
    updated_at: str

    _json = json_columns("inspiration_hashes", "payload")


class CommitRow(_Row):
    id: int
    experiment_id: int
    commit_hash: str
    parent_hash: str | None
    tree_hash: str
    island: int | None
    iteration: int | None
    message: str | None
    evaluation_summary: str | None
    objective: float | None
    extra_context: dict[str, Any]
    created_at: str
    metrics: dict[str, float] = {}

    _json = json_columns("extra_context")


# ---- tasks and coding-agent attempts (core/tasks) ------------------------------------------

TaskStatus = Literal["todo", "inprogress", "inreview", "done", "cancelled"]


class TaskRow(_Row):
    id: int
    project_id: int
    project: str | None = None
    title: str
    description: str | None
    status: TaskStatus
    parent_attempt_id: int | None
    position: float
    created_at: str
    updated_at: str


class AttemptRow(_Row):
    id: int
    task_id: int
    name: str | None
    agent: str
    host: str
    worktree_path: str
    remote_dir: str | None = None
    """On an SSH host, the git clone its agents and tests run in (None: the local worktree)."""
    agent_working_dir: str = ""
    """The project's folder inside its repository, where its jobs run ("": the top)."""
    branch: str
    target_branch: str
    base_commit: str
    branch_head: str | None
    state: Literal["starting", "running", "testing", "ready", "stopped", "failed", "merged"]
    archived: bool
    pinned: bool
    params: dict[str, str]
    sweep_id: int | None
    agents_hash: str | None
    setup_job_id: int | None
    setup_completed_at: str | None
    test_job_id: int | None
    tests_passed: bool | None
    files_changed: int | None
    lines_added: int | None
    lines_removed: int | None
    agent_seconds: float
    max_dollars: float | None
    max_requests: int | None
    max_minutes: float | None
    stop_reason: str | None
    error_message: str | None
    created_at: str
    updated_at: str
    # sums of its cost entries (filled by the queries that list attempts)
    tokens_in: int = 0
    tokens_out: int = 0
    dollars: float = 0.0
    requests: int = 0

    _json = json_columns("params")

    @property
    def lines_changed(self) -> int | None:
        if self.lines_added is None:
            return None
        return self.lines_added + (self.lines_removed or 0)


class AgentSessionRow(_Row):
    id: int
    attempt_id: int
    job_id: int | None
    agent: str
    tty: bool
    command: str
    head_before: str | None
    head_after: str | None
    created_at: str
    ended_at: str | None


class SweepRow(_Row):
    id: int
    task_id: int
    matrix: dict[str, Any]
    limits: dict[str, Any]
    max_parallel: int | None
    time_budget_s: float | None
    state: Literal["running", "done", "stopped"]
    champion_attempt_id: int | None
    error_message: str | None
    started_at: str
    completed_at: str | None
    created_at: str
    updated_at: str

    _json = json_columns("matrix", "limits")
