"""Code evolution beyond the params mutator, through the CLI as a user drives it: the llm mutator
against a local stand-in for a paid API, budget caps in dollars and requests, identical children
skipped before evaluation, a command mutator that is a real script editing its worktree,
evaluations on an SSH host, detached runs, stop and resume. And the search state's migration and
parent sampling, as units."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from evopilot.core.evolution.experiment import Experiment
from evopilot.core.evolution.search import Candidate, SearchState
from tests.chat_api import FakeChatApi, completion
from tests.conftest import REPO, evopilot_cmd, wait_until
from tests.test_evolution import GIT, experiment, git_state, make_repo, status
from tests.test_evolution import evo  # noqa: F401  (a fixture)
from tests.test_remote_jobs import host_toml

PRICE_IN, PRICE_OUT = 2.0, 8.0  # $ per million tokens, in the experiment's price table
TOKENS_IN, TOKENS_OUT = 1200, 300  # what the stand-in reports per answer
REQUEST_DOLLARS = (TOKENS_IN * PRICE_IN + TOKENS_OUT * PRICE_OUT) / 1e6  # 0.0048


def write_experiment(root: Path, *, mutators: str, budget: str, top: str = "", **changes: str) -> Path:
    """The example's experiment with other mutators, budget and top-level keys (``top``), and
    some lines replaced as ``experiment`` does."""
    path = experiment(root, **changes)
    text = path.read_text()
    path.write_text(top + text[:text.index("[[mutators]]")] + mutators + "\n" + budget + "\n")
    return path


def llm_mutator(api: FakeChatApi) -> str:
    return (f'[[mutators]]\nkind = "llm"\nbase_url = "{api.url}"\nmodel = "m1"\n'
            f'api_key_env = "EVOPILOT_TEST_LLM_KEY"\nbackoff_s = 0.05\n'
            f'prices = {{ m1 = {{ input_per_mtok = {PRICE_IN}, output_per_mtok = {PRICE_OUT} }} }}\n')


def nudge_a(body: dict):
    """A stand-in model: a SEARCH/REPLACE block moving approx.py's A by an amount the request's
    seed decides (so a run does not depend on which request comes first); one per choice asked
    for (``n``), each by another amount."""
    prompt = body["messages"][-1]["content"]
    current = re.search(r"^A = (\S+)$", prompt, re.M).group(1)
    answers = []
    for seed in range(body["seed"], body["seed"] + body.get("n", 1)):
        step = (seed % 9 + 1) / 100 * (1 if seed % 2 else -1)
        answers.append(f"Move A by {step:+.2f}.\napprox.py\n<<<<<<< SEARCH\nA = {current}\n=======\n"
                       f"A = {float(current) + step:.4f}\n>>>>>>> REPLACE\n")
    return completion(answers, TOKENS_IN, TOKENS_OUT)


@pytest.fixture
def chat_api(monkeypatch):
    monkeypatch.setenv("EVOPILOT_TEST_LLM_KEY", "sk-test-456")
    servers: list[FakeChatApi] = []

    def start(replies) -> FakeChatApi:
        servers.append(FakeChatApi(replies))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def db_rows(home: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(home / "evopilot.db") as db:
        return db.execute(sql, args).fetchall()


def jobs(run) -> list[dict]:
    code, out, err = run("jobs", "--json")
    assert code == 0, err
    return json.loads(out)


def slow_benchmark(root: Path, seconds: float) -> None:
    """Make the example's evaluation take ``seconds`` (committed: evaluations run on commits)."""
    fit = root / "benchmarks" / "fit.py"
    fit.write_text(fit.read_text().replace("N = 200\n", f"N = 200\nimport time\ntime.sleep({seconds})\n"))
    subprocess.run([*GIT, "commit", "-qam", "slower evaluation"], cwd=root, check=True)


# --- the llm mutator and budgets --------------------------------------------------------------


@pytest.mark.slow
def test_llm_mutator_end_to_end_spend_per_model_prompt_and_answer(evo, chat_api):
    api = chat_api(nudge_a)
    exp = write_experiment(evo.root, mutators=llm_mutator(api), budget="[budget]\niterations = 8\n")
    code, out, err = evo("evolve", "start", exp, "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 8
    assert st["counts"].get("failed", 0) == 0

    n = len(api.requests)
    assert n == 8, "one request per iteration"
    for path, headers, body in api.requests:
        assert path == "/v1/chat/completions" and headers["authorization"] == "Bearer sk-test-456"
        assert body["model"] == "m1" and "approx.py" in body["messages"][-1]["content"]
    [spend] = st["spend"]
    assert spend["provider"] == api.url.split("/")[2] and spend["model"] == "m1"
    assert (spend["tokens_in"], spend["tokens_out"], spend["requests"]) == (n * TOKENS_IN, n * TOKENS_OUT, n)
    assert spend["dollars"] == pytest.approx(n * REQUEST_DOLLARS) and st["dollars"] == pytest.approx(spend["dollars"])

    candidates = [c for c in json.loads(evo("evolve", "export", "1")[1]) if c["iteration"]]
    assert candidates and all(c["mutator"] == "llm" for c in candidates)
    assert all(c["cost"] == pytest.approx(REQUEST_DOLLARS) for c in candidates)
    assert sum(c["status"] == "placed" for c in candidates) >= 1

    cand = candidates[0]
    code, out, err = evo("evolve", "show", cand["commit"][:12])
    assert code == 0, err
    assert f"mutator llm  cost ${REQUEST_DOLLARS:.4f}" in out
    diff, rest = out.split("--- diff ---\n", 1)[1].split("\n--- prompt ---\n")
    prompt, answer = (part.rstrip() for part in rest.split("\n--- answer ---\n"))
    assert re.search(r"^-A = 0\.5\n\+A = 0\.\d+$", diff, re.M), diff
    prompts = [body["messages"][-1]["content"].rstrip() for _, _, body in api.requests]
    assert prompt in prompts, "the prompt shown is the one the model was sent"
    assert prompt.startswith("You improve a program") and "A = 0.5" in prompt
    assert answer.startswith("Move A by") and "<<<<<<< SEARCH\nA = 0.5\n" in answer, \
        "the answer shown is the model's own text"


def test_llm_choices_answer_a_group_of_iterations_with_one_request(evo, chat_api, home):
    """``choices = 2``: iterations are planned in pairs sharing a parent, island and prompt, and
    one request (``n = 2``) answers both; the request is counted once and its cost is shared.
    The last group, cut short by the run's 7 iterations, asks for one answer only."""
    api = chat_api(nudge_a)
    exp = write_experiment(evo.root, mutators=llm_mutator(api) + "choices = 2\n",
                           budget="[budget]\niterations = 7\n")
    code, out, err = evo("evolve", "start", exp, "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 7
    assert st["counts"].get("failed", 0) == 0
    assert sorted(body.get("n", 1) for _, _, body in api.requests) == [1, 2, 2, 2]
    [spend] = st["spend"]
    assert (spend["tokens_in"], spend["tokens_out"], spend["requests"]) == (4 * TOKENS_IN, 4 * TOKENS_OUT, 4)
    assert spend["dollars"] == pytest.approx(4 * REQUEST_DOLLARS)

    its = db_rows(home, "SELECT number, base_commit_hash, island, payload, candidate_hash FROM "
                        "evolution_iterations WHERE number > 0 ORDER BY number")
    assert [n for n, *_ in its] == list(range(1, 8))
    for first, second in zip(its[:6:2], its[1:6:2]):
        assert first[1:3] == second[1:3], "a pair shares its parent and island"
        assert json.loads(first[3])["prompt"] == json.loads(second[3])["prompt"]
        assert json.loads(second[3])["leader"] == first[0]
        assert first[4] != second[4], "each choice is a candidate of its own"
    assert "leader" not in json.loads(its[6][3]) and "choices" not in json.loads(its[6][3])
    sent = [body["messages"][-1]["content"] for _, _, body in api.requests]
    assert sorted(json.loads(p)["prompt"] for _, _, _, p, _ in its[::2]) == sorted(sent)
    costs = {c["iteration"]: c["cost"] for c in json.loads(evo("evolve", "export", "1")[1]) if c["iteration"]}
    assert costs and costs == pytest.approx({n: REQUEST_DOLLARS / (1 if n == 7 else 2) for n in costs})


@pytest.mark.parametrize("cap, budget, reason", [
    ("dollars", "dollars = 0.02\nrequests = 8", "budget: $0.02 reached"),
    ("requests", "dollars = 1.0\nrequests = 3", "budget: 3 requests reached"),
])
def test_budget_caps_in_dollars_and_requests_stop_at_the_first_reached(evo, chat_api, cap, budget, reason):
    api = chat_api(nudge_a)
    # one mutation at a time: the run may not start another once the cap is reached
    exp = write_experiment(evo.root, mutators=llm_mutator(api), top="mutations_in_flight = 1\n",
                           budget=f"[budget]\niterations = 1000\nminutes = 5\n{budget}\n")
    code, out, err = evo("evolve", "start", exp, "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["stop_reason"].startswith(reason), st["stop_reason"]
    expected = 5 if cap == "dollars" else 3  # 5 * $0.0048 is the first spend >= $0.02
    assert len(api.requests) == expected
    [spend] = st["spend"]
    assert spend["requests"] == expected and spend["dollars"] == pytest.approx(expected * REQUEST_DOLLARS)
    # what was paid for was evaluated; nothing else was started
    assert st["iterations_done"] == expected and st["counts"].get("evaluating", 0) == 0
    assert st["counts"].get("mutated", 0) == 0


def test_identical_child_is_skipped_before_evaluation(evo, chat_api, home):
    same = completion("Lower A.\napprox.py\n<<<<<<< SEARCH\nA = 0.5\n=======\nA = 0.25\n>>>>>>> REPLACE\n")
    api = chat_api([same])
    # the window (parallel 2 + 4 mutations in flight) plans all six from the seed, and four
    # mutate at once: their children are one tree
    exp = write_experiment(evo.root, mutators=llm_mutator(api), budget="[budget]\niterations = 6\n")
    code, out, err = evo("evolve", "start", exp, "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "finished" and len(api.requests) == 6
    its = db_rows(home, "SELECT id, number, status, last_error, base_commit_hash FROM evolution_iterations "
                        "ORDER BY number")
    seed_hash = its[0][4]
    assert all(base == seed_hash for *_, base in its), "every child has the seed as its parent"
    placed = [it for it in its[1:] if it[2] == "placed"]
    skipped = [it for it in its[1:] if it[2] == "skipped"]
    assert len(placed) == 1 and len(skipped) == 5, its
    assert {it[3] for it in skipped} == {"identical to a candidate already seen"}
    evaluated = {j["origin_id"] for j in jobs(evo) if j["kind"] == "evaluation"}
    assert evaluated == {its[0][0], placed[0][0]}, "only the seed and one of the twins were evaluated"
    assert not evaluated & {it[0] for it in skipped}


# --- the command mutator: a real script editing its worktree ----------------------------------

AGENT = r'''
import json, os, random, re, subprocess, sys
from pathlib import Path

prompt_file, workdir = sys.argv[1], sys.argv[2]
# not `git worktree list`: it reads every worktree's admin directory, and fails half-way while
# evopilot adds another slot's worktree (see gitops._worktree_lock)
git = subprocess.run(["git", "rev-parse", "--show-toplevel", "--git-common-dir"], capture_output=True, text=True).stdout
branch = subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], capture_output=True, text=True).stdout
with open(RECORD, "a") as f:
    f.write(json.dumps({"cwd": os.getcwd(), "workdir": workdir, "git": git.split("\n")[:2], "branch": branch}) + "\n")
assert "Goal: make the metric 'objective' higher" in Path(prompt_file).read_text()
try:
    os.mkdir(FAIL_ONCE)
except FileExistsError:
    pass
else:
    raise RuntimeError("the agent ran out of credits")
src = Path(workdir, "approx.py").read_text()
b = float(re.search(r"^B = (\S+)$", src, re.M).group(1))
Path(workdir, "approx.py").write_text(re.sub(r"^B = \S+$", f"B = {b + random.uniform(-0.2, 0.2):.6f}", src, flags=re.M))
print("Nudged B at random.")
print(json.dumps({"type": "result", "usage": {"input_tokens": 10, "output_tokens": 5}, "total_cost_usd": 0.01}))
'''


@pytest.mark.slow
def test_command_mutator_script_edits_its_worktree_and_one_failure_is_one_failed_iteration(evo, tmp_path, home):
    record, fail_once = tmp_path / "agent-runs.jsonl", tmp_path / "failed-once"
    script = tmp_path / "agent.py"
    script.write_text(f"RECORD = {str(record)!r}\nFAIL_ONCE = {str(fail_once)!r}\n" + AGENT)
    (evo.root / "notes.txt").write_text("uncommitted work\n")  # the user's dirty working tree
    before = git_state(evo.root)
    mutator = (f'[[mutators]]\nkind = "command"\ntemplate = "python3 {script} {{prompt_file}} {{workdir}}"\n'
               f'usage = "json"\ntimeout_s = 60\n')
    exp = write_experiment(evo.root, mutators=mutator, budget="[budget]\niterations = 8\n")
    code, out, err = evo("evolve", "start", exp, "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 8

    failed = db_rows(home, "SELECT number, last_error FROM evolution_iterations WHERE status = 'failed'")
    assert len(failed) == 1, failed
    assert re.match(r"mutation job \d+ failed: .*RuntimeError: the agent ran out of credits", failed[0][1]), failed
    mutation_jobs = [j for j in jobs(evo) if j["kind"] == "mutation"]
    assert len(mutation_jobs) == 8 and sum(j["status"] == "failed" for j in mutation_jobs) == 1

    candidates = [c for c in json.loads(evo("evolve", "export", "1")[1]) if c["iteration"]]
    assert len(candidates) == 7 and all(c["mutator"] == "command" for c in candidates)
    assert all(c["cost"] == pytest.approx(0.01) for c in candidates)
    assert sum(c["status"] == "placed" for c in candidates) == 7
    [spend] = st["spend"]
    assert (spend["provider"], spend["tokens_in"], spend["tokens_out"], spend["requests"]) == ("command", 70, 35, 7)
    assert spend["dollars"] == pytest.approx(0.07)
    shown = json.loads(evo("evolve", "show", candidates[0]["commit"], "--json")[1])
    assert re.search(r"^\+B = ", shown["diff"], re.M) and "Nudged B at random." in shown["answer"]
    assert "Evopilot-Mutator: command" in shown["message"] and "Evopilot-Cost: 0.010000" in shown["message"]

    # the agents ran in worktrees of the user's repository under the data directory ...
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(runs) == 8
    slots = {r["workdir"] for r in runs}
    for r in runs:
        assert r["cwd"] == r["workdir"] and Path(r["workdir"]).is_relative_to(home / "evolution")
        # a worktree of the user's repository, on no branch of theirs
        assert r["git"] == [r["workdir"], str(evo.root / ".git")] and r["branch"] == "", r
    # ... which are gone once the experiment has finished, leaving the user's checkout as it was
    assert not any(Path(s).exists() for s in slots)
    listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=evo.root, capture_output=True,
                            text=True, check=True).stdout
    assert [line for line in listed.splitlines() if line.startswith("worktree ")] == [f"worktree {evo.root}"]
    assert git_state(evo.root) == before

    # more iterations of the same experiment make its worktrees again, and give them back again
    code, out, err = evo("evolve", "start", exp, "--iterations", "10", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["id"] == 1 and st["state"] == "finished" and st["iterations_done"] == 10
    assert st["counts"]["placed"] == 9
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(runs) == 10 and not any(Path(r["workdir"]).exists() for r in runs)
    assert git_state(evo.root) == before


# --- evaluations on an SSH host ---------------------------------------------------------------


@pytest.mark.slow
def test_two_evaluations_at_once_on_an_ssh_host(cli, tmp_path, sshd):
    root = make_repo(tmp_path / "evolve-demo")
    slow_benchmark(root, 1.5)
    cfg = tmp_path / "evopilot.toml"
    cfg.write_text("[engine]\nremote_poll_interval = 0.2\npoll_interval = 0.1\n" + host_toml("h1", sshd))

    def run(*args):
        return cli(*args, "--config", cfg)

    assert run("project", "add", root)[0] == 0
    exp = experiment(root, timeout_s='timeout_s = 120\nhosts = ["h1"]', parallel="parallel = 2")
    code, out, err = run("evolve", "start", exp, "--iterations", "4", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 4
    assert st["counts"].get("placed", 0) >= 1 and st["best"] is not None

    evals = [j for j in jobs(run) if j["kind"] == "evaluation"]
    assert len(evals) >= 3 and all(j["host"] == "h1" and j["status"] == "succeeded" for j in evals)
    assert all(j["commit"] for j in evals)
    spans = [(datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"])) for j in evals]
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, f"two evaluations ran on h1 at the same time: {spans}"


# --- detached runs, stop and resume -----------------------------------------------------------


def test_detached_experiment_is_run_to_the_end_by_a_worker(evo):
    code, out, err = evo("evolve", "start", experiment(evo.root), "--iterations", "6", "--detach", "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "running" and json.loads(out)["iterations_done"] == 0
    code, _, err = evo("worker", "--until-idle")
    assert code == 0, err
    st = status(evo)
    assert st["state"] == "finished" and st["iterations_done"] == 6 and st["stop_reason"] == "6 iterations done"


@pytest.mark.slow
def test_evolve_stop_from_another_process_then_resume_finishes(evo, home):
    slow_benchmark(evo.root, 0.3)
    exp = experiment(evo.root)
    proc = subprocess.Popen(evopilot_cmd("evolve", "start", exp, "--iterations", "30", "--json",
                                         "--config", evo.root.parent / "evopilot.toml"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def done() -> int:
            try:
                return len(db_rows(home, "SELECT 1 FROM evolution_iterations WHERE status IN "
                                         "('placed', 'skipped', 'failed')"))
            except sqlite3.Error:
                return 0

        # the seed's row counts too: 3 iterations done are 4 rows (the stop may come before
        # the loop applies one more)
        wait_until(lambda: done() >= 4, 60, "3 iterations done")
        code, out, err = evo("evolve", "stop", "approx-sin")
        assert code == 0, err
        assert out.strip() == "experiment 1 (approx-sin) stopping"
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    st = json.loads(out)
    assert st["state"] == "stopped" and st["stop_reason"] == "stopped by `evolve stop`"
    assert 3 <= st["iterations_done"] < 30
    assert status(evo)["state"] == "stopped"

    code, out, err = evo("evolve", "resume", "approx-sin", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 30
    numbers = [n for (n,) in db_rows(home, "SELECT number FROM evolution_iterations ORDER BY number")]
    assert numbers == list(range(31))


@pytest.mark.slow
@pytest.mark.parametrize("choices", [1, 2])
def test_an_answer_received_before_a_kill_is_not_paid_for_again(evo, chat_api, home, choices):
    """The run is killed (-9) after the stand-in answered but before the loop could store the
    answer (another process holds the database's write lock): resume takes the answer from
    the run's journal instead of asking, and paying, again; with ``choices``, every answer of
    the request."""
    answered, lock_db = threading.Event(), sqlite3.connect(home / "evopilot.db", check_same_thread=False,
                                                            isolation_level=None)

    def model(body: dict):
        reply = nudge_a(body)
        if body["seed"] and not answered.is_set() and len(api.requests) == 3:
            lock_db.execute("BEGIN IMMEDIATE")  # the loop's next write waits for this
            answered.set()
        return reply

    api = chat_api(model)
    exp = write_experiment(evo.root, mutators=llm_mutator(api) + f"choices = {choices}\n",
                           budget="[budget]\niterations = 8\n")
    proc = subprocess.Popen(evopilot_cmd("evolve", "start", exp, "--config", evo.root.parent / "evopilot.toml"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert answered.wait(60), "the third request never came"
        time.sleep(1.5)  # every answer sent is received, and waits for the database
        asked = len(api.requests)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        lock_db.execute("ROLLBACK")
        lock_db.close()
    unstored = db_rows(home, "SELECT count(*) FROM evolution_iterations WHERE number > 0 AND answer IS NULL")
    assert asked >= 3 and unstored[0][0] >= 1, "the kill came before an answer was stored"

    code, out, err = evo("evolve", "resume", "approx-sin", "--json")
    assert code == 0, err
    st = json.loads(out)
    assert st["state"] == "finished" and st["iterations_done"] == 8
    assert st["counts"].get("failed", 0) == 0
    requests = 8 // choices
    seeds = [body["seed"] for _, _, body in api.requests]  # one per request
    assert len(seeds) == requests and len(set(seeds)) == requests, f"each answer paid for once: {seeds}"
    [spend] = st["spend"]
    assert spend["requests"] == requests and spend["dollars"] == pytest.approx(requests * REQUEST_DOLLARS)


# --- the search state: migration, sampling ratios, determinism --------------------------------


def make_exp(**overrides) -> Experiment:
    """An experiment model with declared descriptor bounds (archives exist from the start)."""
    data = {
        "name": "unit", "project": "p", "files": ["a.py"], "seed": 7,
        "evaluation": {"stages": [{"benchmark": "b.py"}]},
        "descriptors": {"metrics": ["x", "y"], "bins": [10, 10], "lower": [0.0, 0.0], "upper": [1.0, 1.0]},
        "islands": {"count": 3, "migration_interval": 6},
        "selection": {"inspirations": 0},
        "mutators": [{"kind": "params"}],
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return Experiment.model_validate(data)


def elite_ids(state: SearchState, island: int) -> set[int]:
    return {int(c) for c in state.archives[island].elites().commits}


def test_migration_sends_each_islands_best_to_the_next_after_the_interval():
    state = SearchState(make_exp(), seed_commit=1)
    state.apply(Candidate(1, 0, 0.0, (0.05, 0.05)))  # iteration 0: the seed
    # iterations 1..5: each island gets its own candidates in its own cells; the best of island i
    # has objective 10 * (i + 1)
    cands = [Candidate(100 + i * 10 + k, i, 10.0 * (i + 1) - k, (0.15 + 0.2 * k, 0.1 + 0.3 * i))
             for k in range(2) for i in range(3)][:5]
    for c in cands:
        state.apply(c)
    best = {i: state.archives[i].best()[0] for i in range(3)}
    assert best == {0: 100, 1: 110, 2: 120}
    for i in range(3):
        assert best[(i - 1) % 3] not in elite_ids(state, i), "no migration before the interval"
    changed = state.apply(None)  # iteration 6: a failed one still counts towards the interval
    assert changed == {0, 1, 2}
    for i in range(3):
        assert best[i] in elite_ids(state, (i + 1) % 3), f"island {i}'s best went to island {(i + 1) % 3}"
        assert best[i] not in elite_ids(state, (i + 2) % 3), "only to the next island (a ring)"
    # and again only after the next interval
    before = [elite_ids(state, i) for i in range(3)]
    for _ in range(5):
        state.apply(None)
    assert [elite_ids(state, i) for i in range(3)] == before


def sampling_state(**selection) -> tuple[SearchState, int, set[int], set[int]]:
    """One island with 10 elites (the best is commit 9) and 90 candidates that lost their cells."""
    state = SearchState(make_exp(islands={"count": 1, "migration_interval": 0}, selection=selection),
                        seed_commit=1000)
    for k in range(10):
        state.apply(Candidate(k, 0, 10.0 + k, (0.05 + 0.1 * k, 0.5)))
    for k in range(10, 100):
        state.apply(Candidate(k, 0, float(-k), (0.05 + 0.1 * (k % 10), 0.5)))
    assert elite_ids(state, 0) == set(range(10))
    return state, 9, set(range(10)), set(range(10, 100))


@pytest.mark.parametrize("exploit, explore, random", [(0.7, 0.2, 0.1), (0.2, 0.3, 0.5), (0.0, 1.0, 0.0)])
def test_parent_sampling_follows_the_configured_ratios(exploit, explore, random):
    state, best, elites, losers = sampling_state(exploit=exploit, explore=explore, random=random)
    n = 4000
    parents = [state.choose(number).parent for number in range(1, n + 1)]
    observed = np.array([sum(p == best for p in parents), sum(p in elites - {best} for p in parents),
                         sum(p in losers for p in parents)], dtype=float)
    assert observed.sum() == n
    # exploit takes the best; explore any of the 10 elites; random any of the 100 candidates
    expected = n * np.array([exploit + explore / 10 + random / 100,
                             explore * 9 / 10 + random * 9 / 100,
                             random * 90 / 100])
    mask = expected > 0
    assert (observed[~mask] == 0).all(), "a parent the configured ratios exclude"
    chi2 = float((((observed - expected) ** 2)[mask] / expected[mask]).sum())
    # the chi-square critical value at p = 0.0001 (2 degrees of freedom: 18.4; 1: 15.1)
    assert chi2 < (18.42 if mask.sum() == 3 else 15.14), (observed, expected)


def test_choose_is_a_function_of_seed_and_number():
    a, *_ = sampling_state(exploit=0.4, explore=0.3, random=0.3, inspirations=2)
    b, *_ = sampling_state(exploit=0.4, explore=0.3, random=0.3, inspirations=2)
    first = [a.choose(n) for n in range(1, 200)]
    assert [a.choose(n) for n in range(199, 0, -1)][::-1] == first, "the order of calls does not matter"
    assert [b.choose(n) for n in range(1, 200)] == first, "an equal state chooses the same"
    assert all(c.inspirations and c.parent not in c.inspirations for c in first)
    other = SearchState(a.exp.model_copy(update={"seed": 8}), seed_commit=1000)
    for c in a.candidates:
        other.apply(c)
    assert [other.choose(n) for n in range(1, 200)] != first, "another seed chooses otherwise"
