"""Rows of the evolution tables as pydantic models."""

from __future__ import annotations

import json
from typing import Any

from pydantic import field_validator

from evopilot.core.models import _Row


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
