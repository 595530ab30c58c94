"""The public JSON of a job (`evopilot jobs --json`), from a ``Job`` or straight from a row:
a module without imports, so that the models and the engine-free listing
(``core.jobs.listing``) share it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def public_job(j: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `evopilot jobs --json` prints, from a job's attributes (a ``Job``'s, or a
    row's with its metrics added); the names are a public interface."""
    status = j["status"]
    metrics = j["metrics"]
    return {
        "id": j["id"],
        "project": j["project"],
        "benchmark": j["name"],
        "kind": j["kind"],
        "host": j["host"],
        "status": getattr(status, "value", status),
        "priority": j["priority"],
        "exit_code": j["exit_code"],
        "progress_current": j["progress_current"],
        "progress_total": j["progress_total"],
        "error_message": j["error_message"],
        "created_at": j["created_at"],
        "started_at": j["started_at"],
        "finished_at": j["finished_at"],
        "depends_on": j["depends_on"],
        "commit": j["commit_sha"],
        "tmux_session": j["tmux_session"],
        "log_path": j["log_path"],
        "metrics": metrics,
        "origin_kind": j["origin_kind"],
        "origin_id": j["origin_id"],
        "mode": j["mode"],
        "command": j["command"],
        "args": j["args"],
        "timeout_s": j["timeout_s"],
        "workdir": j["workdir"],
        "metric_units": {name: j["metric_units"].get(name) for name in metrics},
        "metric_directions": {name: _direction(j["metric_higher_is_better"].get(name)) for name in metrics},
    }


def _direction(higher_is_better: bool | None) -> str | None:
    return None if higher_is_better is None else "higher" if higher_is_better else "lower"


def elapsed_seconds(started_at: str | None, finished_at: str | None,
                    now: datetime | None = None) -> float | None:
    """Seconds from start to finish, or to ``now`` (default: the current time) while it runs."""
    if not started_at:
        return None
    end = datetime.fromisoformat(finished_at) if finished_at else now or datetime.now(UTC)
    return (end - datetime.fromisoformat(started_at)).total_seconds()
