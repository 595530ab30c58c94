"""What the CLI prints: logs as JSON lines, `logs -f` on a queued job, the cancel message,
tables fitted to the terminal, and the fields of `jobs --json`."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import REPO, evopilot_cmd, stop_process

RESULTS = """
import json, os, sys
print("first")
sys.stdout.buffer.write(b"bad \\xff bytes\\r\\n")
print("last, no newline", end="")
json.dump({"score": 0.5, "time": {"value": 1.5, "unit": "s", "higher_is_better": False},
           "acc": {"value": 0.9, "higher_is_better": True}},
          open(os.environ["EVOPILOT_RESULTS"], "w"))
"""


def test_logs_json_is_one_object_per_line_with_its_offset(cli, ready_project):
    cli("project", "add", ready_project({"benchmarks/r.py": RESULTS}))
    assert cli("run", "proj", "r.py", "--wait")[0] == 0
    code, out, err = cli("logs", "1", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["line"] for x in lines] == ["first", "bad \ufffd bytes", "last, no newline"]
    assert [x["offset"] for x in lines] == [0, 6, 6 + len(b"bad \xff bytes\r\n")]
    code, out, _ = cli("logs", "1", "--json", "-n", "1")
    assert json.loads(out) == {"offset": 6 + len(b"bad \xff bytes\r\n"), "line": "last, no newline"}


def test_jobs_json_has_the_inputs_and_each_metrics_unit_and_direction(cli, ready_project):
    cli("project", "add", ready_project({"benchmarks/r.py": RESULTS}))
    assert cli("run", "proj", "r.py", "--wait", "--arg", "x y", "--timeout", "60")[0] == 0
    (job,) = json.loads(cli("jobs", "--json")[1])
    assert job["args"] == ["x y"] and job["timeout_s"] == 60 and job["position"] is None
    assert "r.py" in job["command"] and os.path.isdir(job["workdir"])
    assert job["metrics"] == {"score": 0.5, "time": 1.5, "acc": 0.9}
    assert job["metric_units"] == {"score": None, "time": "s", "acc": None}
    assert job["metric_directions"] == {"score": None, "time": "lower", "acc": "higher"}


def test_cancel_says_what_happened(cli, ready_project):
    cli("project", "add", ready_project({"benchmarks/a.py": ""}))
    cli("queue", "pause")
    cli("run", "proj", "a.py")
    assert cli("cancel", "1") == (0, "job 1 cancelled\n", "")


def test_tables_fit_the_terminal_and_mark_every_cut(cli, ready_project, monkeypatch):
    long = "a_benchmark_with_a_rather_long_name_indeed.py"
    cli("project", "add", ready_project({f"benchmarks/{long}": "raise SystemExit('x' * 300)\n"}))
    cli("run", "proj", long, "--wait")
    _, wide, _ = cli("jobs")
    assert long in wide and max(map(len, wide.splitlines())) > 300  # a pipe gets whole values
    monkeypatch.setenv("COLUMNS", "80")
    _, out, _ = cli("jobs")
    rows = out.splitlines()
    assert all(len(r) <= 80 for r in rows), rows
    assert rows[1].count("…") == 2 and long not in out  # the name and the error, each cut visibly
    assert rows[1].split()[2].endswith("…") and long.startswith(rows[1].split()[2][:-1])


def test_logs_follow_waits_for_a_queued_job_and_ends_with_its_status(cli, ready_project, tmp_path):
    cli("project", "add", ready_project({"benchmarks/ok.py": "print('fine')\n",
                                        "benchmarks/bad.py": "print('oops')\nraise SystemExit(3)\n"}))
    cli("queue", "pause")
    cli("run", "proj", "ok.py", "bad.py")
    procs = [subprocess.Popen(evopilot_cmd("logs", i, "-f"), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    try:
        for i, p in enumerate(procs, 1):  # each says it waits before anything starts the jobs
            assert p.stderr.readline() == f"evopilot: job {i} is queued: waiting for it to start\n"
        assert all(p.poll() is None for p in procs)
        assert cli("queue", "resume")[0] == 0
        worker = subprocess.Popen(evopilot_cmd("worker"), cwd=REPO, stdout=subprocess.DEVNULL)
        try:
            results = [p.communicate(timeout=60) for p in procs]
        finally:
            stop_process(worker)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert results[0] == ("fine\n", "evopilot: job 1 succeeded, exit code 0\n") and procs[0].returncode == 0
    assert results[1] == ("oops\n", "evopilot: job 2 failed, exit code 3\n") and procs[1].returncode == 1
