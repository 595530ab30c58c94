"""Benchmark dependency analysis (core.analysis): each import construct on a small project
written into tmp_path, the pyproject comparison, the cache, and `uv add` run for real offline."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import stat
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from evopilot.core.analysis import DependencyAnalysis, analyze, deps, fix, render_tree
from evopilot.core.errors import EvopilotError

BENCH = "benchmarks/bench.py"


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def project(tmp_path: Path, files: dict[str, str | bytes], pyproject: str | None = "") -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    if pyproject is not None:
        write(root, {"pyproject.toml": f'[project]\nname = "proj"\nversion = "0.1.0"\n{pyproject}'})
    return write(root, files)


def local(analysis: DependencyAnalysis) -> dict[str, tuple[str | None, bool, bool]]:
    """module name -> (file, exists, optional)."""
    return {d.module_name: (d.file_path, d.exists, d.optional) for d in analysis.local}


def external(analysis: DependencyAnalysis) -> dict[str, tuple[str, bool, bool]]:
    """import name -> (distribution, declared, optional)."""
    return {p.import_name: (p.distribution, p.declared, p.optional) for p in analysis.external}


# --- import constructs -------------------------------------------------------------------------


def test_plain_import_of_a_module_at_the_project_root(tmp_path):
    root = project(tmp_path, {BENCH: "import helper\nhelper.run()\n", "helper.py": "def run(): pass\n"})
    a = analyze(root, Path(BENCH))
    assert local(a) == {"helper": ("helper.py", True, False)}
    assert a.benchmark == BENCH and a.root.file_path == BENCH
    assert [c.module_name for c in a.root.children] == ["helper"]
    assert a.ok and a.external == [] and a.syntax_errors == []


def test_the_benchmark_directory_comes_first_like_sys_path_0(tmp_path):
    root = project(
        tmp_path,
        {BENCH: "import util\n", "benchmarks/util.py": "import near\n", "benchmarks/near.py": "", "util.py": "import far\n"},
    )
    a = analyze(root, Path(BENCH))
    assert local(a) == {"util": ("benchmarks/util.py", True, False), "near": ("benchmarks/near.py", True, False)}


def test_shadowing_follows_sys_path_order(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "import code\nimport csv\nimport json\nimport sys\n",
            "benchmarks/code.py": "",  # the script's directory precedes the standard library
            "benchmarks/sys.py": "",  # built into the interpreter: always wins
            "csv.py": "",  # the project root is on PYTHONPATH: before the standard library too
            "json/x.py": "",  # a namespace portion yields to the standard library's package
        },
    )
    a = analyze(root, Path(BENCH))
    assert local(a) == {"code": ("benchmarks/code.py", True, False), "csv": ("csv.py", True, False)}
    assert a.external == []


def test_dotted_import_resolves_every_component(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "import pkg.sub.mod as m\n",
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/mod.py": "",
        },
    )
    a = analyze(root, Path(BENCH))
    assert local(a) == {
        "pkg": ("pkg/__init__.py", True, False),
        "pkg.sub": ("pkg/sub/__init__.py", True, False),
        "pkg.sub.mod": ("pkg/sub/mod.py", True, False),
    }


def test_from_relative_single_dot(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "from pkg import a\n",
            "pkg/__init__.py": "",
            "pkg/a.py": "from . import b\nfrom .c import thing\n",
            "pkg/b.py": "",
            "pkg/c.py": "thing = 1\n",
        },
    )
    a = analyze(root, Path(BENCH))
    assert set(local(a)) == {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    tree_a = next(c for c in a.root.children if c.module_name == "pkg.a")
    assert [c.file_path for c in tree_a.children] == ["pkg/b.py", "pkg/c.py"]


def test_from_relative_double_dot(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "import pkg.sub.m\n",
            "pkg/__init__.py": "",
            "pkg/util.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/m.py": "from ..util import y\nfrom .. import other\n",
            "pkg/other/__init__.py": "",
        },
    )
    a = analyze(root, Path(BENCH))
    assert local(a)["pkg.util"] == ("pkg/util.py", True, False)
    assert local(a)["pkg.other"] == ("pkg/other/__init__.py", True, False)
    assert a.ok


def test_relative_import_beyond_the_top_package_or_in_the_script_is_reported(tmp_path):
    root = project(
        tmp_path,
        {BENCH: "from . import sibling\nimport pkg.m\n", "pkg/__init__.py": "", "pkg/m.py": "from ...x import y\n"},
    )
    a = analyze(root, Path(BENCH))
    problems = {d.module_name: d.problem for d in a.missing_local()}
    assert problems == {
        ".sibling": "relative import in a script run directly",
        "...x": "relative import beyond the top-level package",
    }
    assert not a.ok


def test_package_init_is_followed(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "import pkg\n",
            "pkg/__init__.py": "from .core import run\nfrom pkg import extra\n",
            "pkg/core.py": "import yaml\n",
            "pkg/extra.py": "",
        },
    )
    a = analyze(root, Path(BENCH))
    assert set(local(a)) == {"pkg", "pkg.core", "pkg.extra"}
    assert external(a) == {"yaml": ("PyYAML", False, False)}
    assert external(a) and a.external[0].imported_by == ["pkg/core.py"]


def test_from_package_import_name_is_a_submodule_or_an_attribute(tmp_path):
    root = project(
        tmp_path,
        {BENCH: "from pkg import sub, CONSTANT, helper\n", "pkg/__init__.py": "CONSTANT = 1\n", "pkg/sub.py": ""},
    )
    a = analyze(root, Path(BENCH))
    # `sub` is a file; CONSTANT and helper may be attributes of pkg: not missing modules
    assert set(local(a)) == {"pkg", "pkg.sub"}
    assert a.ok


def test_src_layout(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "import mylib\nfrom mylib.algo import solve\n",
            "src/mylib/__init__.py": "",
            "src/mylib/algo.py": "from .util import helper\n",
            "src/mylib/util.py": "",
        },
    )
    a = analyze(root, Path(BENCH))
    assert local(a) == {
        "mylib": ("src/mylib/__init__.py", True, False),
        "mylib.algo": ("src/mylib/algo.py", True, False),
        "mylib.util": ("src/mylib/util.py", True, False),
    }
    assert a.external == []


def test_namespace_package_without_init(tmp_path):
    root = project(tmp_path, {BENCH: "import ns.mod\n", "ns/mod.py": ""})
    a = analyze(root, Path(BENCH))
    assert local(a) == {"ns.mod": ("ns/mod.py", True, False)}
    assert a.external == []


def test_imports_inside_functions_and_classes(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "def main():\n    import helper\n    from numpy import array\n"
            "class K:\n    def m(self):\n        import scipy.optimize\n",
            "helper.py": "",
        },
    )
    a = analyze(root, Path(BENCH))
    # in function bodies: lazy (needed only if they run), so not required at start
    assert local(a) == {"helper": ("helper.py", True, True)}
    assert [d.lazy for d in a.local] == [True]
    assert set(external(a)) == {"numpy", "scipy"}
    assert all(p.lazy and p.optional for p in a.external)
    assert "helper (helper.py)  [lazy]" in render_tree(a)[1]


def test_an_import_both_at_module_level_and_lazily_is_required(tmp_path):
    root = project(tmp_path, {
        BENCH: "import helper\ndef f():\n    import helper, guarded\n    import numpy\n"
               "try:\n    import numpy\nexcept ImportError:\n    pass\n",
        "helper.py": "def g():\n    import deep\n", "deep.py": "import httpx\n", "guarded.py": ""})
    a = analyze(root, Path(BENCH))
    assert {d.module_name: (d.optional, d.lazy) for d in a.local} == {
        "helper": (False, False), "guarded": (True, True), "deep": (True, True)}
    # numpy: lazy in f, optional at module level: the stronger need is lazy
    assert {p.import_name: (p.optional, p.lazy) for p in a.external} == {
        "httpx": (True, True), "numpy": (True, True)}
    assert a.ok and a.lazy_undeclared() and not a.undeclared()


def test_imports_in_every_kind_of_block(tmp_path):
    source = """
import a_top
@decorator
async def f():
    async with x:
        import b_with
    for i in y:
        import c_for
    else:
        import d_for_else
while z:
    import e_while
match cmd:
    case [1, *rest]:
        import f_case
class K:
    import g_class
try:
    pass
except ImportError:
    import h_fallback
else:
    import i_try_else
finally:
    import j_finally
if x: import k_one_line
"""
    root = project(tmp_path, {BENCH: source})
    a = analyze(root, Path(BENCH))
    expected = "a_top b_with c_for d_for_else e_while f_case g_class h_fallback i_try_else j_finally k_one_line"
    assert sorted(external(a)) == expected.split()
    lazy = {p.import_name for p in a.external if p.lazy}
    assert lazy == {"b_with", "c_for", "d_for_else"}  # in the body of f
    assert not any(optional for name, (_, _, optional) in external(a).items() if name not in lazy)


def test_try_except_import_error_is_optional(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: (
                "try:\n    import ujson as json\nexcept ImportError:\n    import json\n"
                "try:\n    import fast_helper\nexcept (ValueError, ModuleNotFoundError) as e:\n    fast_helper = None\n"
                "try:\n    from pkg import gone_mod\n    import pkg.missing\nexcept ImportError:\n    pass\n"
                "try:\n    import must_have\nexcept ValueError:\n    pass\n"
                "try:\n    def later():\n        import late_dep\nexcept ImportError:\n    pass\n"
                "try:\n    import anything_goes\nexcept:\n    pass\n"
            ),
            "fast_helper.py": "import orjson\nimport shared\n",
            "shared.py": "",
            "pkg/__init__.py": "",
        },
    )
    a = analyze(root, Path(BENCH))
    ext = external(a)
    assert ext["ujson"][2] is True
    assert ext["orjson"][2] is True  # only reachable through an optional local import
    assert ext["must_have"][2] is False  # `except ValueError` does not catch a failed import
    # a try around a def does not guard the body's imports: lazy, not optional
    assert next(p for p in a.external if p.import_name == "late_dep").lazy
    assert ext["anything_goes"][2] is True  # a bare except catches ImportError too
    assert "json" not in ext
    assert local(a)["fast_helper"] == ("fast_helper.py", True, True)
    assert local(a)["shared"] == ("shared.py", True, True)
    assert local(a)["pkg.missing"] == ("pkg/missing.py", False, True)
    assert a.missing_local() == []
    assert [p.import_name for p in a.undeclared()] == ["must_have"]
    assert [p.import_name for p in a.lazy_undeclared()] == ["late_dep"]


def test_a_module_imported_both_ways_is_required(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "try:\n    import helper\nexcept ImportError:\n    pass\nimport other\n",
            "other.py": "import helper\n",
            "helper.py": "import numpy\nimport deep\n",
            "deep.py": "",
        },
    )
    a = analyze(root, Path(BENCH))
    assert local(a)["helper"] == ("helper.py", True, False)
    assert external(a)["numpy"][2] is False
    # the tree expands helper under its required importer and marks the guarded edge optional
    direct = next(c for c in a.root.children if c.module_name == "helper")
    assert direct.optional and direct.children == []
    under_other = next(c for c in a.root.children if c.module_name == "other").children[0]
    assert not under_other.optional and [c.module_name for c in under_other.children] == ["deep"]
    assert local(a)["deep"] == ("deep.py", True, False)


def test_type_checking_blocks_are_ignored(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: (
                "from typing import TYPE_CHECKING\nimport typing\n"
                "if TYPE_CHECKING:\n    import pandas\n    from typing_only import T\n"
                "if typing.TYPE_CHECKING:\n    import polars\nelse:\n    import runtime_dep\n"
                "if sys.version_info < (3, 8):\n    import old_dep\nelif TYPE_CHECKING:\n    import stubs_only\n"
            ),
        },
    )
    a = analyze(root, Path(BENCH))
    assert set(external(a)) == {"runtime_dep", "old_dep"}
    assert a.local == []


def test_import_cycle_visits_each_module_once(tmp_path):
    root = project(
        tmp_path,
        {BENCH: "import a\n", "a.py": "import b\nimport a\n", "b.py": "import c\n", "c.py": "import a\nimport b\n"},
    )
    a = analyze(root, Path(BENCH))
    assert [d.module_name for d in a.local] == ["a", "b", "c"]
    lines = render_tree(a)
    assert lines[:4] == [
        BENCH,
        "└── a (a.py)",
        "    └── b (b.py)",
        "        └── c (c.py)",
    ]
    assert lines[4:6] == ["            ├── a (a.py)  (expanded elsewhere)", "            └── b (b.py)  (expanded elsewhere)"]


def test_a_long_import_chain_keeps_every_module_and_a_json_safe_tree(tmp_path):
    files = {BENCH: "import m0\n"}
    files.update({f"m{i}.py": f"import m{i + 1}\n" for i in range(79)})
    files["m79.py"] = "import numpy\n"
    root = project(tmp_path, files)
    a = analyze(root, Path(BENCH))
    assert [d.module_name for d in a.local] == [f"m{i}" for i in range(80)]
    assert external(a)["numpy"][2] is False  # found at the end of the chain, and required
    depth, node = 0, a.root
    while node.children:
        depth, node = depth + 1, node.children[0]
    assert depth == deps.MAX_TREE_DEPTH + 1  # the module past the limit is shown, its imports not
    assert DependencyAnalysis.model_validate_json(a.model_dump_json()) == a


def test_syntax_error_is_reported_and_the_rest_still_analysed(tmp_path):
    root = project(
        tmp_path,
        {BENCH: "import helper\n", "helper.py": "import numpy\ndef broken(:\n    pass\nx = (\nimport after\n"},
    )
    a = analyze(root, Path(BENCH))
    assert [e.path for e in a.syntax_errors] and {e.path for e in a.syntax_errors} == {"helper.py"}
    assert min(e.line for e in a.syntax_errors) == 2
    assert "numpy" in external(a)
    assert not a.ok


def test_invalid_utf8_does_not_crash(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "import helper\nimport latin\n",
            "helper.py": b"import numpy\ns = '\xff\xfe'\nimport caf\xe9\n",
            "latin.py": b"# -*- coding: latin-1 -*-\nimport scipy\ns = '\xe9'\n",
        },
    )
    a = analyze(root, Path(BENCH))
    assert {e.path for e in a.syntax_errors} == {"helper.py"}
    assert [e.line for e in a.syntax_errors if "UTF-8" in e.message] == [2]
    assert set(external(a)) == {"numpy", "scipy"}  # the undecodable name is skipped, not guessed


def test_standard_library_is_never_external(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: (
                "from __future__ import annotations\nimport os, sys, json, _thread, collections.abc\n"
                "from concurrent.futures import ThreadPoolExecutor\nimport xml.etree.ElementTree as ET\n"
                "import importlib.metadata, tomllib, sqlite3, asyncio\n"
            ),
        },
    )
    a = analyze(root, Path(BENCH))
    assert a.external == [] and a.local == [] and a.ok


def test_import_names_map_to_distributions(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: (
                "import yaml\nfrom sklearn.svm import SVC\nfrom PIL import Image\nimport cv2\nimport bs4\n"
                "from dateutil import parser\nimport attr\nfrom google.protobuf import message\nimport numpy\n"
            )
        },
        pyproject=None,
    )
    a = analyze(root, Path(BENCH))
    assert {name: dist for name, (dist, _, _) in external(a).items()} == {
        "yaml": "PyYAML",
        "sklearn": "scikit-learn",
        "PIL": "Pillow",
        "cv2": "opencv-python",
        "bs4": "beautifulsoup4",
        "dateutil": "python-dateutil",
        "attr": "attrs",
        "google.protobuf": "protobuf",
        "numpy": "numpy",
    }
    # no pyproject.toml: nothing is declared
    assert all(not declared for _, declared, _ in external(a).values())


def test_declared_and_undeclared_against_pyproject(tmp_path):
    pyproject = """dependencies = ["PyYAML>=6", "scikit_learn ; python_version >= '3.9'"]
[project.optional-dependencies]
plots = ["Matplotlib[extra]>=3"]
[dependency-groups]
dev = ["pytest", {include-group = "lint"}]
lint = ["ruff"]
[tool.uv]
dev-dependencies = ["opencv-python-headless"]
"""
    root = project(
        tmp_path,
        {
            BENCH: (
                "import yaml, sklearn, matplotlib.pyplot, pytest, cv2\n"
                "import requests\nfrom PIL import Image\n"
            )
        },
        pyproject=pyproject,
    )
    a = analyze(root, Path(BENCH))
    ext = external(a)
    for name in ("yaml", "sklearn", "matplotlib", "pytest"):
        assert ext[name][1] is True, name
    assert ext["cv2"] == ("opencv-python-headless", True, False)  # an accepted alternative counts
    assert ext["requests"] == ("requests", False, False)
    assert ext["PIL"] == ("Pillow", False, False)
    assert [p.distribution for p in a.undeclared()] == ["Pillow", "requests"]
    assert a.fix_command() == "uv add Pillow requests"
    assert a.fix_command("/opt/my uv/uv") == "'/opt/my uv/uv' add Pillow requests"


def test_odd_pyproject_shapes_do_not_crash(tmp_path):
    pyproject = 'dependencies = "numpy"\noptional-dependencies = ["x"]\n[tool]\nuv = 3\n[dependency-groups]\ndev = ["numpy"]\n'
    root = project(tmp_path, {BENCH: "import numpy\n"}, pyproject=pyproject)
    assert external(analyze(root, Path(BENCH))) == {"numpy": ("numpy", True, False)}


def test_unreadable_pyproject_is_a_one_line_error(tmp_path):
    root = project(tmp_path, {BENCH: "import numpy\n", "pyproject.toml": "[project\nname="}, pyproject=None)
    with pytest.raises(EvopilotError) as e:
        analyze(root, Path(BENCH))
    assert "pyproject.toml" in str(e.value) and "\n" not in str(e.value)


def test_missing_local_file(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "import helpers.io\nimport helpers.gone\nfrom helpers.also_gone import x\nfrom helpers import attr\n",
            "helpers/__init__.py": "attr = 1\n",
            "helpers/io.py": "from .missing_rel import y\nimport helpers.io.deeper\n",
        },
    )
    a = analyze(root, Path(BENCH))
    missing = {d.module_name: (d.file_path, d.problem) for d in a.missing_local()}
    assert missing == {
        "helpers.gone": ("helpers/gone.py", "no such file"),
        "helpers.also_gone": ("helpers/also_gone.py", "no such file"),
        "helpers.missing_rel": ("helpers/missing_rel.py", "no such file"),
        "helpers.io.deeper": (None, "'helpers.io' is not a package"),
    }
    assert not a.ok
    lines = render_tree(a)
    assert "├── helpers.gone (helpers/gone.py)  MISSING: no such file" in lines


def test_results_serialise_to_json_and_back(tmp_path):
    root = project(tmp_path, {BENCH: "import helper\nimport yaml\nimport gone.x\n", "helper.py": "", "gone/__init__.py": ""})
    a = analyze(root, Path(BENCH))
    data = json.loads(json.dumps(a.model_dump(mode="json")))
    assert set(data) == {"benchmark", "root", "local", "external", "syntax_errors"}
    assert set(data["root"]) == {"module_name", "file_path", "exists", "optional", "lazy", "problem", "children"}
    assert set(data["external"][0]) == {"import_name", "distribution", "declared", "optional", "lazy", "imported_by"}
    assert DependencyAnalysis.model_validate(data) == a


def test_render_tree_marks_problems(tmp_path):
    root = project(
        tmp_path,
        {
            BENCH: "import helper\nimport yaml\ntry:\n    import ujson\nexcept ImportError:\n    pass\n",
            "helper.py": "import helper_gone.x\nimport numpy\ndef f(:\n",
            "helper_gone/__init__.py": "",
        },
        pyproject='dependencies = ["numpy"]\n',
    )
    lines = render_tree(analyze(root, Path(BENCH)))
    assert lines == [
        BENCH,
        "└── helper (helper.py)",
        "    ├── helper_gone (helper_gone/__init__.py)",
        "    └── helper_gone.x (helper_gone/x.py)  MISSING: no such file",
        "external packages:",
        "  numpy  declared  (imported by helper.py)",
        "  ujson  NOT DECLARED in pyproject.toml  [optional]  (imported by benchmarks/bench.py)",
        "  yaml -> PyYAML  NOT DECLARED in pyproject.toml  (imported by benchmarks/bench.py)",
        "syntax errors:",
        "  helper.py:3: missing ')'",
        "fix: uv add PyYAML",
    ]


def ast_imports(source: bytes) -> list[tuple[int, str, tuple[str, ...], int, bool]]:
    """The reference: the same extraction done with the `ast` module."""
    guards = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    found = []

    def names_of(node: ast.expr | None) -> set[str]:
        if node is None:
            return set()
        return {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node) if isinstance(n, ast.Name | ast.Attribute)}

    def visit(body: list[ast.stmt], optional: bool, lazy: bool = False) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Import):
                found.extend((0, a.name, (), stmt.lineno, optional, lazy) for a in stmt.names)
            elif isinstance(stmt, ast.ImportFrom) and stmt.module != "__future__":
                names = tuple(a.name for a in stmt.names if a.name != "*")
                found.append((stmt.level, stmt.module or "", names, stmt.lineno, optional, lazy))
            elif isinstance(stmt, ast.Try | ast.TryStar):
                guarded = any(h.type is None or names_of(h.type) & guards for h in stmt.handlers)
                visit(stmt.body, optional or guarded, lazy)
                for part in (*[h.body for h in stmt.handlers], stmt.orelse, stmt.finalbody):
                    visit(part, optional, lazy)
            elif isinstance(stmt, ast.If):
                test = stmt.test
                type_checking = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
                )
                if not type_checking:
                    visit(stmt.body, optional, lazy)
                visit(stmt.orelse, optional, lazy)
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(stmt.body, False, True)
            else:
                for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                    for child in getattr(stmt, field, []):
                        visit(child.body if hasattr(child, "pattern") or isinstance(child, ast.excepthandler) else [child], optional, lazy)

    visit(ast.parse(source).body, False)
    return sorted(found)


@pytest.mark.slow
def test_extraction_agrees_with_ast_on_the_standard_library():
    from evopilot.core.analysis.imports import extract

    stdlib = Path(ast.__file__).parent
    files = [stdlib / "typing.py"]  # TYPE_CHECKING-free but full of guarded and nested imports
    for pattern in ("*.py", "importlib/**/*.py", "email/*.py", "concurrent/**/*.py", "json/*.py"):
        files += [p for p in sorted(stdlib.glob(pattern)) if p.stat().st_size < 40_000]
    checked = 0
    for path in files:
        source = path.read_bytes()
        try:
            expected = ast_imports(source)
        except SyntaxError:
            continue  # test data with deliberate errors
        got = sorted(tuple(i) for i in extract(source).imports)
        assert got == expected, path
        checked += 1
    assert checked > 150


def test_threads_can_analyse_at_once(tmp_path):
    files = {BENCH: "".join(f"import m{i}\n" for i in range(40))}
    files.update({f"m{i}.py": "import numpy\n" * 200 + f"import m{(i + 7) % 40}\n" for i in range(40)})
    root = project(tmp_path, files)
    expected = analyze(root, Path(BENCH))
    with ThreadPoolExecutor(4) as pool:  # one shared parser, memo and cache directory
        results = list(pool.map(lambda _: analyze(root, Path(BENCH), cache_dir=tmp_path / "c"), range(8)))
    assert all(r == expected for r in results)


# --- errors ------------------------------------------------------------------------------------


def test_benchmark_must_exist_and_be_inside_the_project(tmp_path):
    root = project(tmp_path, {BENCH: ""})
    outside = write(tmp_path, {"elsewhere/b.py": ""}) / "elsewhere" / "b.py"
    cases = [
        (root, Path("benchmarks/nope.py"), "benchmark not found"),
        (root, outside, "outside the project"),
        (root, Path("../elsewhere/b.py"), "outside the project"),
        (tmp_path / "no-such-project", Path(BENCH), "project directory not found"),
    ]
    for project_root, bench, message in cases:
        with pytest.raises(EvopilotError) as e:
            analyze(project_root, bench)
        assert message in str(e.value) and "\n" not in str(e.value)
    # absolute paths inside the project are fine
    assert analyze(root, root / BENCH).benchmark == BENCH


# --- cache -------------------------------------------------------------------------------------


@pytest.fixture
def quick_settle(monkeypatch):
    """Files count as settled (their stat trusted) 0.3 s after a change instead of 2 s."""
    monkeypatch.setattr(deps, "_RACY_NS", 300_000_000)

    def settle() -> None:
        time.sleep(0.35)

    return settle


@pytest.fixture
def count_parses(monkeypatch):
    calls: list[int] = []
    real = deps.extract

    def counting(source: bytes):
        calls.append(len(source))
        return real(source)

    monkeypatch.setattr(deps, "extract", counting)
    return calls


def test_unchanged_project_is_served_from_the_cache(tmp_path, quick_settle, count_parses, monkeypatch):
    root = project(tmp_path, {BENCH: "import helper\nimport yaml\n", "helper.py": "import pkg.gone\n", "pkg/__init__.py": ""})
    cache = tmp_path / "cache"
    quick_settle()
    first = analyze(root, Path(BENCH), cache_dir=cache)
    assert len(count_parses) == 3  # bench.py, helper.py, pkg/__init__.py
    results = list(cache.glob("result-*.json"))
    assert len(results) == 1

    # a hit re-reads no source and rebuilds nothing: building the graph would fail here
    monkeypatch.setattr(deps, "_Graph", None)
    second = analyze(root, Path(BENCH), cache_dir=cache)  # from this process's memory
    assert second is first
    deps._RESULTS.clear()  # as a new process would: from the result file
    third = analyze(root, Path(BENCH), cache_dir=cache)
    assert third == first and third is not first and len(count_parses) == 3


def test_content_change_invalidates_even_within_the_same_second(tmp_path, count_parses):
    root = project(tmp_path, {BENCH: "import helper\n", "helper.py": "import numpy\n"})
    cache = tmp_path / "cache"
    assert set(external(analyze(root, Path(BENCH), cache_dir=cache))) == {"numpy"}
    # same size, written at once: the stat may not change, so a recent file is always re-hashed
    (root / "helper.py").write_text("import scipy\n")
    assert set(external(analyze(root, Path(BENCH), cache_dir=cache))) == {"scipy"}
    assert len(count_parses) == 3  # the benchmark itself was not parsed again (same hash)


def test_recent_changes_are_seen_even_when_the_stat_does_not_move(tmp_path, monkeypatch):
    # a coarse file-system clock: rewriting a file within one tick leaves every timestamp as it was
    monkeypatch.setattr(deps, "_fingerprint", lambda st: None if st is None else [st.st_size])
    root = project(tmp_path, {BENCH: "import helper\n", "helper.py": "import numpy\n"})
    cache = tmp_path / "cache"
    assert set(external(analyze(root, Path(BENCH), cache_dir=cache))) == {"numpy"}
    (root / "helper.py").write_text("import scipy\n")
    assert set(external(analyze(root, Path(BENCH), cache_dir=cache))) == {"scipy"}


@pytest.mark.slow
def test_changes_after_settling_invalidate_the_result(tmp_path, quick_settle, count_parses):
    root = project(tmp_path, {BENCH: "import helper\nimport pkg.later\n", "helper.py": "import numpy\n", "pkg/__init__.py": ""})
    cache = tmp_path / "cache"
    quick_settle()
    a = analyze(root, Path(BENCH), cache_dir=cache)
    assert [d.module_name for d in a.missing_local()] == ["pkg.later"]

    (root / "helper.py").write_text("import scipy\n")  # content
    quick_settle()
    assert set(external(analyze(root, Path(BENCH), cache_dir=cache))) == {"scipy"}

    write(root, {"pkg/later.py": "import yaml\n"})  # a new file: only the directory listing changes
    quick_settle()
    b = analyze(root, Path(BENCH), cache_dir=cache)
    assert b.missing_local() == [] and set(external(b)) == {"scipy", "yaml"}

    write(root, {"pyproject.toml": '[project]\nname = "proj"\ndependencies = ["scipy", "pyyaml"]\n'})
    quick_settle()
    assert analyze(root, Path(BENCH), cache_dir=cache).ok
    # only changed files were parsed again: 3 at first, then helper.py, then pkg/later.py
    assert len(count_parses) == 5


def test_cache_files_are_private(tmp_path):
    root = project(tmp_path, {BENCH: "import yaml\nimport notinstalled\n"})
    cache = tmp_path / "home" / "cache" / "deps"
    analyze(root, Path(BENCH), cache_dir=cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    files = list(cache.iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert not [f for f in files if f.name.startswith(".tmp-")]


def test_corrupt_cache_is_ignored(tmp_path):
    root = project(tmp_path, {BENCH: "import helper\n", "helper.py": "import numpy\n"})
    cache = tmp_path / "cache"
    expected = analyze(root, Path(BENCH), cache_dir=cache)
    for f in cache.iterdir():
        f.write_bytes(b"{not json")
    assert analyze(root, Path(BENCH), cache_dir=cache) == expected


@pytest.mark.slow
def test_concurrent_writers_share_one_cache(tmp_path):
    files = {BENCH: "".join(f"import m{i}\n" for i in range(30))}
    files.update({f"m{i}.py": f"import numpy\nimport m{(i + 1) % 30}\n" for i in range(30)})
    root = project(tmp_path, files)
    cache = tmp_path / "cache"
    script = (
        "import sys; from pathlib import Path; from core.analysis import analyze\n"
        "for _ in range(5):\n"
        "    a = analyze(Path(sys.argv[1]), Path(sys.argv[2]), cache_dir=Path(sys.argv[3]))\n"
        "    assert len(a.local) == 30, a.local\n"
    )
    repo = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(root), BENCH, str(cache)], cwd=repo, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    # whatever won the race is a complete cache that agrees with a fresh analysis
    for f in cache.glob("imports-*.json"):
        json.loads(f.read_bytes())
    assert analyze(root, Path(BENCH), cache_dir=cache) == analyze(root, Path(BENCH))


# --- fix with real uv, offline -----------------------------------------------------------------


def make_wheel(directory: Path, dist: str, version: str, module: str) -> None:
    """A minimal pure-Python wheel providing ``module``: enough for uv to resolve and install."""
    info = f"{dist.replace('-', '_')}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": b"",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def digest(data: bytes) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{p},{digest(d)},{len(d)}\n" for p, d in files.items()) + f"{info}/RECORD,,\n"
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(directory / f"{dist.replace('-', '_')}-{version}-py3-none-any.whl", "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
        z.writestr(f"{info}/RECORD", record)


@pytest.fixture
def offline_uv(tmp_path, monkeypatch):
    """uv that resolves only against a local directory of wheels: no network, no user config."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "PyYAML", "6.0.99", "yaml")
    make_wheel(wheels, "fancy-dist", "1.0", "fancymod")
    for name, value in {
        "UV_OFFLINE": "1",
        "UV_NO_INDEX": "1",
        "UV_FIND_LINKS": str(wheels),
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_CONFIG": "1",
    }.items():
        monkeypatch.setenv(name, value)
    return wheels


def test_fix_adds_undeclared_packages_with_uv(tmp_path, offline_uv):
    root = project(
        tmp_path,
        {BENCH: "import yaml\ntry:\n    import ujson\nexcept ImportError:\n    pass\n"},
        pyproject='requires-python = ">=3.11"\ndependencies = []\n',
    )
    before = analyze(root, Path(BENCH))
    assert not before.ok and before.fix_command() == "uv add PyYAML"
    assert fix(root, before) == ["PyYAML"]
    pyproject = (root / "pyproject.toml").read_text()
    assert "pyyaml>=6.0.99" in pyproject.lower()
    assert "ujson" not in pyproject  # optional imports are left alone
    assert "pyyaml" in (root / "uv.lock").read_text()
    after = analyze(root, Path(BENCH))
    assert after.ok and fix(root, after) == []


def test_installed_distributions_of_the_project_venv_name_unusual_imports(tmp_path, offline_uv):
    root = project(tmp_path, {BENCH: "import fancymod\n"}, pyproject='requires-python = ">=3.11"\ndependencies = []\n')
    assert external(analyze(root, Path(BENCH))) == {"fancymod": ("fancymod", False, False)}
    subprocess.run(["uv", "add", "fancy-dist"], cwd=root, check=True, capture_output=True)
    # pyproject now lists fancy-dist, and the project's .venv says it provides `fancymod`
    assert external(analyze(root, Path(BENCH), cache_dir=tmp_path / "cache")) == {"fancymod": ("fancy-dist", True, False)}


def test_fix_failure_is_a_one_line_error(tmp_path, offline_uv):
    root = project(tmp_path, {BENCH: "import no_such_dist_anywhere\n"}, pyproject='requires-python = ">=3.11"\ndependencies = []\n')
    analysis = analyze(root, Path(BENCH))
    with pytest.raises(EvopilotError) as e:
        fix(root, analysis)
    message = str(e.value)
    assert message.startswith("uv add no_such_dist_anywhere failed") and "\n" not in message
    assert "no-such-dist-anywhere" in message.partition("failed")[2]  # uv's reason names it
    with pytest.raises(EvopilotError, match="not found"):
        fix(root, analysis, uv_path=str(tmp_path / "no-uv-here"))
    assert "no_such_dist_anywhere" not in (root / "pyproject.toml").read_text()


def test_core_analysis_stays_free_of_textual():
    code = "import sys, core.analysis; print(any(m.startswith(('textual', 'tui')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_parsing_in_a_forked_child_gives_what_parsing_here_does(monkeypatch):
    """Enough source to parse is shared with a forked child (deps._extract_all): the same
    imports, errors and order as parsing each file here, bad files included."""
    from evopilot.core.analysis.imports import extract

    monkeypatch.setattr(deps, "_FORK_BYTES", 1)
    forks: list[int] = []
    real_fork = deps.os.fork
    monkeypatch.setattr(deps.os, "fork", lambda: forks.append(1) or real_fork())
    sources = [
        b"import os\ntry:\n    import yaml\nexcept ImportError:\n    yaml = None\n",
        b"from . import a, b\ndef f():\n    import lazy_one\n",
        b"import ok\ndef broken(:\n    pass\nimport after\n",
        b"import caf\xe9\nimport fine\n",
        b"",
        b"from ..pkg.mod import (x,\n    y)\n" * 50,
    ]
    assert deps._extract_all(sources) == [extract(s) for s in sources]
    assert forks == [1]


@pytest.mark.parametrize("package", ["rich", "textual"])
def test_parsing_the_guessed_files_ahead_changes_nothing(tmp_path, monkeypatch, package):
    """The files a regex guess says the benchmark reaches are parsed ahead in one batch
    (deps._compute); on a copy of a real package the analysis is the one built by parsing
    each file only when it is reached (the guess finds nothing), cold and from the cache."""
    import shutil

    src = Path(__import__(package).__file__).parent
    root = tmp_path / "proj"
    shutil.copytree(src, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    write(root, {"bench.py": f"import {package}\n", "pyproject.toml": "[project]\nname = 'x'\ndependencies = []\n"})
    ahead = analyze(root, Path("bench.py"))
    cached = analyze(root, Path("bench.py"), cache_dir=tmp_path / "cache")
    monkeypatch.setattr(deps, "_guess_imports", lambda path: deps.FileImports([], []))
    reached = analyze(root, Path("bench.py"))
    assert len(reached.local) > 50
    assert ahead == reached == cached


def test_a_bad_pyproject_while_a_child_parses_is_reported_and_leaves_no_child(tmp_path, monkeypatch):
    """pyproject.toml is read while a forked child parses (deps._extract_all's ``meanwhile``):
    its error is the analysis's error, and the child is waited for, not left running."""
    import os

    monkeypatch.setattr(deps, "_FORK_BYTES", 1)
    children: list[int] = []
    real_fork = os.fork
    monkeypatch.setattr(deps.os, "fork", lambda: (pid := real_fork()) and children.append(pid) or pid)
    files = {BENCH: "import helper\n" + "x = 1\n" * 2000, "benchmarks/helper.py": "import os\n" * 2000}
    root = project(tmp_path, files, pyproject="[project\nname = 'x'\n")
    with pytest.raises(EvopilotError, match="pyproject.toml: cannot read"):
        analyze(root, Path(BENCH), cache_dir=tmp_path / "cache")
    assert len(children) == 1
    with pytest.raises(ChildProcessError):  # already waited for
        os.waitpid(children[0], os.WNOHANG)
