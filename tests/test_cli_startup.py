"""`evopilot jobs --json` without the engine: the same output as the engine's, read only when
nothing needs reconciling, and without loading pydantic, asyncio or the engine."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from evopilot.core.config import Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.engine import Engine
from evopilot.core.jobs import listing
from evopilot.core.locations import db_path
from tests.conftest import REPO

RESULTS = ("import json, os\njson.dump({'score': 0.5, 'time': {'value': 1.5, 'unit': 's', "
           "'higher_is_better': False}}, open(os.environ['EVOPILOT_RESULTS'], 'w'))\n")


def engine_listing(home: Path, **filters) -> list[dict]:
    async def run():
        async with await Engine.open(Config(), home) as engine:
            places = await engine.queue_positions()
            return [{**j.public(), "position": places.get(j.id)} for j in await engine.jobs(**filters)]
    return json.loads(json.dumps(asyncio.run(run())))


def test_the_engine_free_listing_prints_what_the_engine_does(cli, ready_project, home):
    cli("project", "add", ready_project({"benchmarks/a.py": RESULTS, "benchmarks/b.py": "raise SystemExit(2)\n"}))
    cli("run", "proj", "a.py", "b.py", "--wait", "--arg", "x")
    cli("queue", "pause")
    cli("run", "proj", "b.py", "a.py", "--priority", "3")
    fast = listing.read_jobs(db_path(home), status=None, project=None, host=None, limit=None)
    assert fast is not None and len(fast) == 4
    assert fast == engine_listing(home)
    assert json.loads(cli("jobs", "--json")[1]) == fast
    some = listing.read_jobs(db_path(home), status=["queued"], project="proj", host="local", limit=1)
    assert [j["id"] for j in some] == [4] and some[0]["position"] == 2


def test_running_jobs_take_the_engines_path_unless_a_worker_beats(cli, ready_project, home):
    cli("project", "add", ready_project({"benchmarks/a.py": "import time\ntime.sleep(30)\n"}))
    cli("run", "proj", "a.py")  # running, and nobody watches it
    args = dict(status=None, project=None, host=None, limit=None)
    assert listing.read_jobs(db_path(home), **args) is None

    async def beat():
        async with await Engine.open(Config(), home) as engine:
            async with jobs_db.transaction(engine.db):
                await jobs_db.set_meta(engine.db, "worker_beat", f"elsewhere:1 {time.time()}")
    asyncio.run(beat())
    (job,) = listing.read_jobs(db_path(home), **args)
    assert job["status"] == "running"
    assert cli("kill", "1")[0] == 0


def test_jobs_json_loads_neither_pydantic_nor_asyncio(cli, ready_project, home):
    cli("project", "add", ready_project({"benchmarks/a.py": ""}))
    cli("run", "proj", "a.py", "--wait")
    code = ("import sys\nfrom evopilot.tui.cli import main\nmain(['jobs', '--json'])\n"
            "print(sorted(m for m in ('pydantic', 'asyncio', 'aiosqlite', 'evopilot.core.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=os.environ, check=True).stdout
    listed, _, loaded = out.rstrip("\n").rpartition("\n")
    assert json.loads(listed)[0]["status"] == "succeeded"
    assert loaded == "[]", out


def test_deps_without_the_engine_says_what_the_engines_does(cli, ready_project, home):
    cli("project", "add", ready_project({"benchmarks/b.py": "import helper\nimport yaml\n", "helper.py": "",
                                        "pyproject.toml": "[project]\nname='p'\nversion='0'\ndependencies=[]\n"}))
    found = listing.analyse_benchmark(home, "proj", "b.py", tree=True)
    assert found is not None

    async def engine_deps():
        async with await Engine.open(Config(), home) as engine:
            return await engine.deps("proj", "b.py"), await engine.deps_tree("proj", "b.py")
    analysis, tree = asyncio.run(engine_deps())
    assert found == (analysis, tree)
    code, out, _ = cli("deps", "proj", "b.py", "--json")
    assert code == 0 and json.loads(out)["fix_command"] == "uv add PyYAML"
    code, out, _ = cli("deps", "proj", "b.py")
    assert code == 1 and out.splitlines()[:2] == tree[:2]
    code, _, err = cli("deps", "nosuch", "b.py")
    assert code == 2 and "no project named 'nosuch'" in err
