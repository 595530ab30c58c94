"""A stored dependency analysis and whether it still holds, without the analysis itself.

`evopilot deps --json` on an unchanged project is a stat of each input and one read of the
result file: this module does that with the standard library alone (no tree-sitter, no
dataclasses, no metadata scan), so that path starts as fast as a one-file script
(bench/cli.py). ``deps`` stores the results and reads them back through here.

A result file is one line of JSON (the record: format version, interpreter, site
directories, the stat of every input, and the verdict ``ok`` / ``fix_command``), then the
analysis as JSON (``DependencyAnalysis.model_dump_json``).
"""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

from _blake2 import blake2b  # hashlib's own; importing hashlib loads OpenSSL (start-up time)

from evopilot.core.errors import EvopilotError

CACHE_VERSION = 4
"""Bump when the analysis or the cached formats change meaning."""


def digest(data: bytes) -> str:
    return blake2b(data, digest_size=16).hexdigest()


def locate(project_root: Path, bench_file: Path) -> tuple[Path, str]:
    """The project's resolved directory and the benchmark's path in it (``bench_file``
    absolute, or relative to the project, else to the cwd); EvopilotError when either is not
    there or the benchmark lies outside the project."""
    root = Path(project_root).expanduser().resolve()
    if not root.is_dir():
        raise EvopilotError(f"project directory not found: {project_root}")
    bench_file = Path(bench_file).expanduser()
    candidates = [bench_file] if bench_file.is_absolute() else [root / bench_file, Path.cwd() / bench_file]
    for candidate in candidates:
        if candidate.is_file():
            bench = candidate.resolve()
            if not bench.is_relative_to(root):
                raise EvopilotError(f"benchmark {bench_file} is outside the project {root}")
            return root, bench.relative_to(root).as_posix()
    raise EvopilotError(f"benchmark not found: {bench_file} (in project {root})")


def result_file(cache_dir: Path, root: Path, bench_key: str) -> Path:
    return Path(cache_dir) / f"result-{digest(str(root / bench_key).encode())}.json"


def site_dirs(project_root: Path) -> list[str]:
    """Where installed distributions live: the project's own ``.venv`` first, then this
    interpreter's site directories (not every sys.path entry: a source directory such as the
    current one changes all the time and holds no distributions)."""
    venv = sorted(glob.glob(str(project_root / ".venv" / "lib" / "python*" / "site-packages")))
    interpreter = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
    return [p for p in dict.fromkeys([*venv, *interpreter]) if os.path.isdir(p)]


def stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def fingerprint(st: os.stat_result | None) -> list[int] | None:
    return None if st is None else [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def still_valid(record: dict, root: Path) -> bool:
    """Whether every input (files, directory listings, pyproject, site directories, the
    analysis's code, the interpreter) has the stat it had when ``record`` was stored."""
    if record["version"] != CACHE_VERSION or record["python"] != sys.version:
        return False
    if record["sites"] != site_dirs(root):
        return False
    return all(fingerprint(stat(path)) == known for path, known in record["paths"].items())


def load(path: Path, root: Path) -> tuple[dict, bytes] | None:
    """The record and the analysis's JSON of a result file that still holds; None when it is
    absent, stale, or not of this format."""
    try:
        header, _, body = path.read_bytes().partition(b"\n")
        record = json.loads(header)
        return (record, body) if still_valid(record, root) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def printed(project_root: Path, bench_file: Path, cache_dir: Path) -> dict | None:
    """What `deps --json` prints of the stored analysis (``added`` aside), or None when there
    is none that still holds (the analysis runs then)."""
    root, bench_key = locate(project_root, bench_file)
    found = load(result_file(cache_dir, root, bench_key), root)
    if found is None:
        return None
    record, body = found
    try:
        return {**json.loads(body), "ok": record["ok"], "fix_command": record["fix_command"]}
    except (ValueError, KeyError, TypeError):
        return None
