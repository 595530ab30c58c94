"""Candidate commits made with git plumbing beside the user's checkout, against what git's own
index makes of the same change."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from evopilot.core import gitops

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def git(root: Path, *args: str, env: dict | None = None, input: bytes | None = None) -> str:
    return subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True, input=input,
                          env={**os.environ, **(env or {})}).stdout.decode()


def test_commit_files_equals_the_index_made_commit_and_keeps_modes(tmp_path):
    root = tmp_path / "repo"
    for rel, text in {"a.py": "A = 1\n", "pkg/sub/m.py": "M = 1\n", "pkg/x.txt": "x\n", "b": "file\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "pkg/sub/m.py").chmod(0o755)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    parent = git(root, "rev-parse", "HEAD").strip()
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
