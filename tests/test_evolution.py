"""Code evolution end to end, as a user runs it: a real git repository, real evaluation jobs in
tmux, the offline `params` mutator, the CLI."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, evopilot_cmd, wait_until

EXAMPLE = REPO / "examples" / "evolve"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def make_repo(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*GIT, "commit", "-qm", "seed"], cwd=dest, check=True)
    return dest


def experiment(root: Path, **changes: str) -> Path:
    """The example's experiment file with some lines replaced (key = new TOML text)."""
    text = (root / "experiment.toml").read_text()
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(changes.pop(key) if key in changes and "=" in line else line)
    assert not changes, f"keys not in the file: {changes}"
    path = root.parent / f"{root.name}-exp.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def git_state(root: Path) -> tuple[str, ...]:
    def out(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout
    return (out("rev-parse", "HEAD"), out("branch", "--list"), out("status", "--porcelain"),
            out("diff"), out("stash", "list"))


@pytest.fixture
def evo(cli, tmp_path):
    root = make_repo(tmp_path / "evolve-demo")
    (tmp_path / "evopilot.toml").write_text("[engine]\npoll_interval = 0.1\n")
    code, _, err = cli("project", "add", root, "--config", tmp_path / "evopilot.toml")
    assert code == 0, err

    def run(*args):
        return cli(*args, "--config", tmp_path / "evopilot.toml")

    run.root = root
    return run


def status(run, exp="1") -> dict:
    code, out, err = run("evolve", "status", exp, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.slow
def test_evolve_improves_over_the_seed_and_leaves_the_checkout_alone(evo):
    (evo.root / "notes.txt").write_text("uncommitted work\n")  # the user's dirty working tree
    before = git_state(evo.root)
    code, out, err = evo("evolve", "start", experiment(evo.root), "--iterations", "16", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 16
    seed = [c for c in json.loads(evo("evolve", "export", "1")[1]) if c["iteration"] == 0][0]
    assert st["best"]["objective"] > seed["objective"], "params mutation improved the fit"
    assert 0 < st["coverage"] <= 1 and st["qd_score"] != 0
    assert git_state(evo.root) == before, "the user's HEAD, branches, index and tree are untouched"
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/evopilot/"], cwd=evo.root,
                          capture_output=True, text=True, check=True).stdout.split()
    candidates = [c for c in json.loads(evo("evolve", "export", "1")[1]) if c["iteration"]]
    assert len(refs) == 1 + len(candidates), "each candidate (and the seed) is kept by a ref of ours"

    best = st["best"]["commit"]
    code, out, err = evo("evolve", "show", best[:10], "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["objective"] == st["best"]["objective"]
    assert {m["name"] for m in shown["metrics"]} >= {"objective", "bias", "max_error"}
    if shown["iteration"]:
        assert shown["diff"].startswith("diff --git a/approx.py") and shown["prompt"] and shown["answer"]
        msg = subprocess.run(["git", "log", "-1", "--format=%B", best], cwd=evo.root, capture_output=True,
                             text=True, check=True).stdout
        assert f"Evopilot-Parent: {shown['parent']}" in msg and "Evopilot-Mutator: params" in msg

    code, out, err = evo("evolve", "best", "approx-sin", "--branch", "best-fit")
    assert code == 0, err
    head = subprocess.run(["git", "rev-parse", "best-fit"], cwd=evo.root, capture_output=True, text=True).stdout
    assert head.strip() == best

    grid = json.loads(evo("evolve", "archive", "1", "--island", "0", "--json")[1])
    assert grid["bins"] == [8, 8] and grid["descriptors"] == ["bias", "max_error"] and grid["cells"]
    code, out, _ = evo("evolve", "archive", "1", "--island", "0")
    rows = [line for line in out.splitlines() if line.startswith("|")]
    assert code == 0 and len(rows) == 8 and all(len(r) == 2 + 16 for r in rows)
    assert sum(r.count("@") for r in rows) >= 2, "the island's best cell is drawn with the top of the ramp"
    code, _, err = evo("evolve", "archive", "1", "--island", "5")
    assert code == 2 and "islands 0..1" in err

    code, out, _ = evo("evolve", "export", "1", "--format", "csv")
    assert out.splitlines()[0].startswith("commit,parent,iteration,island,status,objective")
    assert len(out.splitlines()) == 1 + len(candidates) + 1

    # the same file again is the same experiment: it resumes (nothing left to do)
    code, out, err = evo("evolve", "start", experiment(evo.root), "--iterations", "16", "--json")
    assert code == 0 and json.loads(out)["id"] == 1
    assert len(json.loads(evo("evolve", "list", "--json")[1])) == 1


def tree_hashes(home: Path) -> list[str]:
    with sqlite3.connect(home / "evopilot.db") as db:
        return [r[0] for r in db.execute(
            "SELECT c.tree_hash FROM evolution_iterations i JOIN commits c ON c.commit_hash = i.candidate_hash "
            "AND c.experiment_id = i.experiment_id WHERE i.number > 0 ORDER BY i.number")]


@pytest.mark.slow
def test_same_seed_same_candidates(cli, tmp_path, monkeypatch):
    runs = []
    for name in ("a", "b"):
        home = tmp_path / f"home-{name}"
        monkeypatch.setenv("EVOPILOT_HOME", str(home))
        root = make_repo(tmp_path / name / "evolve-demo")
        assert cli("project", "add", root)[0] == 0
        exp = experiment(root, parallel="parallel = 1")
        code, _, err = cli("evolve", "start", exp, "--iterations", "10")
        assert code == 0, err
        runs.append(tree_hashes(home))
    assert len(runs[0]) == 10 and runs[0] == runs[1]


@pytest.mark.slow
def test_budget_minutes_stops_the_run_and_says_which(evo):
    code, out, err = evo("evolve", "start", experiment(evo.root, minutes="minutes = 0.02"),
                         "--iterations", "1000", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["stop_reason"].startswith("budget: 0.02 minutes")
    assert st["iterations_done"] < 1000


def test_bad_experiment_files_are_one_line_errors(evo, tmp_path):
    code, _, err = evo("evolve", "start", tmp_path / "missing.toml")
    assert code == 2 and "no such experiment file" in err and len(err.strip().splitlines()) == 1
    code, _, err = evo("evolve", "start", experiment(evo.root, bins="bins = [8]"))
    assert code == 2 and "bins has 1 entries for 2 descriptor dimensions" in err
    code, _, err = evo("evolve", "start", experiment(evo.root, project='project = "nosuch"'))
    assert code == 2 and "no project named 'nosuch'" in err
    code, _, err = evo("evolve", "start", experiment(evo.root, files='files = ["nope.py"]'))
    assert code == 2 and "nope.py: not in commit" in err
    code, _, err = evo("evolve", "show", "abcdef12")
    assert code == 2 and "no candidate commit" in err


@pytest.mark.slow
def test_kill_9_then_resume_repeats_and_loses_nothing(evo, home):
    exp = experiment(evo.root)
    proc = subprocess.Popen(evopilot_cmd("evolve", "start", exp, "--iterations", "30",
                                         "--config", evo.root.parent / "evopilot.toml"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def applied() -> int:
        try:
            with sqlite3.connect(home / "evopilot.db") as db:
                row = db.execute("SELECT count(*) FROM evolution_iterations WHERE status IN "
                                 "('placed', 'skipped', 'failed')").fetchone()
            return row[0]
        except sqlite3.Error:
            return 0

    wait_until(lambda: applied() >= 8, 60, "8 iterations applied")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, out, err = evo("evolve", "resume", "approx-sin", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 30
    with sqlite3.connect(home / "evopilot.db") as db:
        numbers = [r[0] for r in db.execute("SELECT number FROM evolution_iterations ORDER BY number")]
        commits = [r[0] for r in db.execute("SELECT commit_hash FROM commits")]
        evals = db.execute("SELECT origin_id, count(*) FROM jobs WHERE kind = 'evaluation' "
                           "GROUP BY origin_id HAVING count(*) > 1").fetchall()
    assert numbers == list(range(31)), "every iteration once, none lost"
    assert len(commits) == len(set(commits)), "nothing committed twice"
    assert evals == [], "no candidate evaluated twice"
    # the archive the resumed run saved equals one rebuilt from the database alone
    check = subprocess.run([sys.executable, "-c", REBUILD], cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "equal"


REBUILD = """
import asyncio
from evopilot.core import locations
from evopilot.core.config import load_config
from evopilot.core.db import evolution as evo_db
from evopilot.core.engine import Engine
from evopilot.core.evolution.experiment import parse_experiment
from evopilot.core.evolution.loop import rebuild

async def main():
    engine = await Engine.open(load_config(), locations.data_home())
    row = await evo_db.get_experiment(engine.db, 1)
    state = await rebuild(engine.db, row, parse_experiment(row.config_snapshot))
    saved = await evo_db.snapshots(engine.db, row.id)
    same = all(state.snapshot(i) == saved[i] for i in range(len(state.archives)))
    print("equal" if same and state.applied == saved[-1]["applied"] else f"differ: {state.applied}")
    await engine.close()

asyncio.run(main())
"""


@pytest.mark.slow
def test_cascade_filters_below_the_threshold_and_failed_evaluations_keep_their_reason(evo):
    # a second, "expensive" stage that fails for candidates whose C went positive
    full = (evo.root / "benchmarks" / "fit.py").read_text().replace(
        "N = 200", "N = 400\nimport approx as module\nif module.C > -0.45:\n    raise SystemExit('C must stay below -0.45')")
    (evo.root / "benchmarks" / "full.py").write_text(full)
    subprocess.run([*GIT, "add", "-A"], cwd=evo.root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "full stage"], cwd=evo.root, check=True)
    assert evo("bench", "add", "evolve-demo", "benchmarks/full.py")[0] == 0
    stages = ('stages = [{ benchmark = "benchmarks/fit.py", threshold = -0.65 }, '
              '{ benchmark = "benchmarks/full.py" }]')
    code, out, err = evo("evolve", "start", experiment(evo.root, stages=stages), "--iterations", "24", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 24
    with sqlite3.connect(evo.root.parent / "home" / "evopilot.db") as db:
        its = db.execute("SELECT number, status, stage, last_error FROM evolution_iterations").fetchall()
        stage2 = db.execute("SELECT count(*) FROM jobs WHERE kind = 'evaluation' "
                            "AND benchmark_path = 'benchmarks/full.py'").fetchone()[0]
    filtered = [i for i in its if i[1] == "skipped" and (i[3] or "").startswith("filtered at stage 1")]
    assert filtered and filtered[0][0] == 0, "the seed (mse 0.71) does not pass the first stage"
    placed = [i for i in its if i[1] == "placed"]
    assert placed and all(i[2] == 1 for i in placed), "placed candidates went through both stages"
    failed_full = [i for i in its if i[1] == "failed" and i[2] == 1]
    assert failed_full and stage2 == len(placed) + len(failed_full)
    for _, _, _, error in failed_full:  # recorded with the reason, and not retried
        assert re.fullmatch(r"evaluation job \d+ failed: C must stay below -0.45", error)


def test_novelty_rejection_skips_children_too_close_to_earlier_ones(evo):
    exp = experiment(evo.root, metrics="embedding = 2", bins="bins = [4, 4]", lower="warmup = 3",
                     upper="", seed="seed = 1\nnovelty_threshold = 10.0")
    code, out, err = evo("evolve", "start", exp, "--iterations", "6", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["iterations_done"] == 6 and st["counts"] == {"skipped": 6}
    with sqlite3.connect(evo.root.parent / "home" / "evopilot.db") as db:
        errors = [r[0] for r in db.execute("SELECT last_error FROM evolution_iterations WHERE number > 0")]
        evaluations = db.execute("SELECT count(*) FROM jobs WHERE kind = 'evaluation'").fetchone()[0]
    assert all(e.startswith("too close to an earlier candidate") for e in errors)
    assert evaluations == 1, "only the seed was evaluated: rejected children cost no evaluation"


def test_a_mutator_that_cannot_work_at_all_ends_the_run_with_its_reason(evo, monkeypatch):
    monkeypatch.delenv("EVP_TEST_NO_KEY", raising=False)
    exp = experiment(evo.root, kind='kind = "llm"\nmodel = "m"\napi_key_env = "EVP_TEST_NO_KEY"',
                     changes="", scale="")
    code, _, err = evo("evolve", "start", exp, "--iterations", "4")
    assert code == 2 and "$EVP_TEST_NO_KEY, which is not set" in err and len(err.strip().splitlines()) == 1
    st = status(evo)
    assert st["state"] == "failed" and "EVP_TEST_NO_KEY" in st["stop_reason"]
