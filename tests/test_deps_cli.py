"""`evopilot deps` and the dependency check before every run, through the CLI."""

from __future__ import annotations

import json


def test_deps_reports_tree_and_packages(cli, make_project):
    root = make_project({
        "pyproject.toml": "[project]\nname='p'\nversion='0'\ndependencies=['numpy']\n",
        "benchmarks/b.py": "import helpers.io\nimport numpy\nimport yaml\nimport json\n",
        "helpers/__init__.py": "",
        "helpers/io.py": "from .missing_mod import thing\n",
    })
    cli("project", "add", root)
    code, out, _ = cli("deps", "proj", "b.py", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is False
    ext = {p["import_name"]: p for p in data["external"]}
    assert ext["numpy"]["declared"] is True and ext["yaml"]["distribution"] == "PyYAML"
    assert ext["yaml"]["declared"] is False and "json" not in ext
    missing = [d["module_name"] for d in data["local"] if not d["exists"]]
    assert missing == ["helpers.missing_mod"]
    assert data["fix_command"] == "uv add PyYAML"
    code, out, _ = cli("deps", "proj", "b.py")
    assert code == 1 and "PyYAML" in out and "--fix" in out


def test_run_refuses_missing_dependencies_unless_no_check(cli, make_project):
    root = make_project({"benchmarks/b.py": "import not_synced_helper\nprint('[1/1]')\n"})
    cli("project", "add", root)
    code, _, err = cli("run", "proj", "b.py")
    assert code == 2 and ("missing local modules" in err or "packages not in pyproject" in err)
    assert "--no-check" in err and err.count("\n") == 1
    assert json.loads(cli("jobs", "--json")[1]) == []
    code, out, err = cli("run", "proj", "b.py", "--no-check", "--wait")
    assert code == 1  # it runs, and fails on the import as the check predicted
    _setup, job = json.loads(cli("jobs", "--json")[1])
    assert "ModuleNotFoundError" in job["error_message"]


def test_lazy_imports_warn_and_run_module_level_ones_still_stop(cli, make_project):
    root = make_project({
        "pyproject.toml": "[project]\nname='p'\nversion='0'\ndependencies=[]\n",
        # like httpx's `trio` import: in a function, behind a runtime check
        "benchmarks/lazy.py": "import sys\ndef backend():\n    if 'trio' in sys.modules:\n        import trio\n"
                              "        import helpers.gone\nprint('ran')\n",
        "benchmarks/eager.py": "import trio\n", "helpers/__init__.py": "",
    })
    cli("project", "add", root)
    code, out, _ = cli("deps", "proj", "lazy.py")
    assert code == 0 and "helpers.gone (helpers/gone.py)  MISSING: no such file  [lazy]" in out
    assert "trio  NOT DECLARED in pyproject.toml  [lazy]  (imported by" in out
    code, out, err = cli("run", "proj", "lazy.py", "--wait")
    assert code == 0, err
    assert err == ("evopilot: warning: benchmarks/lazy.py imports inside functions (lazy, needed only if "
                   "they run): helpers.gone (helpers/gone.py, missing), trio (not in pyproject.toml)\n")
    _setup, job = json.loads(cli("jobs", "--json")[1])
    assert job["status"] == "succeeded"
    code, _, err = cli("run", "proj", "eager.py")
    assert code == 2 and "packages not in pyproject.toml: trio" in err
