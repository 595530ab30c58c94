"""Candidate commits made with git plumbing beside the user's checkout, against what git's own
index makes of the same change."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from evopilot.core import gitops
from evopilot.core.errors import EvopilotError

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def git(root: Path, *args: str, env: dict | None = None, input: bytes | None = None) -> str:
    return subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True, input=input,
                          env={**os.environ, **(env or {})}).stdout.decode()


def committed_repo(root: Path, files: dict[str, str], executable: str) -> str:
    """A repository at ``root`` with ``files`` (``executable`` among them with mode 755) in
    one commit; the commit."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / executable).chmod(0o755)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return git(root, "rev-parse", "HEAD").strip()


def test_commit_files_equals_the_index_made_commit_and_keeps_modes(tmp_path):
    root = tmp_path / "repo"
    parent = committed_repo(root, {"a.py": "A = 1\n", "pkg/sub/m.py": "M = 1\n", "pkg/x.txt": "x\n",
                                   "b": "file\n"}, "pkg/sub/m.py")
    before = (git(root, "status", "--porcelain"), (root / ".git" / "index").read_bytes())
    change = {"a.py": "A = 2\n", "pkg/sub/m.py": "M = 2 # é\n", "new/deep/f.py": "F = 1\n", "b/c.py": "C\n"}

    commit, tree = asyncio.run(gitops.commit_files(root, parent, change, "msg\n", "1700000000 +0000"))

    index = {"GIT_INDEX_FILE": str(tmp_path / "index")}
    git(root, "read-tree", parent, env=index)
    git(root, "rm", "-q", "--cached", "b", env=index)
    for rel, text in change.items():
        blob = git(root, "hash-object", "-w", "--stdin", input=text.encode()).strip()
        mode = "100755" if rel == "pkg/sub/m.py" else "100644"
        git(root, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{rel}", env=index)
    assert tree == git(root, "write-tree", env=index).strip()
    assert git(root, "rev-parse", f"{commit}^{{tree}}", f"{commit}^").split() == [tree, parent]
    assert git(root, "show", f"{commit}:pkg/sub/m.py") == "M = 2 # é\n"
    assert git(root, "show", f"{commit}:pkg/x.txt") == "x\n"
    assert (git(root, "status", "--porcelain"), (root / ".git" / "index").read_bytes()) == before
    again, _ = asyncio.run(gitops.commit_files(root, parent, change, "msg\n", "1700000000 +0000"))
    assert again == commit, "the same change on the same date is the same commit"


def one_file_repo(tmp_path: Path, text: str) -> tuple[Path, str]:
    """A repository with a.py holding ``text`` in one commit; (its root, the commit)."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.py").write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root, git(root, "rev-parse", "HEAD").strip()


def test_commit_object_is_the_one_commit_tree_writes(tmp_path):
    root, parent = one_file_repo(tmp_path, "A = 1\n")
    message = "evopilot x iteration 3\n\nTune A.\n\nEvopilot-Parent: p\n"
    commit, tree = asyncio.run(gitops.commit_files(root, parent, {"a.py": "A = 2\n"}, message, "1700000003 +0000"))
    dates = {"GIT_AUTHOR_DATE": "1700000003 +0000", "GIT_COMMITTER_DATE": "1700000003 +0000"}
    made = subprocess.run(["git", "commit-tree", tree, "-p", parent, "-F", "-"], cwd=root, check=True,
                          capture_output=True, input=message.encode(),
                          env={**os.environ, **gitops.IDENTITY, **dates}).stdout.decode().strip()
    assert commit == made


def test_batch_serves_many_calls_and_diff_matches_diff_tree(tmp_path):
    root = tmp_path / "repo"
    for rel, text in {"a.py": "A\n", "d/x.py": "X\n", "d/e/y.py": "Y\n", "f": "F\n", "g.sh": "G\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    old = git(root, "rev-parse", "HEAD").strip()
    # a change, a removal, a directory where a file was and a file where a directory was, a mode
    (root / "a.py").write_text("A2\n")
    (root / "d/e/y.py").unlink()
    (root / "f").unlink()
    (root / "f").mkdir()
    (root / "f/inner.py").write_text("I\n")
    import shutil
    shutil.rmtree(root / "d/e")
    (root / "d/e").write_text("now a file\n")
    (root / "g.sh").chmod(0o755)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "next")
    new = git(root, "rev-parse", "HEAD").strip()
    status = git(root, "diff-tree", "-r", "-z", "--no-renames", "--name-status", old, new).split("\0")
    want = (sorted(p for s, p in zip(status[0::2], status[1::2]) if s != "D"),
            sorted(p for s, p in zip(status[0::2], status[1::2]) if s == "D"))

    async def main():
        async with gitops.Batch(root) as b:
            got = await gitops.diff(gitops.Commit(str(root), old, ""), gitops.Commit(str(root), new, ""), batch=b)
            files = await gitops.read_files(root, new, ["a.py", "f/inner.py"], batch=b)
            commit, _ = await gitops.commit_files(root, new, {"a.py": "A3\n"}, "m\n", "1700000000 +0000", batch=b)
            await gitops.update_ref(root, "refs/evopilot/t/1", commit, batch=b)
            try:  # a refused update ends update-ref's process: the next one starts anew
                await gitops.update_ref(root, "refs/evopilot/t/2", "0" * 39 + "1", batch=b)
            except gitops.EvopilotError:
                pass
            else:
                raise AssertionError("an update to a missing object must fail")
            await gitops.update_ref(root, "refs/evopilot/t/3", commit, batch=b)
            return got, files, commit

    got, files, commit = asyncio.run(main())
    assert got == want
    assert files == {"a.py": "A2\n", "f/inner.py": "I\n"}
    refs = git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/evopilot/").split("\n")
    assert [r for r in refs if r] == [f"refs/evopilot/t/1 {commit}", f"refs/evopilot/t/3 {commit}"]


def test_batch_starts_a_new_process_when_one_went_away(tmp_path):
    root, head = one_file_repo(tmp_path, "A\n")

    async def main():
        async with gitops.Batch(root) as b:
            assert await gitops.read_files(root, head, ["a.py"], batch=b) == {"a.py": "A\n"}
            proc = b._cat.proc
            proc.kill()
            await proc.wait()
            assert await gitops.read_files(root, head, ["a.py"], batch=b) == {"a.py": "A\n"}
            assert b._cat.proc is not proc

    asyncio.run(main())


def test_worktrees_made_at_once_in_one_repository_all_succeed(tmp_path):
    """git fails a `worktree add` that reads another one's half-made admin directory ("failed to
    read .git/worktrees/X/commondir"): evolution makes its slots' worktrees concurrently."""
    root, commit = one_file_repo(tmp_path, "A = 1\n")

    async def main():
        for batch in range(3):
            await asyncio.gather(*(gitops.git(root, "worktree", "add", "--detach", "--force",
                                              str(tmp_path / f"slot-{batch}-{i}"), commit) for i in range(8)))
        return await gitops.git(root, "worktree", "list", "--porcelain")

    assert asyncio.run(main()).decode().count("\nworktree ") == 24


def test_a_git_error_names_what_went_wrong_not_what_git_was_doing(tmp_path):
    root, commit = one_file_repo(tmp_path, "A = 1\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    with pytest.raises(EvopilotError, match=r"^git worktree in .*: fatal: .*taken.* already exists$"):
        asyncio.run(gitops.git(root, "worktree", "add", "--detach", str(tmp_path / "taken"), commit))


def _tar_files(data: bytes) -> dict[str, tuple[int, bytes]]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (m.mode, tar.extractfile(m).read()) for m in tar if m.isfile()}


def test_changed_files_packed_from_objects_are_what_git_archive_gives(tmp_path, monkeypatch):
    """Evolution sends a candidate's changed files for every evaluation: packed from the batch's
    objects, with no `git archive` process, unless an attribute or setting could change them."""
    root = tmp_path / "repo"
    sha = committed_repo(root, {"proj/run.py": "print(1)\n", "proj/pkg/deep/m.py": "M = 1\n",
                                "proj/pkg/x.txt": "x\ny\n", "top.txt": "t\n"}, "proj/run.py")
    commit = gitops.Commit(str(root), sha, "proj/")
    paths = ["run.py", "pkg/deep/m.py", "pkg/x.txt"]
    archives = []
    real_start = gitops._start

    async def counting(repo, *args, **kw):
        archives.extend(a for a in args if a == "archive")
        return await real_start(repo, *args, **kw)

    monkeypatch.setattr(gitops, "_start", counting)

    async def both() -> tuple[bytes, bytes]:
        async with gitops.Batch(root) as b:
            packed = await gitops.archive(commit, paths, batch=b)
        return packed, await gitops.archive(commit, paths)

    packed, by_git = asyncio.run(both())
    assert archives == ["archive"], "only the call without a batch ran git archive"
    assert _tar_files(packed) == _tar_files(by_git)
    assert _tar_files(packed)["run.py"][0] == 0o775

    # an attribute in a directory above a file converts it: git archive packs it then
    (root / "proj/.gitattributes").write_text("*.txt text eol=crlf\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "crlf")
    commit = gitops.Commit(str(root), git(root, "rev-parse", "HEAD").strip(), "proj/")
    archives.clear()
    packed, by_git = asyncio.run(both())
    assert archives == ["archive", "archive"]
    assert _tar_files(packed)["pkg/x.txt"][1] == b"x\r\ny\r\n" == _tar_files(by_git)["pkg/x.txt"][1]

    # so does a setting of the repository (line endings converted for files git finds text)
    git(root, "rm", "-q", "proj/.gitattributes")
    git(root, "commit", "-qm", "no attributes")
    git(root, "config", "core.autocrlf", "true")
    commit = gitops.Commit(str(root), git(root, "rev-parse", "HEAD").strip(), "proj/")
    archives.clear()
    packed, by_git = asyncio.run(both())
    assert archives == ["archive", "archive"]
    assert _tar_files(packed)["pkg/x.txt"][1] == b"x\r\ny\r\n"
