"""The public JSON of a job (`evopilot jobs --json`), from a ``Job`` or straight from a row:
a module without imports, so that the models and the engine-free listing
(``core.jobs.listing``) share it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


PUBLIC_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "id"), ("project", "project"), ("benchmark", "name"), ("kind", "kind"), ("host", "host"),
    ("status", "status"), ("priority", "priority"), ("exit_code", "exit_code"),
    ("progress_current", "progress_current"), ("progress_total", "progress_total"),
    ("error_message", "error_message"), ("created_at", "created_at"), ("started_at", "started_at"),
    ("finished_at", "finished_at"), ("depends_on", "depends_on"), ("commit", "commit_sha"),
    ("tmux_session", "tmux_session"), ("log_path", "log_path"), ("metrics", "metrics"),
    ("origin_kind", "origin_kind"), ("origin_id", "origin_id"), ("mode", "mode"), ("slurm_id", "slurm_id"),
    ("command", "command"), ("args", "args"), ("timeout_s", "timeout_s"), ("workdir", "workdir"),
    ("metric_units", "metric_units"),
    ("metric_directions", "metric_higher_is_better"),
)
"""(name printed, job attribute) in the order `evopilot jobs --json` prints them; the names are a
public interface. ``metric_units`` and ``metric_directions`` are finished by ``finish_metrics``."""


def public_job(j: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `evopilot jobs --json` prints, from a job's attributes (a ``Job``'s, or a
    row's with its metrics added)."""
    out = {name: j[attribute] for name, attribute in PUBLIC_FIELDS}
    status = out["status"]
    out["status"] = getattr(status, "value", status)
    finish_metrics(out)
    return out


def finish_metrics(out: dict[str, Any]) -> None:
    """Turn ``out``'s ``metric_units`` (name -> unit, where set) and ``metric_directions``
    (name -> higher is better, where known) into one entry per metric."""
    metrics, units, higher = out["metrics"], out["metric_units"], out["metric_directions"]
    out["metric_units"] = {name: units.get(name) for name in metrics}
    out["metric_directions"] = {name: _direction(higher.get(name)) for name in metrics}


def _direction(higher_is_better: bool | None) -> str | None:
    return None if higher_is_better is None else "higher" if higher_is_better else "lower"


def elapsed_seconds(started_at: str | None, finished_at: str | None,
                    now: datetime | None = None) -> float | None:
    """Seconds from start to finish, or to ``now`` (default: the current time) while it runs."""
    if not started_at:
        return None
    end = datetime.fromisoformat(finished_at) if finished_at else now or datetime.now(UTC)
    return (end - datetime.fromisoformat(started_at)).total_seconds()
