"""Code sync to a real sshd with real rsync, the SFTP fallback and the local host."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from evopilot.core.config import HostConfig
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.local import LocalHost
from evopilot.core.hosts.sync import (
    MANIFEST,
    Modified,
    UpToDate,
    list_files,
    resolve_remote_dir,
    sync,
    sync_status,
)

FILES = {
    "main.py": "print('hi')\n",
    "pkg/__init__.py": "",
    "pkg/mod.py": "X = 1\n",
    "dir with space/it's ünïcode.txt": "quotes and spaces\n",
    "untracked_new.txt": "not yet added, not ignored\n",
    "run.sh": "#!/bin/sh\necho run\n",
}
IGNORED = {
    "data/big.bin": "ignored by .gitignore\n",
    "notes.log": "ignored by pattern\n",
    ".venv/lib/site.py": "a virtualenv\n",
    "pkg/__pycache__/mod.cpython-311.pyc": "bytecode\n",
}


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True, capture_output=True,
    )


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "proj"
    for rel, text in {**FILES, **IGNORED}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "run.sh").chmod(0o755)
    (root / ".gitignore").write_text("data/\n*.log\n")
    _git(root, "init", "-q")
    tracked = [f for f in FILES if f != "untracked_new.txt"] + [".gitignore"]
    _git(root, "add", "--", *tracked)
    _git(root, "commit", "-q", "-m", "init")
    return root


EXPECTED = sorted([*FILES, ".gitignore"])


def _tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            rel = p.relative_to(root).as_posix()
            out[rel] = (p.read_bytes(), os.access(p, os.X_OK))
    return out


async def test_list_files_git_and_plain(project, tmp_path):
    assert await list_files(project) == EXPECTED
    plain = tmp_path / "plain"
    shutil.copytree(project, plain, ignore=shutil.ignore_patterns(".git"))
    # no git: everything but .venv, __pycache__ and .git
    got = await list_files(plain)
    assert "data/big.bin" in got and "notes.log" in got
    assert not any(f.startswith(".venv/") or "__pycache__" in f for f in got)


async def test_status_sync_uptodate_over_ssh(sshd, project):
    host = sshd.make_host()
    await host.connect()
    try:
        status = await sync_status(project, host, "projects/proj")
        assert status == Modified(count=len(EXPECTED), files=EXPECTED, deleted=[])
        report = await sync(project, host, "projects/proj")
        assert report.method == "rsync" and report.sent == EXPECTED and not report.dry_run
        assert report.remote_dir == f"{host.base_dir}/projects/proj"
        assert await sync_status(project, host, "projects/proj") == UpToDate()
        remote = Path(report.remote_dir)
        tree = _tree(remote)
        local = _tree(project)
        for f in EXPECTED:
            assert tree[f] == local[f], f
        assert tree["run.sh"][1] is True  # executable bit kept
        # ignored and untracked-ignored files never went over
        assert set(tree) == set(EXPECTED) | {MANIFEST}
        # a second sync sends nothing
        again = await sync(project, host, "projects/proj")
        assert again.sent == [] and again.method == "none"
    finally:
        await host.close()


async def test_synced_files_and_directories_are_private_to_the_user(sshd, project):
    """Whatever the remote umask (022 here), a synced project is readable by its user only."""
    host = sshd.make_host()
    await host.connect()
    try:
        for method in ("rsync", "sftp"):
            report = await sync(project, host, f"projects/{method}", method=method)
            remote = Path(report.remote_dir)
            paths = [remote.parent, remote, *remote.rglob("*")]
            assert len(paths) > len(EXPECTED)
            assert [p for p in paths if p.stat().st_mode & 0o077] == [], method
            assert os.access(remote / "run.sh", os.X_OK)
    finally:
        await host.close()


async def test_changes_and_deletions_keep_remote_only_files(sshd, project):
    host = sshd.make_host()
    await host.connect()
    try:
        report = await sync(project, host, "p")
        remote = Path(report.remote_dir)
        # things that live only on the host: a venv and job outputs
        (remote / ".venv" / "bin").mkdir(parents=True)
        (remote / ".venv" / "bin" / "python").write_text("venv")
        (remote / "outputs.csv").write_text("results")
        (project / "pkg" / "mod.py").write_text("X = 2\n")
        _git(project, "rm", "-q", "main.py")
        status = await sync_status(project, host, "p")
        assert status == Modified(count=2, files=["main.py", "pkg/mod.py"], deleted=["main.py"])
        report = await sync(project, host, "p")
        assert report.sent == ["pkg/mod.py"] and report.deleted == ["main.py"]
        assert not (remote / "main.py").exists()
        assert (remote / "pkg" / "mod.py").read_text() == "X = 2\n"
        assert (remote / ".venv" / "bin" / "python").read_text() == "venv"
        assert (remote / "outputs.csv").read_text() == "results"
        assert await sync_status(project, host, "p") == UpToDate()
    finally:
        await host.close()


async def test_dry_run_changes_nothing(sshd, project):
    host = sshd.make_host()
    await host.connect()
    try:
        report = await sync(project, host, "dry", dry_run=True)
        assert report.dry_run and report.sent == EXPECTED and report.bytes > 0
        assert not Path(report.remote_dir).exists()
        await sync(project, host, "dry")
        (project / "main.py").write_text("print('changed')\n")
        before = _tree(Path(report.remote_dir))
        report = await sync(project, host, "dry", dry_run=True)
        assert report.sent == ["main.py"]
        assert _tree(Path(report.remote_dir)) == before
    finally:
        await host.close()


async def test_remote_paths_stay_under_base_dir(sshd, project):
    host = sshd.make_host()
    await host.connect()
    try:
        for bad in ["../escape", "a/../../x", "/etc", "/tmp/elsewhere", "~/x", "", ".",
                    host.base_dir, host.base_dir + "/../x"]:
            with pytest.raises(EvopilotError):
                resolve_remote_dir(host, bad)
            with pytest.raises(EvopilotError):
                await sync(project, host, bad, dry_run=True)
        assert resolve_remote_dir(host, host.base_dir + "/ok/") == host.base_dir + "/ok"
    finally:
        await host.close()


async def test_sftp_fallback_gives_identical_files(sshd, project):
    host = sshd.make_host()
    await host.connect()
    try:
        via_rsync = await sync(project, host, "r")
        via_sftp = await sync(project, host, "s", method="sftp")
        assert via_sftp.method == "sftp" and via_sftp.sent == EXPECTED
        assert _tree(Path(via_rsync.remote_dir)) == _tree(Path(via_sftp.remote_dir))
        assert await sync_status(project, host, "s") == UpToDate()
        # an update and a delete through SFTP too
        (project / "pkg" / "mod.py").write_text("X = 3\n")
        _git(project, "rm", "-q", "run.sh")
        report = await sync(project, host, "s", method="sftp")
        assert report.sent == ["pkg/mod.py"] and report.deleted == ["run.sh"]
        assert await sync_status(project, host, "s") == UpToDate()
        remote = Path(via_sftp.remote_dir)
        assert not (remote / "run.sh").exists()
        assert not any(".evp-tmp" in p for p in _tree(remote))
    finally:
        await host.close()


async def test_sync_to_the_local_host(tmp_path, project):
    host = LocalHost("local", HostConfig(), tmp_path / "localbase")
    await host.connect()
    for method in ("auto", "copy"):
        target = f"projects/{method}"
        report = await sync(project, host, target, method=method)
        assert report.method == ("rsync" if method == "auto" else "copy")
        assert await sync_status(project, host, target) == UpToDate()
        tree = _tree(Path(report.remote_dir))
        assert {f: tree[f] for f in EXPECTED} == {f: _tree(project)[f] for f in EXPECTED}
    with pytest.raises(EvopilotError):
        await sync(project, host, "x", method="sftp")


def _path_without(tmp_path: Path, tool: str) -> str:
    """A PATH directory holding every command of the current PATH except ``tool``."""
    d = tmp_path / f"bin-without-{tool}"
    d.mkdir()
    for entry in reversed(os.environ["PATH"].split(os.pathsep)):
        if not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            src = os.path.join(entry, name)
            if name != tool and os.access(src, os.X_OK) and not os.path.isdir(src):
                link = d / name
                if link.is_symlink():
                    link.unlink()
                link.symlink_to(src)
    return str(d)


async def test_auto_uses_sftp_when_the_host_has_no_rsync(sshd_factory, project, tmp_path):
    server = sshd_factory(path=_path_without(tmp_path, "rsync"))
    host = server.make_host()
    await host.connect()
    try:
        assert (await host.run("command -v rsync || echo none")).stdout == b"none\n"
        report = await sync(project, host, "p")
        assert report.method == "sftp" and report.sent == EXPECTED
        assert await sync_status(project, host, "p") == UpToDate()
    finally:
        await host.close()


async def test_auto_uses_sftp_when_rsync_is_missing_locally(sshd, project, tmp_path, monkeypatch):
    host = sshd.make_host()
    await host.connect()
    try:
        with monkeypatch.context() as m:
            m.setenv("PATH", _path_without(tmp_path, "rsync"))
            report = await sync(project, host, "p")
        assert report.method == "sftp"
        assert await sync_status(project, host, "p") == UpToDate()
    finally:
        await host.close()
