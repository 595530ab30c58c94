"""Bad command lines: one line naming the command and its --help, exit 2, nothing changed."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("argv, expect", [
    (["run", "p", "b.py", "--priority", "abc"],
     "evopilot: error: run: --priority: not an integer: 'abc' (see evopilot run --help)\n"),
    (["run", "p", "b.py", "--timeout", "soon"],
     "evopilot: error: run: --timeout: not a number: 'soon' (see evopilot run --help)\n"),
    (["jobs", "--bogus"], "evopilot: error: jobs: unrecognized arguments: --bogus (see evopilot jobs --help)\n"),
    (["queue", "pause", "5"], "evopilot: error: queue: unrecognized arguments: 5 (see evopilot queue --help)\n"),
    (["queue", "resume", "5", "6"],
     "evopilot: error: queue: unrecognized arguments: 5 6 (see evopilot queue --help)\n"),
    (["project", "add"],
     "evopilot: error: project add: the following arguments are required: path (see evopilot project add --help)\n"),
    (["nosuch"], None),
    (["logs", "x"], "evopilot: error: logs: job: not an integer: 'x' (see evopilot logs --help)\n"),
])
def test_argument_errors_are_one_line_with_the_hint(cli, argv, expect):
    code, out, err = cli(*argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "usage:" not in err, err
    if expect is None:
        assert err.startswith("evopilot: error: argument COMMAND: invalid choice: 'nosuch'") or \
            err.startswith("evopilot: error: COMMAND: invalid choice: 'nosuch'"), err
        assert err.endswith("(see evopilot --help)\n")
    else:
        assert err == expect


def test_queue_pause_with_a_stray_argument_pauses_nothing(cli):
    assert cli("queue", "pause", "5")[0] == 2
    assert json.loads(cli("queue", "--json")[1])["paused"] is False


def test_jobs_of_an_unknown_project_is_an_error(cli, make_project):
    cli("project", "add", make_project({"benchmarks/a.py": ""}))
    code, out, err = cli("jobs", "--project", "nosuch")
    assert (code, out) == (2, "") and err == "evopilot: error: no project named 'nosuch' (see `evopilot project list`)\n"
    assert cli("jobs", "--project", "proj") == (0, "no jobs\n", "")


def test_bench_add_resolves_paths_against_the_project(cli, make_project, tmp_path, monkeypatch):
    root = make_project({"benchmarks/a.py": "", "extra/b.py": "", "notes.txt": "", "extra/c.py": ""})
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "extra").mkdir()
    (tmp_path / "elsewhere" / "extra" / "b.py").write_text("")  # same path under the cwd: not used
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli("project", "add", root)[0] == 0
    code, _, err = cli("bench", "add", "proj", "does/not/exist.py")
    assert code == 2 and "does/not/exist.py: no such file" in err and err.count("\n") == 1
    code, _, err = cli("bench", "add", "proj", "../elsewhere/extra/b.py")
    assert code == 2 and "outside the project directory" in err
    code, _, err = cli("bench", "add", "proj", tmp_path / "elsewhere" / "extra" / "b.py")
    assert code == 2 and "outside the project directory" in err
    code, _, err = cli("bench", "add", "proj", "notes.txt")
    assert code == 2 and "notes.txt: not a Python file" in err
    code, _, err = cli("bench", "add", "proj", "extra")
    assert code == 2 and "not a file" in err
    code, out, err = cli("bench", "add", "proj", "extra/b.py", root / "extra" / "c.py")
    assert code == 0, err
    assert out == "added benchmark extra/b.py\nadded benchmark extra/c.py\n"
    paths = [b["path"] for b in json.loads(cli("bench", "list", "proj", "--json")[1])]
    assert paths == ["benchmarks/a.py", "extra/b.py", "extra/c.py"]


def test_the_same_directory_twice_needs_force(cli, make_project):
    root = make_project({"benchmarks/a.py": ""})
    assert cli("project", "add", root)[0] == 0
    code, _, err = cli("project", "add", root, "--name", "again")
    assert code == 2 and f"{root} is already the project 'proj' (add it again with --force)" in err
    assert [p["name"] for p in json.loads(cli("project", "list", "--json")[1])] == ["proj"]
    assert cli("project", "add", root, "--name", "again", "--force")[0] == 0
    assert [p["name"] for p in json.loads(cli("project", "list", "--json")[1])] == ["again", "proj"]
