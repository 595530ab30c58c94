"""Benchmark of the dependency analysis (core.analysis), not a test.

Generates, in a temp dir, (a) one 5,000-line Python file full of imports and (b) a 500-module
project with an import graph, then times:
  - import extraction of the 5,000-line file with tree-sitter, beside the `ast` module doing the
    same extraction (imports with their try/except-optional and TYPE_CHECKING handling);
  - `analyze` of a project holding only that file (resolution and models included);
  - `analyze` on the 500-module project cold (empty cache dir, no in-process memo) and cached.
Targets: 5,000-line file < 50 ms; 500 modules < 1 s cold and < 50 ms cached.

Run: python3 bench/deps.py
"""

from __future__ import annotations

import ast
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evopilot.core.analysis import analyze, deps  # noqa: E402
from evopilot.core.analysis.imports import extract  # noqa: E402

STDLIB = ["os", "sys", "json", "re", "math", "time", "itertools", "functools", "collections", "pathlib"]
EXTERNAL = ["numpy", "yaml", "sklearn.svm", "PIL.Image", "scipy.optimize", "requests", "torch"]


def big_file(lines: int = 5000) -> bytes:
    """Top-level imports, guarded imports, TYPE_CHECKING blocks and functions with imports."""
    rng = random.Random(1)
    out: list[str] = ["from __future__ import annotations", "from typing import TYPE_CHECKING"]
    i = 0
    while len(out) < lines:
        kind = i % 6
        if kind == 0:
            out.append(f"import {rng.choice(STDLIB)}, {rng.choice(EXTERNAL)} as ext{i}")
        elif kind == 1:
            out.append(f"from pkg{i % 10}.mod{i % 50} import (name{i}, other{i} as o{i})")
        elif kind == 2:
            out += ["try:", f"    import {rng.choice(EXTERNAL)}", "except ImportError:", "    pass"]
        elif kind == 3:
            out += ["if TYPE_CHECKING:", f"    from .typing{i} import T{i}"]
        elif kind == 4:
            out += [f"def f{i}(x, y=1):", f"    from ..rel{i} import helper", "    total = 0",
                    "    for k in range(x):", "        total += helper(k) * y", "    return total"]
        else:
            out += [f"class C{i}:", f"    value = {i}", "    def m(self):", "        return self.value + 1", ""]
        i += 1
    return ("\n".join(out[:lines]) + "\n").encode()


def ast_extract(source: bytes) -> list[tuple[int, str, tuple[str, ...], int, bool]]:
    """The baseline: the same extraction with the standard `ast` module."""
    found: list[tuple[int, str, tuple[str, ...], int, bool]] = []

    def visit(node: ast.AST, optional: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((0, a.name, (), child.lineno, optional) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.module != "__future__":
                    names = tuple(a.name for a in child.names if a.name != "*")
                    found.append((child.level, child.module or "", names, child.lineno, optional))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    visit(ast.Module([stmt], []), optional)
            elif isinstance(child, ast.Try):
                guards = any(h.type is None or "ImportError" in ast.unparse(h.type) for h in child.handlers)
                for stmt in child.body:
                    visit(ast.Module([stmt], []), optional or guards)
                for part in (*child.handlers, *child.orelse, *child.finalbody):
                    visit(part if isinstance(part, ast.ExceptHandler) else ast.Module([part], []), optional)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, False)
            else:
                visit(child, optional)

    visit(ast.parse(source), False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def project(root: Path, packages: int = 10, modules: int = 50) -> Path:
    """``packages`` x ``modules`` modules; each imports the next one (so all are reached) and
    four random others, absolutely or relatively, plus stdlib and external packages."""
    rng = random.Random(2)
    (root / "pyproject.toml").write_text('[project]\nname = "big"\ndependencies = ["numpy", "PyYAML"]\n')
    for p in range(packages):
        pkg = root / f"pkg{p}"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("from .mod0 import run\n")
        for m in range(modules):
            lines = [f"import {rng.choice(STDLIB)}", f"import {rng.choice(EXTERNAL)}"]
            if m + 1 < modules:
                lines.append(f"from . import mod{m + 1}")
            for _ in range(4):
                tp, tm = rng.randrange(packages), rng.randrange(modules)
                lines.append(f"from .mod{tm} import run as r{tm}" if tp == p else f"import pkg{tp}.mod{tm}")
            lines += ["", "def run(n):", "    total = 0", "    for i in range(n):", "        total += i * i",
                      "    return total", "", "class Model:", "    def fit(self, x):", "        return x"]
            (pkg / f"mod{m}.py").write_text("\n".join(lines) + "\n")
    bench = root / "benchmarks" / "bench.py"
    bench.parent.mkdir()
    bench.write_text("".join(f"import pkg{p}\n" for p in range(packages)) + "print('ok')\n")
    return bench


def timed(fn, repeat: int) -> str:
    """Median and best wall time of ``fn`` in ms: on a shared machine the best run is the
    cost of the work, the median includes waiting for the CPU."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return f"median {statistics.median(runs):7.1f} ms, best {min(runs):7.1f} ms"


def main() -> None:
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source = big_file()
        assert len(extract(source).imports) == len(ast_extract(source)), "extractions disagree"
        single = tmp_path / "single"
        single.mkdir()
        (single / "bench.py").write_bytes(source)
        print(f"5,000-line file ({len(source):,} bytes, {len(extract(source).imports)} imports)")
        print(f"  tree-sitter parse + extract : {timed(lambda: extract(source), 30)}  (target < 50 ms)")
        print(f"  ast baseline, same output   : {timed(lambda: ast_extract(source), 30)}")
        print(f"  analyze() of it, no cache   : {timed(lambda: analyze(single, Path('bench.py')), 10)}")

        root = tmp_path / "big"
        root.mkdir()
        bench = project(root)

        def cold() -> None:
            cache = tmp_path / f"cache-{time.perf_counter_ns()}"
            deps._INSTALLED.clear()  # also forget the installed-distributions memo
            analyze(root, bench, cache_dir=cache)

        def from_disk() -> None:
            deps._RESULTS.clear()  # as a new process (the CLI) finds it: the result file only
            analyze(root, bench, cache_dir=cache)

        cache = tmp_path / "cache"
        result = analyze(root, bench, cache_dir=cache)
        # first, while the files are < 2 s old: they are re-hashed rather than trusted by their stat
        recent = timed(lambda: analyze(root, bench, cache_dir=cache), 5)
        assert not list(cache.glob("result-*")), "measured too late: the result was already stored"
        print(f"500-module project ({len(result.local)} local modules, {len(result.external)} external)")
        print(f"  cached, files < 2 s old     : {recent}")
        print(f"  analyze cold (empty cache)  : {timed(cold, 5)}  (target < 1000 ms)")
        print(f"  analyze, no cache_dir       : {timed(lambda: analyze(root, bench), 5)}")
        time.sleep(2.1)
        analyze(root, bench, cache_dir=cache)  # stores the result now that every stat can be trusted
        print(f"  cached, new process (disk)  : {timed(from_disk, 20)}  (target < 50 ms)")
        print(f"  cached, same process        : {timed(lambda: analyze(root, bench, cache_dir=cache), 20)}")


if __name__ == "__main__":
    main()
