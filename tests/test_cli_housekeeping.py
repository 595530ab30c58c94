"""Housekeeping: `bench rm`, and `clean` removing finished jobs' rows and directories (never a
queued or running job) and saying what it freed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evopilot.core.jobs.clean import parse_age, parse_statuses
from evopilot.core.errors import EvopilotError


def jobs(cli) -> list[dict]:
    return json.loads(cli("jobs", "--json")[1])


def test_bench_rm_removes_the_benchmark_and_keeps_its_jobs(cli, ready_project):
    cli("project", "add", ready_project({"benchmarks/a.py": "", "benchmarks/b.py": ""}))
    assert cli("run", "proj", "a.py", "--wait")[0] == 0
    assert cli("bench", "rm", "proj", "a.py") == (0, "removed benchmark benchmarks/a.py from proj (its jobs are kept)\n", "")
    assert [b["path"] for b in json.loads(cli("bench", "list", "--json")[1])] == ["benchmarks/b.py"]
    assert [j["benchmark"] for j in jobs(cli)] == ["a.py"]
    code, _, err = cli("bench", "rm", "proj", "a.py")
    assert code == 2 and "no benchmark 'a.py' in project proj" in err
    code, _, err = cli("bench", "rm", "nosuch", "b.py")
    assert code == 2 and "no project named 'nosuch'" in err


def test_clean_removes_finished_jobs_and_their_directories(cli, ready_project):
    cli("project", "add", ready_project({"benchmarks/ok.py": "print('x' * 5000)\n",
                                        "benchmarks/bad.py": "raise SystemExit(1)\n",
                                        "benchmarks/later.py": ""}))
    assert cli("run", "proj", "ok.py", "bad.py", "--wait")[0] == 1
    cli("queue", "pause")
    cli("run", "proj", "later.py")
    dirs = {j["id"]: Path(j["log_path"]).parent for j in jobs(cli) if j["log_path"]}
    assert all(d.is_dir() for d in dirs.values()) and len(dirs) == 2
    assert cli("clean", "--older-than", "7d") == (0, "nothing to clean\n", "")
    code, out, err = cli("clean", "--status", "succeeded", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["jobs"] == [1] and report["directories"] == 1 and report["bytes"] > 5000
    assert report["logs"] == 0 and report["kept"] == []
    assert not dirs[1].exists() and dirs[2].is_dir()
    assert [(j["id"], j["status"]) for j in jobs(cli)] == [(2, "failed"), (3, "queued")]
    code, out, _ = cli("clean")
    assert code == 0 and out.startswith("removed 1 finished job(s), 1 job directory and 0 log copies: ")
    assert out.rstrip().endswith("freed") and not dirs[2].exists()
    assert [(j["id"], j["status"]) for j in jobs(cli)] == [(3, "queued")]  # never a queued job
    code, _, err = cli("clean", "--status", "queued")
    assert code == 2 and "--status queued: not finished" in err
    assert [j["id"] for j in jobs(cli)] == [3]


def test_ages_and_statuses_parse_or_say_why():
    assert parse_age("7d") == 7 * 86400 and parse_age("1.5h") == 5400 and parse_age("30m") == 1800
    with pytest.raises(EvopilotError, match="expected a number and a unit"):
        parse_age("7 days")
    assert parse_statuses(["succeeded,failed", "lost"]) == ["succeeded", "failed", "lost"]
    assert parse_statuses(None) == ["cancelled", "failed", "killed", "lost", "succeeded"]
    with pytest.raises(EvopilotError, match="--status done: not a status"):
        parse_statuses(["done"])
