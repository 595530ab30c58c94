"""Names, paths and arguments with shell metacharacters run as data, never as shell."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from evopilot.core.hosts import probe
from evopilot.core.jobs import scripts
from evopilot.core.quoting import join, quote
from tests.conftest import REPO

EVIL = ["'; touch {c} #", "$(touch {c})", "`touch {c}`", "a\ntouch {c}", '"; touch {c}; "', "&& touch {c}"]


@pytest.mark.parametrize("evil", EVIL)
def test_quote_round_trips_through_bash(evil, tmp_path):
    canary = tmp_path / "canary"
    word = evil.format(c=canary)
    out = subprocess.run(["bash", "-c", f"printf '%s' {quote(word)}"], capture_output=True, text=True).stdout
    assert out == word
    assert not canary.exists()


def test_join_quotes_every_word():
    assert join(["echo", "a b", "$(x)"]) == "echo 'a b' '$(x)'"


def test_quoting_module_is_the_only_quoter():
    """No other module of the package quotes shell words its own way."""
    pattern = r"\bshlex\b|\bpipes\.quote\b|\blist2cmdline\b"
    offenders = subprocess.run(["git", "grep", "-nE", pattern, "--", "core", "tui", ":!core/quoting.py"],
                               capture_output=True, text=True, cwd=REPO).stdout
    assert offenders == ""


def test_scripts_quote_paths(tmp_path):
    canary = tmp_path / "canary"
    bad_dir = str(tmp_path / "d'; touch {c} #".format(c=canary))
    script = probe.probe([(1, bad_dir, "s")]) + scripts.signal(job_dir=bad_dir, sig="INT")
    subprocess.run(["bash", "-c", script], capture_output=True)
    assert not canary.exists()


def test_hostile_names_and_arguments_run_as_data(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    canary = tmp_path / "canary"
    root = tmp_path / "proj"
    evil_file = "bench_$(touch CANARY).py"  # runs in the project dir, if it ever runs
    (root / "benchmarks").mkdir(parents=True)
    (root / "benchmarks" / evil_file).write_text("import sys\nprint('ARGS', sys.argv[1:])\n")
    project_name = "p'; touch CANARY #"
    code, _, err = cli("project", "add", root, "--name", project_name)
    assert code == 0, err
    args = [a.format(c=canary) for a in EVIL]
    argv = ["run", project_name, evil_file, "--wait"]
    for a in args:
        argv += ["--arg", a]
    code, _, err = cli(*argv)
    assert code == 0, err
    setup, job = json.loads(cli("jobs", "--json")[1])
    assert setup["status"] == "succeeded" and setup["project"] == project_name
    assert job["status"] == "succeeded" and job["project"] == project_name
    log = Path(job["log_path"]).read_text()
    assert f"ARGS {args!r}" in log
    assert not canary.exists() and not (root / "CANARY").exists() and not (tmp_path / "CANARY").exists()
