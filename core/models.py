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
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    metrics: dict[str, float] = {}

    @field_validator("args", mode="before")
    @classmethod
    def _args_json(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    def elapsed(self) -> float | None:
        start = parse_iso(self.started_at)
        if start is None:
            return None
        end = parse_iso(self.finished_at) or datetime.now(UTC)
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
        }


class JobEvent(BaseModel):
    """A job changed state (or progress); carries the job as it is now."""

    type: Literal["job"] = "job"
    job: Job
    previous: JobStatus | None = None


class LogEvent(BaseModel):
    """New bytes arrived in a job's log (coalesced per tick)."""

    type: Literal["log"] = "log"
    job_id: int
    log_path: str
    size: int


class HostEvent(BaseModel):
    type: Literal["host"] = "host"
    host: str
    state: str
    last_error: str | None = None


class QueueEvent(BaseModel):
    type: Literal["queue"] = "queue"
    paused: bool


Event = JobEvent | LogEvent | HostEvent | QueueEvent
