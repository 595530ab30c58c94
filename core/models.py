"""Domain models (rows and events) and status enums, shared by the core, the CLI and the TUI."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_iso(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


class JobStatus(enum.StrEnum):
    PENDING = "pending"  # waiting on something other than a slot (e.g. its host's setup)
    QUEUED = "queued"  # ready; starts when its host has a free slot
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # cancelled while queued, or stopped (SIGINT) while running
    KILLED = "killed"
    LOST = "lost"  # the tmux session vanished without an exit code

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.KILLED, JobStatus.LOST}
)


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
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    metrics: dict[str, float] = {}
    metric_units: dict[str, str] = {}
    """The unit of each metric that has one (results.json's ``"unit"``)."""
    metric_higher: dict[str, bool] = {}
    """Whether higher is better, for each metric that says (results.json's ``"higher_is_better"``)."""

    @field_validator("args", mode="before")
    @classmethod
    def _args_json(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    def elapsed(self, now: datetime | None = None) -> float | None:
        """Seconds from start to finish, or to ``now`` (default: the current time) while it runs."""
        start = parse_iso(self.started_at)
        if start is None:
            return None
        end = parse_iso(self.finished_at) or now or datetime.now(UTC)
        return (end - start).total_seconds()

    def public(self) -> dict[str, Any]:
        """The fields `evopilot jobs --json` prints (names are a public interface)."""
        return {
            "id": self.id,
            "project": self.project,
            "benchmark": self.name,
            "kind": self.kind,
            "host": self.host,
            "status": self.status.value,
            "priority": self.priority,
            "exit_code": self.exit_code,
            "progress_current": self.progress_current,
            "progress_total": self.progress_total,
            "error_message": self.error_message,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "depends_on": self.depends_on,
            "commit": self.commit_sha,
            "tmux_session": self.tmux_session,
            "log_path": self.log_path,
            "metrics": self.metrics,
            "origin_kind": self.origin_kind,
            "origin_id": self.origin_id,
            "mode": self.mode,
        }


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

    @field_validator("inspiration_hashes", "payload", mode="before")
    @classmethod
    def _json(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v


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

    @field_validator("extra_context", mode="before")
    @classmethod
    def _json(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v
