"""Jobs on a commit (`run --commit`): locally and on a real sshd, with real git, tmux and uv.

The user's checkout (HEAD, branch, index, working tree, .git) must come out byte-identical; each
job sees its own commit's files; a second commit's tree is built from the first by sending only
what changed; trees go away when no job needs them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path, PosixPath

import pytest

from evopilot.core import gitops
from evopilot.core.config import Config, HostConfig
from evopilot.core.engine import Engine
from evopilot.core.hosts.local import LocalHost
from evopilot.core.hosts.sync import MANIFEST
from evopilot.core.workspace import STAMP, build_here, build_script, parse_answer
from tests.conftest import REPO, evopilot_cmd, stop_process, wait_until
from tests.test_remote_jobs import PYPROJECT, host_toml

SHOW = """
import json, os, sys, time
import mod  # the tree's own module: found through PYTHONPATH
go = sys.argv[1] if len(sys.argv) > 1 else None
data = open("data.txt").read().strip()
print(f"[1/2] value {mod.VALUE} data {data}", flush=True)
while go and not os.path.exists(go):
    time.sleep(0.05)
json.dump({"value": mod.VALUE, "data": float(data)}, open(os.environ["EVOPILOT_RESULTS"], "w"))
print("[2/2] done", flush=True)
"""


def git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                         check=True, capture_output=True, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    return out.stdout.decode()


def commit_all(root: Path, files: dict[str, str], message: str) -> str:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


class Repo(PosixPath):
    """The project's path, with the shas of its commits."""

    shas: dict[str, str]


@pytest.fixture
def repo(make_project):
    """A repository with commits A (tag v1) and B on main, C on branch `other` (checked out), and
    a dirty working tree: a modified file, a staged file and an untracked one."""
    root = Repo(make_project({}))
    git(root, "init", "-q", "-b", "main")
    base = {"pyproject.toml": PYPROJECT, "benchmarks/show.py": SHOW,
            **{f"pkg/f{i}.txt": f"file {i}\n" for i in range(20)}}
    a = commit_all(root, {**base, "mod.py": "VALUE = 1\n", "data.txt": "10\n", "gone.txt": "only in A\n"}, "A")
    git(root, "tag", "v1")
    (root / "gone.txt").unlink()
    b = commit_all(root, {"mod.py": "VALUE = 2\n", "data.txt": "20\n"}, "B")
    git(root, "checkout", "-q", "-b", "other", a)
    c = commit_all(root, {"mod.py": "VALUE = 3\n"}, "C")
    (root / "mod.py").write_text("VALUE = 99\n")
    (root / "staged.txt").write_text("staged\n")
    git(root, "add", "staged.txt")
    (root / "untracked.txt").write_text("untracked\n")
    root.shas = {"A": a, "B": b, "C": c}
    return root


def checkout_state(root: Path) -> dict:
    """Everything of the user's checkout: every file (.git included) and what git says."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {"files": files, "status": git(root, "status", "--porcelain"), "head": git(root, "rev-parse", "HEAD"),
            "branch": git(root, "symbolic-ref", "HEAD"), "worktrees": git(root, "worktree", "list", "--porcelain")}


def jobs_by_commit(cli, *extra) -> dict[str, dict]:
    code, out, err = cli("jobs", "--json", *extra)
    assert code == 0, err
    return {j["commit"]: j for j in json.loads(out) if j["kind"] == "benchmark"}


def steps(job_id: int) -> list[dict]:
    """What the job's ``workspace`` step recorded (the tree, its basis, what was sent)."""
    async def read():
        async with await Engine.open(Config(), Path(os.environ["EVOPILOT_HOME"])) as e:
            return await e.job_steps(job_id)

    return [json.loads(s["details"]) for s in asyncio.run(read()) if s["name"] == "workspace"]


def workspaces_dir() -> Path:
    return Path(os.environ["EVOPILOT_HOME"]) / "workspaces"


# ---- locally ----------------------------------------------------------------------------------


def test_run_commit_locally_leaves_the_checkout_alone(cli, repo):
    assert cli("project", "add", repo)[0] == 0
    before = checkout_state(repo)
    code, out, err = cli("run", "proj", "show.py", "--commit", "v1", "--wait")
    assert code == 0, out + err
    code, out, err = cli("run", "proj", "show.py", "--commit", repo.shas["B"][:10], "--wait")
    assert code == 0, out + err
    js = jobs_by_commit(cli)
    a, b = js[repo.shas["A"]], js[repo.shas["B"]]
    assert a["status"] == b["status"] == "succeeded"
    assert a["metrics"] == {"value": 1, "data": 10} and b["metrics"] == {"value": 2, "data": 20}
    assert checkout_state(repo) == before
    # the trees went away with their jobs (run --wait ticks until they end)
    assert list(workspaces_dir().iterdir()) == []


def test_two_commits_at_once_locally(cli, repo, tmp_path):
    assert cli("project", "add", repo)[0] == 0
    go = tmp_path / "go"
    for rev in ("v1", "main"):
        code, _, err = cli("run", "proj", "show.py", "--commit", rev, "--arg", go)
        assert code == 0, err
    worker = start_worker()
    try:
        wait_until(lambda: all(j["status"] == "running" and j["progress_current"] == 1
                               for j in jobs_by_commit(cli).values()), what="both jobs running")
        trees = sorted(workspaces_dir().iterdir())
        assert len(trees) == 2
        # each tree holds its commit's files, and no file of the other commit
        assert sorted((t / "mod.py").read_text() for t in trees) == ["VALUE = 1\n", "VALUE = 2\n"]
        assert sorted((t / "gone.txt").exists() for t in trees) == [False, True]
        go.touch()
        wait_until(lambda: all(j["status"] == "succeeded" for j in jobs_by_commit(cli).values()))
        wait_until(lambda: list(workspaces_dir().iterdir()) == [], what="trees removed")
    finally:
        stop_process(worker)
    js = jobs_by_commit(cli)
    assert js[repo.shas["A"]]["metrics"]["value"] == 1 and js[repo.shas["B"]]["metrics"]["value"] == 2
    # the second tree was built on the first: only the files that differ were unpacked
    later = max(js.values(), key=lambda j: j["id"])
    (step,) = steps(later["id"])
    assert step["basis"] == repo.shas["A"] and sorted(step["sent"]) == ["data.txt", "mod.py"]
    assert step["removed"] == ["gone.txt"]


def test_a_project_in_a_subdirectory_of_its_repository(cli, make_project):
    root = make_project({})
    git(root, "init", "-q")
    commit_all(root, {"README": "the repository\n", "sub/benchmarks/show.py": SHOW, "sub/mod.py": "VALUE = 5\n",
                      "sub/data.txt": "50\n"}, "one")
    first = git(root, "rev-parse", "HEAD").strip()
    commit_all(root, {"sub/mod.py": "VALUE = 6\n"}, "two")
    assert cli("project", "add", root / "sub", "--name", "sub")[0] == 0
    code, out, err = cli("run", "sub", "show.py", "--commit", first, "--wait")
    assert code == 0, out + err
    (job,) = jobs_by_commit(cli).values()
    assert job["metrics"] == {"value": 5, "data": 50}


def test_retry_of_a_commit_job_after_its_tree_is_gone(cli, repo):
    assert cli("project", "add", repo)[0] == 0
    code, out, err = cli("run", "proj", "show.py", "--commit", "v1", "--wait")
    assert code == 0, err
    job = jobs_by_commit(cli)[repo.shas["A"]]
    assert list(workspaces_dir().iterdir()) == []
    code, out, err = cli("retry", str(job["id"]))
    assert code == 0, err
    assert cli("worker", "--until-idle")[0] == 0
    retried = max(jobs_by_commit(cli).values(), key=lambda j: j["id"])
    assert retried["id"] != job["id"] and retried["commit"] == repo.shas["A"]
    assert retried["status"] == "succeeded" and retried["metrics"]["value"] == 1


def test_a_crashed_build_is_never_used_and_runs_of_one_commit_share_its_tree(repo):
    from evopilot.core.db import workspaces as ws_db

    async def scenario():
        async with await Engine.open(Config(), Path(os.environ["EVOPILOT_HOME"])) as engine:
            project, _ = await engine.add_project(repo)
            # a run that died half-way through building A's tree: its claim ran out long ago
            dead = await ws_db.claim(engine.db, project_id=project.id, host="local", sha=repo.shas["A"],
                                     now=time.time() - 3600, lease=30, path_for=lambda wid: str(workspaces_dir() / "dead"))
            Path(dead.tree.path, "pkg").mkdir(parents=True)
            # two runs of A at once: one builds a new tree, the other waits for it and shares it
            first, second = await asyncio.gather(
                *(engine.run("proj", ["show.py"], commit="v1", check=False) for _ in range(2)))
            await engine.run_forever(until_done=[first[0].id, second[0].id])
            return [await engine.job(j[0].id) for j in (first, second)], dead.tree.path

    jobs, dead_path = asyncio.run(scenario())
    assert [j.status for j in jobs] == ["succeeded", "succeeded"]
    assert [j.metrics["value"] for j in jobs] == [1, 1]
    assert jobs[0].workdir == jobs[1].workdir != dead_path
    assert sorted(s["reused"] for j in jobs for s in steps(j.id)) == [False, True]
    assert list(workspaces_dir().iterdir()) == []  # the dead build's directory went too


@pytest.mark.parametrize("case", ["unknown_rev", "option_like", "not_a_repo", "bench_not_in_commit"])
def test_bad_commit_is_one_line_exit_2(cli, repo, make_project, case):
    project = repo
    rev = {"unknown_rev": "no-such-branch", "option_like": "--output=/tmp/x"}.get(case, "v1")
    if case == "not_a_repo":
        project = make_project({"benchmarks/show.py": SHOW}, name="plain")
    assert cli("project", "add", project, "--name", "p2")[0] == 0
    if case == "bench_not_in_commit":
        (repo / "benchmarks" / "new.py").write_text("print(1)\n")
        assert cli("bench", "add", "p2", repo / "benchmarks" / "new.py")[0] == 0
    bench = "new.py" if case == "bench_not_in_commit" else "show.py"
    code, out, err = cli("run", "p2", bench, f"--commit={rev}")
    assert code == 2, out + err
    assert err.count("\n") == 1 and "Traceback" not in err
    expect = {"unknown_rev": "unknown revision 'no-such-branch'", "option_like": "not a revision",
              "not_a_repo": "not in a git repository",
              "bench_not_in_commit": f"not in commit {repo.shas['A'][:12]}"}[case]
    assert expect in err, err
    assert not workspaces_dir().exists() or list(workspaces_dir().iterdir()) == []


# ---- on an SSH host ---------------------------------------------------------------------------


@pytest.fixture
def remote(cli, repo, sshd, tmp_path):
    cfg = tmp_path / "evopilot.toml"
    cfg.write_text("[engine]\nremote_poll_interval = 0.3\npoll_interval = 0.1\n" + host_toml("h1", sshd))

    def run(*args):
        return cli(*args, "--config", cfg)

    assert run("project", "add", repo)[0] == 0
    run.cfg, run.root, run.server = cfg, repo, sshd
    return run


@pytest.mark.slow
def test_two_commits_at_once_on_a_host(remote, tmp_path):
    go = tmp_path / "go"  # the host is this machine: one file releases both jobs
    before = checkout_state(remote.root)
    for rev in ("v1", "main"):
        code, _, err = remote("run", "proj", "show.py", "--host", "h1", "--commit", rev, "--arg", go)
        assert code == 0, err
    worker = start_worker(remote.cfg)
    try:
        wait_until(lambda: all(j["status"] == "running" and j["progress_current"] == 1
                               for j in jobs_by_commit(remote).values()), timeout=120,
                   what="both jobs running on h1")
        go.touch()
        wait_until(lambda: all(j["status"] == "succeeded" for j in jobs_by_commit(remote).values()),
                   timeout=60)
    finally:
        stop_process(worker)
    js = jobs_by_commit(remote)
    a, b = js[remote.root.shas["A"]], js[remote.root.shas["B"]]
    assert a["metrics"] == {"value": 1, "data": 10} and b["metrics"] == {"value": 2, "data": 20}
    assert a["host"] == b["host"] == "h1"
    # one environment for both (same pyproject.toml): one setup job
    code, out, _ = remote("jobs", "--json")
    setups = [j for j in json.loads(out) if j["kind"] == "setup"]
    assert len(setups) == 1 and setups[0]["status"] == "succeeded"
    setup = setups[0]
    assert a["depends_on"] == setup["id"]
    # the second run may come after the first one's setup ended (`run` starts it at once): then
    # it needs none (the one setup job above built the environment both used)
    assert b["depends_on"] in (setup["id"], None)
    # B's tree was built on A's: the two changed files and the removal crossed the link, nothing else
    (step_a,) = steps(a["id"])
    (step_b,) = steps(b["id"])
    assert step_a["basis"] is None and step_a["sent"] == "all"
    assert step_b["basis"] == remote.root.shas["A"]
    assert sorted(step_b["sent"]) == ["data.txt", "mod.py"] and step_b["removed"] == ["gone.txt"]
    assert step_b["bytes"] == 6 * 512  # the tar: per file a header and one block, then its end
    trees = Path(remote.server.base_dir) / "trees"
    tree_a, tree_b = Path(step_a["tree"]), Path(step_b["tree"])
    assert tree_a.parent == trees == tree_b.parent
    # the unchanged files are shared, the changed ones are not, A's files are intact
    assert os.stat(tree_a / "pkg/f1.txt").st_ino == os.stat(tree_b / "pkg/f1.txt").st_ino
    assert (tree_a / "mod.py").read_text() == "VALUE = 1\n" and (tree_b / "mod.py").read_text() == "VALUE = 2\n"
    assert (tree_a / "gone.txt").exists() and not (tree_b / "gone.txt").exists()
    assert checkout_state(remote.root) == before


@pytest.mark.slow
def test_a_commit_on_a_host_reuses_the_environment_and_prunes_old_trees(remote):
    root = remote.root
    code, out, err = remote("run", "proj", "show.py", "--host", "h1", "--commit", "v1", "--wait")
    assert code == 0, out + err
    # the same commit again: the tree and the environment are reused
    code, out, err = remote("run", "proj", "show.py", "--host", "h1", "--commit", "v1", "--wait")
    assert code == 0, out + err
    again = max(jobs_by_commit(remote).values(), key=lambda j: j["id"])
    assert again["depends_on"] is None
    (step,) = steps(again["id"])
    assert step["reused"] is True
    # new commits on main, one with a changed pyproject.toml: that one needs a new environment
    git(root, "reset", "-q", "--hard")
    git(root, "checkout", "-q", "main")
    d = commit_all(root, {"data.txt": "40\n"}, "D")
    e = commit_all(root, {"pyproject.toml": PYPROJECT.replace("0.1.0", "0.2.0")}, "E")
    for sha in (d, e):
        code, out, err = remote("run", "proj", "show.py", "--host", "h1", "--commit", sha, "--wait")
        assert code == 0, out + err
    code, out, _ = remote("jobs", "--json")
    setups = [j for j in json.loads(out) if j["kind"] == "setup"]
    assert [s["commit"] for s in setups] == [remote.root.shas["A"], e]
    js = jobs_by_commit(remote)
    assert js[d]["metrics"] == {"value": 2, "data": 40} and js[e]["status"] == "succeeded"
    # trees of finished jobs are pruned down to the newest two (the bases of the next commits)
    assert cli_tick(remote)
    trees = sorted(p.name for p in (Path(remote.server.base_dir) / "trees").iterdir())
    assert len(trees) == 2 and any(d[:12] in t for t in trees) and any(e[:12] in t for t in trees)
    envs = list((Path(remote.server.base_dir) / "envs").iterdir())
    assert len(envs) == 2


# ---- the tree builder, with real bash, git and tar -----------------------------------------


@pytest.mark.parametrize("builder", ["script", "here"])
def test_a_build_never_writes_through_a_link_and_resends_edited_basis_files(repo, tmp_path, builder):
    """The build script (SSH hosts) and its twin run in-process for local trees: the same
    scenario, the same answers and trees."""
    host = LocalHost("local", HostConfig(), tmp_path / "base")
    a = gitops.Commit(str(repo), repo.shas["A"], "")
    b = gitops.Commit(str(repo), repo.shas["B"], "")
    tree_a, tree_b, tree_c = (str(tmp_path / n) for n in ("ta", "tb", "tc"))

    async def build(tree, commit, basis=None, drop=(), paths=None):
        payload = await gitops.archive(commit, paths)
        if builder == "here":
            return build_here(tree, commit.sha, basis=basis, drop=drop, payload=payload)
        res = await host.run(build_script(tree, commit.sha, basis=basis, drop=drop, payload=bool(payload)),
                             stdin=payload or None)
        assert res.ok, res.stderr
        return parse_answer(res.stdout)

    async def scenario():
        assert (await build(tree_a, a)).ready
        changed, removed = await gitops.diff(a, b)
        assert sorted(changed) == ["data.txt", "mod.py"] and removed == ["gone.txt"]
        answer = await build(tree_b, b, (tree_a, a.sha), [*changed, *removed], changed)
        assert answer.basis == "used" and answer.ready
        # a job in tree A rewrites a shared file in place: tree C (of A's commit again, on A's
        # tree) must not link it, and asks for it to be sent
        shared = Path(tree_a) / "pkg/f3.txt"
        with open(shared, "w") as f:
            f.write("edited in place\n")
        stamp = os.stat(Path(tree_a) / STAMP).st_mtime
        os.utime(shared, (stamp + 1, stamp + 1))  # a later edit, whatever the clock's granularity
        (Path(tree_a) / "pkg/f4.txt").unlink()  # and one deleted: its link fails
        answer = await build(tree_c, a, (tree_a, a.sha), [], [])
        assert answer.basis == "used" and not answer.ready
        assert answer.missing == ["pkg/f3.txt", "pkg/f4.txt"]
        assert (await build(tree_c, a, None, (), answer.missing)).ready
        # a basis that is not there (or not that commit's tree) is reported, nothing is linked
        answer = await build(str(tmp_path / "td"), b, (tree_a, b.sha), [], [])
        assert answer.basis == "gone" and not answer.ready

    asyncio.run(scenario())
    ta, tb, tc = Path(tree_a), Path(tree_b), Path(tree_c)
    assert (ta / "mod.py").read_text() == "VALUE = 1\n" and (tb / "mod.py").read_text() == "VALUE = 2\n"
    assert (ta / "data.txt").read_text() == "10\n" and not (tb / "gone.txt").exists()
    assert os.stat(ta / "pkg/f0.txt").st_ino == os.stat(tb / "pkg/f0.txt").st_ino
    assert (tc / "pkg/f3.txt").read_text() == "file 3\n" and (tc / "pkg/f4.txt").read_text() == "file 4\n"
    assert not (tmp_path / "td" / STAMP).exists()
    assert (tc / STAMP).read_text() == repo.shas["A"]
    manifest = sorted(p for p in (tb / MANIFEST).read_bytes().decode().split("\0") if p)
    assert manifest == sorted(git(repo, "ls-tree", "-r", "--name-only", repo.shas["B"]).split())


def test_trim_tar_keeps_every_byte_of_the_files():
    """Files ending in NUL bytes and long names (pax headers) survive the trimmed stream."""
    members = {"a" * 150 + "/long.bin": b"x" + b"\0" * 3000, "empty": b"", "z.txt": b"last\0\0"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    trimmed = gitops.trim_tar(raw)
    assert len(trimmed) % 512 == 0 and len(trimmed) < len(raw)
    out = subprocess.run(["tar", "-t", "-v", "-f", "-"], input=trimmed, capture_output=True)
    assert out.returncode == 0 and out.stderr == b""
    with tarfile.open(fileobj=io.BytesIO(trimmed)) as t:
        assert {m.name: t.extractfile(m).read() for m in t.getmembers()} == members


# ---- helpers ----------------------------------------------------------------------------------


def cli_tick(run) -> bool:
    """One engine tick (its sweep prunes trees), as a worker would do."""
    return run("worker", "--until-idle")[0] == 0


def start_worker(cfg: Path | None = None) -> subprocess.Popen:
    args = ["worker"] + (["--config", cfg] if cfg else [])
    log = open(Path(os.environ["EVOPILOT_HOME"]).parent / f"worker-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen(evopilot_cmd(*args), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env=os.environ.copy())


