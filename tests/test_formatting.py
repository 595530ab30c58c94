"""The text forms of durations, progress, metrics and jobs that the CLI and the TUI share."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from evopilot.core import formatting
from evopilot.core.hosts.doctor import Check
from evopilot.core.models import Job

NOW = datetime(2025, 3, 14, 10, 6, 40, tzinfo=UTC)


def job(**fields) -> Job:
    row = dict(
        id=7, project_id=None, kind="benchmark", name="bench.py", benchmark_path=None, args=[],
        command="x", workdir="/", host="gpu1", status="running", priority=0, seq=1, timeout_s=None,
        tmux_session=None, job_dir=None, pid=None, pgid=None, exit_code=None, progress_current=0,
        progress_total=0, results_path=None, error_message=None, log_path=None, log_offset=0,
        requested=None, retry_of=None, created_at="x", started_at=None, finished_at=None,
        updated_at="x",
    )
    return Job.model_validate({**row, **fields})


@pytest.mark.parametrize(("seconds", "text"), [
    (None, ""), (-3, "0:00"), (0, "0:00"), (42.9, "0:42"), (725, "12:05"), (11045, "3:04:05"),
    (2 * 86400 + 3 * 3600 + 4 * 60 + 5, "2d03h04"),
])
def test_duration(seconds, text):
    assert formatting.duration(seconds) == text


def test_elapsed_runs_to_now_or_to_the_finish():
    running = job(started_at="2025-03-14T10:05:00.000+00:00")
    assert formatting.elapsed(running, NOW) == "1:40"
    done = job(status="succeeded", started_at="2025-03-14T10:00:00.000+00:00",
               finished_at="2025-03-14T10:02:05.000+00:00")
    assert formatting.elapsed(done, NOW) == "2:05"
    assert formatting.elapsed(job(status="queued"), NOW) == ""


def test_progress_forms():
    j = job(progress_current=12, progress_total=50)
    assert formatting.progress(j) == "[12/50]"
    assert formatting.progress_bar(j, 10) == "██░░░░░░░░ 12/50"
    assert formatting.progress_bar(job(progress_current=60, progress_total=50), 4) == "████ 60/50"
    assert formatting.progress(job()) == ""
    assert formatting.progress_bar(job(), 10) == "…"  # running, nothing reported yet
    assert formatting.progress_bar(job(status="queued"), 10) == ""


def test_metrics_with_and_without_units():
    assert formatting.metric(12.5) == "12.5"
    assert formatting.metric(3.2, "s") == "3.2 s"
    assert formatting.metric(1e-9, "") == "1e-09"
    j = job(status="succeeded", metrics={"objective": 12.5, "runtime": 3.2}, metric_units={"runtime": "s"})
    assert formatting.metrics(j) == "objective=12.5 runtime=3.2 s"
    assert formatting.outcome(j) == "objective=12.5 runtime=3.2 s"


def test_last_line_of_an_error():
    assert formatting.last_line("Traceback (most recent call last):\n  x\nValueError: bad\n\n") == "ValueError: bad"
    assert formatting.last_line(None) == "" and formatting.last_line(" \n ") == ""
    assert len(formatting.last_line("x" * 10_000)) == formatting.LINE_LIMIT


def test_job_line_says_what_the_job_came_to():
    failed = job(status="failed", exit_code=1, progress_current=12, progress_total=50,
                 error_message="Traceback (most recent call last):\nValueError: capacity must be positive")
    assert formatting.job_line(failed) == (
        "job 7  bench.py  gpu1  failed  [12/50]  exit 1  error: ValueError: capacity must be positive")
    waiting = job(status="pending", error_message="setup p (job 3) failed: fix it and `evopilot retry 3`")
    assert formatting.job_line(waiting) == "job 7  bench.py  gpu1  pending  setup p (job 3) failed: fix it and `evopilot retry 3`"
    ok = job(status="succeeded", exit_code=0, metrics={"objective": 12.5})
    assert formatting.job_line(ok) == "job 7  bench.py  gpu1  succeeded  exit 0  metrics: objective=12.5"


def test_job_detail_is_two_lines_when_there_is_an_outcome():
    running = job(progress_current=12, progress_total=50, started_at="2025-03-14T10:05:00.000+00:00",
                  requested="stop")
    assert formatting.job_detail(running, NOW) == "job 7 · bench.py · on gpu1 · running · ██░░░░░░░░ 12/50 · 1:40 · requested: stop"
    failed = job(status="failed", exit_code=2, error_message="boom")
    assert formatting.job_detail(failed, NOW) == "job 7 · bench.py · on gpu1 · failed · exit 2\nerror: boom"


def test_check_lines():
    checks = [Check("tmux", True, "tmux 3.4"), Check("uv", False, "not found", "install uv"),
              Check("disk", False, "not run: unreachable", None, ran=False)]
    assert formatting.check_lines(checks) == [
        "ok    tmux: tmux 3.4", "FAIL  uv: not found", "      fix: install uv", "skip  disk: not run: unreachable"]
