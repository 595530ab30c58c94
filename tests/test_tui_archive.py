"""The Archive tab, driven by Pilot on a real engine, and its snapshots at 80x24 and 120x40.

The database is seeded as an evolution run leaves it (experiments, candidate commits with
metrics, iterations, archive snapshots made by the real ``Archive``, history), over a real git
repository whose commits are the candidates (fixed dates: the same hashes on every run).
Update the snapshot baselines with ``pytest tests/test_tui_archive.py --snapshot-update``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from evopilot.core import locations
from evopilot.core.config import Config, HostConfig
from evopilot.core.engine import Engine
from evopilot.core.events import EvolutionEvent
from evopilot.core.evolution.archive import Archive
from evopilot.core.evolution.experiment import Experiment
from evopilot.core.formatting import RAMP, axis_pairs, project
from evopilot.core.models import now_iso
from evopilot.tui.app import EvopilotApp
from evopilot.tui.screens.dialogs import LineDialog
from evopilot.tui.widgets.curves import sparkline
from evopilot.tui.widgets.heatmap import Heatmap
from tests.conftest import REPO

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
DATE = {"GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_DATE": "1700000000 +0000"}
T0 = "2025-03-14T10:00:00.000+00:00"

# name, parent, island, iteration, objective, descriptors (bias, max_error, runtime)
CANDIDATES = [
    ("seed", None, 0, 0, -0.5, (0.3, 1.2, 1.0)),
    ("c1", "seed", 1, 1, -0.3, (-0.2, 0.9, 2.0)),
    ("c2", "seed", 0, 2, -0.1, (0.05, 0.4, 0.5)),
    ("c3", "c2", 0, 3, -0.2, (-0.6, 0.7, 2.5)),
    ("c4", "c1", 1, 4, -0.05, (0.1, 0.2, 1.5)),
    ("c5", "c2", 0, 5, -0.8, (0.8, 1.8, 0.2)),
]
EXP3D = ["seed", "c2", "c3", "c5"]  # the older experiment: one island, three descriptors


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **DATE}).stdout.strip()


def make_repo(root: Path) -> dict[str, str]:
    """The example project as a git repository, a commit per candidate; name -> hash."""
    example = REPO / "examples" / "evolve"
    root.mkdir(parents=True)
    for rel in ("approx.py", "pyproject.toml", "benchmarks/fit.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text((example / rel).read_text())
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "seed")
    hashes = {"seed": git(root, "rev-parse", "HEAD")}
    source = (root / "approx.py").read_text()
    for name, parent, _island, it, _obj, _d in CANDIDATES[1:]:
        git(root, "checkout", "-q", "--detach", hashes[parent])
        (root / "approx.py").write_text(source.replace("A = 0.5", f"A = {0.5 + it / 100:g}"))
        git(root, "commit", "-qam", f"params: A +{it / 100:g}\n\nEvopilot-Parent: {hashes[parent]}")
        hashes[name] = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "main")
    return hashes


def experiment(**changes) -> Experiment:
    data = tomllib.loads((REPO / "examples" / "evolve" / "experiment.toml").read_text())
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return Experiment.model_validate(data)


def seed(home: Path, repo: Path) -> dict[str, str]:
    """Two experiments over one repository: 1 "fit-3d" (three descriptors, one island) and
    2 "approx-sin" (two descriptors, two islands; the newest, running). Returns the hashes."""
    hashes = make_repo(repo)

    async def create() -> None:
        await (await Engine.open(Config(), home)).close()

    asyncio.run(create())
    exp3d = experiment(name="fit-3d", islands={"count": 1},
                       descriptors={"metrics": ["bias", "max_error", "runtime"], "bins": [4, 4, 3],
                                    "lower": [-1.0, 0.0, 0.0], "upper": [1.0, 2.0, 3.0]})
    exp2d = experiment()
    db = sqlite3.connect(locations.db_path(home))
    with db:
        db.execute("INSERT INTO projects(id, name, path, created_at, updated_at) VALUES (1, 'evolve-demo', ?, ?, ?)",
                   (str(repo), T0, T0))
        # Experiment 2 is run by a live process (this one, heartbeat ahead): the app's engine
        # does not adopt it, and the test plays its loop.
        owner, heartbeat = f"{socket.gethostname()}:{os.getpid()}", time.time() + 3600
        for exp_id, exp, names, state, planned in ((1, exp3d, EXP3D, "finished", 4), (2, exp2d, None, "running", 60)):
            running = state == "running"
            db.execute(
                "INSERT INTO experiments(id, name, project_id, config_hash, config_snapshot, state, stop_reason, "
                "iterations_planned, base_commit, owner, heartbeat_at, created_at, updated_at) "
                "VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (exp_id, exp.name, exp.config_hash(), exp.canonical_json(), state,
                 None if running else "4 iterations done", planned, hashes["seed"],
                 owner if running else None, heartbeat if running else None, T0, T0))
            _seed_run(db, exp_id, exp, [c for c in CANDIDATES if names is None or c[0] in names], hashes)
        # experiment 2 is running: an evaluation and a mutation are under way
        for number, status in ((6, "evaluating"), (7, "planned")):
            db.execute("INSERT INTO evolution_iterations(experiment_id, number, status, base_commit_hash, island, "
                       "created_at, updated_at) VALUES (2, ?, ?, ?, 0, ?, ?)", (number, status, hashes["c2"], T0, T0))
    db.close()
    return hashes


def _seed_run(db, exp_id: int, exp: Experiment, candidates: list, hashes: dict[str, str]) -> None:
    dims = exp.descriptors.dims
    archives = [Archive(exp.descriptors.bins, exp.descriptors.lower, exp.descriptors.upper, exp.maximize)
                for _ in range(exp.islands.count)]
    for placed, (name, parent, island, it, objective, desc) in enumerate(candidates, start=1):
        island = min(island, exp.islands.count - 1)
        (cid,) = db.execute(
            "INSERT INTO commits(experiment_id, commit_hash, parent_hash, tree_hash, island, iteration, message, "
            "evaluation_summary, objective, extra_context, created_at) VALUES (?, ?, ?, '', ?, ?, ?, 'placed', ?, ?, ?) "
            "RETURNING id",
            (exp_id, hashes[name], hashes[parent] if parent else None, island if parent else None, it,
             "seed program" if not parent else f"params: A +{it / 100:g}", objective,
             json.dumps({"mutator": None if not parent else "params", "cost": 0.0}), T0)).fetchone()
        metrics = [("objective", objective, None, 1), ("bias", desc[0], None, None),
                   ("max_error", desc[1], None, 0), ("runtime", desc[2], "s", 0)]
        db.executemany("INSERT INTO commit_metrics(commit_id, name, value, unit, higher_is_better) "
                       "VALUES (?, ?, ?, ?, ?)", [(cid, *m) for m in metrics])
        db.execute("INSERT INTO evolution_iterations(experiment_id, number, status, base_commit_hash, island, "
                   "candidate_hash, created_at, updated_at) VALUES (?, ?, 'placed', ?, ?, ?, ?, ?)",
                   (exp_id, it, hashes[parent or "seed"], island, hashes[name], T0, T0))
        arch = archives[island]
        arch.add(cid, objective, desc[:dims])
        best = arch.best()
        db.execute("INSERT INTO archive_history VALUES (?, ?, ?, ?, ?, ?)",
                   (exp_id, island, placed, arch.coverage, arch.qd_score, best[1] if best else None))
    for island, arch in enumerate(archives):
        snap = {"bounds": [list(exp.descriptors.lower), list(exp.descriptors.upper)], "pca": None,
                "pca_history": [], "archive": arch.snapshot()}
        db.execute("INSERT INTO map_elites_states VALUES (?, ?, ?, ?)", (exp_id, island, json.dumps(snap), T0))


def make_app(home: Path, **kw) -> EvopilotApp:
    # Fixed slots: the default is the CPU count, which differs between machines.
    return EvopilotApp(Config(hosts={"local": HostConfig(max_parallel=4)}), home, **kw)


async def until(pilot, cond, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)


def text_of(app, selector: str) -> str:
    widget = app.screen.query_one(selector)
    return str(widget.content) if isinstance(widget, Static) else str(widget.render())


def heatmap_lines(app) -> list[str]:
    return str(app.query_one(Heatmap).render()).splitlines()


async def open_archive(pilot) -> EvopilotApp:
    app = pilot.app
    await until(pilot, app.ready.is_set, what="the engine to open")
    await pilot.press("4")
    await until(pilot, lambda: app.archive.view is not None and app.archive.detail is not None,
                what="the archive and the selected cell")
    return app


@pytest.fixture
def seeded(tmp_path) -> tuple[Path, Path, dict[str, str]]:
    home, repo = tmp_path / "home", tmp_path / "evolve-demo"
    return home, repo, seed(home, repo)


# ---- the pieces -----------------------------------------------------------------------------


def test_projection_keeps_the_best_per_cell_and_levels_read_without_colour():
    view = {"descriptors": ["a", "b", "c"], "bins": [2, 2, 2], "lower": [0, 0, 0], "upper": [1, 1, 1],
            "maximize": False, "islands": 1,
            "cells": [{"index": [0, 1, 0], "commit": "aa", "objective": 3.0},
                      {"index": [0, 1, 1], "commit": "bb", "objective": 1.0},
                      {"index": [1, 0, 1], "commit": "cc", "objective": 2.0}]}
    assert axis_pairs(3) == [(0, 1), (0, 2), (1, 2)] and axis_pairs(1) == [(0, None)]
    grid = project(view, (0, 1))
    assert {k: c.commit for k, c in grid.cells.items()} == {(0, 1): "bb", (1, 0): "cc"}  # minimising
    assert grid.best().commit == "bb" and grid.level(1.0) == len(RAMP) - 1 and grid.level(2.0) == 0
    grid = project(view, (1, 2))
    assert {k: c.commit for k, c in grid.cells.items()} == {(1, 0): "aa", (1, 1): "bb", (0, 1): "cc"}
    assert project({**view, "bins": None}, (0, 1)) is None
    assert sparkline([0, 1, 2, 3], 4) == "▁▃▆█" and sparkline([5, 5], 8) == "▅▅"
    assert sparkline([0, 0, 0, 0, 9, 0, 0, 0, 0, 0], 2) == "█▁"  # the last value of each stretch
    assert sparkline([], 5) == ""


@pytest.mark.slow
async def test_a_grid_larger_than_the_widget_follows_the_cursor():
    from textual.app import App, ComposeResult

    class One(App):
        def compose(self) -> ComposeResult:
            yield Heatmap()

    view = {"descriptors": ["a", "b"], "bins": [40, 30], "lower": [0, 0], "upper": [1, 1], "maximize": True,
            "islands": 1, "cells": [{"index": [0, 0], "commit": "a" * 40, "objective": 1.0},
                                    {"index": [39, 29], "commit": "b" * 40, "objective": 2.0}]}
    app = One()
    async with app.run_test(size=(40, 12)) as pilot:
        heatmap = app.query_one(Heatmap)
        heatmap.focus()
        heatmap.set_grid(project(view, (0, 1)))
        await pilot.pause()
        lines = heatmap_lines(app)
        assert heatmap.cursor == (39, 29) and lines[1].startswith("29> ") and lines[1].rstrip().endswith("@@")
        await pilot.press(*["left"] * 45, *["down"] * 35)  # past the edges: the cursor stops there
        assert heatmap.cursor == (0, 0) and heatmap.current.commit == "a" * 40
        lines = heatmap_lines(app)
        assert lines[-4].startswith(" 0> ..") and lines[-3].startswith("    ^^")
        assert max(map(len, lines)) <= heatmap.content_size.width


def test_cells_branch_and_capped_diff_through_the_facade(seeded):
    home, repo, hashes = seeded

    async def go():
        async with await Engine.open(Config(), home) as engine:
            view = await engine.evolution.cells(2, 0)
            assert view["descriptors"] == ["bias", "max_error"] and view["bins"] == [8, 8]
            assert view["islands"] == 2 and view["maximize"] is True
            by_commit = {c["commit"]: c for c in view["cells"]}
            assert set(by_commit) == {hashes[n] for n in ("seed", "c2", "c3", "c5")}
            assert by_commit[hashes["c2"]]["index"] == [4, 1] and by_commit[hashes["c2"]]["objective"] == -0.1
            three = await engine.evolution.cells(1, 0)
            assert {tuple(c["index"]) for c in three["cells"]} >= {(2, 0, 0)}  # c2: 0.05, 0.4, 0.5
            # the seed is in both experiments: shown per experiment, not "ambiguous"
            shown = await engine.evolution.show(hashes["seed"], experiment=1, diff_limit=100)
            assert shown["experiment_id"] == 1 and shown["parent"] is None and shown["diff"] == ""
            full = await engine.evolution.show(hashes["c3"], experiment=2)
            head = await engine.evolution.show(hashes["c3"], experiment=2, diff_limit=120)
            assert "-A = 0.52" in full["diff"] and not full["diff_cut"]
            assert head["diff_cut"] and full["diff"].startswith(head["diff"]) and head["diff"].endswith("\n")
            assert len(head["diff"]) <= 120
            made = await engine.evolution.branch_at(2, hashes["c4"], "from-c4")
            assert made["commit"] == hashes["c4"]
            with pytest.raises(Exception, match="already exists"):
                await engine.evolution.branch_at(2, hashes["c4"], "from-c4")
            with pytest.raises(Exception, match="no candidate commit"):
                await engine.evolution.branch_at(1, hashes["c4"], "not-in-exp-1")
            before = await engine.evolution.stamp(2)
            assert before == await engine.evolution.stamp(2)
            db = sqlite3.connect(locations.db_path(home))
            with db:
                db.execute("UPDATE map_elites_states SET updated_at = '2025-03-14T11:00:00.000+00:00' "
                           "WHERE experiment_id = 2 AND island_id = 1")
            db.close()
            assert await engine.evolution.stamp(2) != before

    asyncio.run(go())
    assert git(repo, "rev-parse", "from-c4") == hashes["c4"]


# ---- the tab --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_browse_cells_islands_axes_experiments_and_branch(seeded):
    home, repo, hashes = seeded
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_archive(pilot)
        pane = app.archive
        assert pane.experiment_id == 2 and pane.island == 0, "the newest experiment, island 0"
        head = text_of(app, "#archive-head")
        assert "approx-sin #2 (2 of 2) · running · 5/60 iterations · best -0.05 (max)" in head
        assert "island 0 (1 of 2) · 4 elites · in flight: 1 planned, 1 evaluating" in head
        assert "axes" not in head, "two descriptors: no other pair to show"
        # the cursor starts on the island's best cell: c2 (objective -0.1)
        assert app.query_one(Heatmap).current.commit == hashes["c2"]
        cell = text_of(app, "#archive-cell")
        assert f"commit {hashes['c2'][:12]} · parent {hashes['seed'][:12]}" in cell
        assert "iteration 2 · island 0 · mutator params · placed" in cell
        assert "metrics: objective -0.1 · bias 0.05 · max_error 0.4 · runtime 0.5 s" in cell
        assert "+A = 0.52" in text_of(app, "#archive-diff-text")
        # Without colour the grid reads by its characters: c5 worst (.), the seed, c3, c2 best (@);
        # the cursor's row and column are marked.
        assert [line.rstrip() for line in heatmap_lines(app)] == [
            "↑ max_error 0..2",
            "7                ..",
            "6", "5",
            "4            ==",
            "3",
            "2    %%",
            "1>         @@",
            "0",
            "           ^^",
            "→ bias -1..1",
            f"worst {RAMP} best",
        ]
        assert "coverage" in text_of(app, "#archive-curves") and "QD score" in text_of(app, "#archive-curves")

        # Move the cursor onto c3 (bias -0.6, max_error 0.7: bin (1, 2)) from c2's (4, 1).
        await pilot.press("left", "left", "left", "up")
        await until(pilot, lambda: pane.detail and pane.detail["commit"] == hashes["c3"], what="c3's details")
        assert "bias -0.75..-0.5 · max_error 0.5..0.75" in text_of(app, "#archive-cell")
        assert "-A = 0.52" in text_of(app, "#archive-diff-text"), "diffed against its parent c2"
        await pilot.press("left")
        await until(pilot, lambda: ": empty" in text_of(app, "#archive-cell"), what="an empty cell")
        assert pane.detail is None

        # The other island: c1 and c4; the cursor stays put, g goes to the best.
        await pilot.press("i")
        await until(pilot, lambda: pane.view["island"] == 1, what="island 1")
        assert "island 1 (2 of 2) · 2 elites" in text_of(app, "#archive-head")
        await pilot.press("g")
        await until(pilot, lambda: pane.detail and pane.detail["commit"] == hashes["c4"], what="c4 (best of island 1)")

        # A branch at c4, named in the dialog.
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, LineDialog), what="the branch dialog")
        field = app.screen.query_one(Input)
        assert field.value == f"approx-sin-{hashes['c4'][:8]}"
        field.value = "best-of-island-1"
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, LineDialog), what="the dialog to close")
        assert git(repo, "rev-parse", "best-of-island-1") == hashes["c4"]
        # The same name again: the error shows in the dialog, which stays open.
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, LineDialog), what="the branch dialog again")
        app.screen.query_one(Input).value = "best-of-island-1"
        await pilot.press("enter")
        await until(pilot, lambda: "already exists" in text_of(app, "#error"), what="the error")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LineDialog), what="the dialog to close")

        # The older experiment has three descriptors: a cycles the pair on the axes.
        await pilot.press("e")
        await until(pilot, lambda: pane.experiment_id == 1 and pane.view["descriptors"] == ["bias", "max_error", "runtime"],
                    what="experiment 1")
        await until(pilot, lambda: pane.detail and pane.detail["experiment_id"] == 1, what="experiment 1's cell")
        assert "fit-3d #1 (1 of 2) · finished (4 iterations done)" in text_of(app, "#archive-head")
        assert "axes bias × max_error (1 of 3)" in text_of(app, "#archive-head")
        await pilot.press("a")
        assert "axes bias × runtime (2 of 3)" in text_of(app, "#archive-head")
        assert heatmap_lines(app)[0].startswith("↑ runtime 0..3")
        await pilot.press("i")
        assert pane.island == 0, "one island: nothing to switch to"
        await pilot.press("E")
        await until(pilot, lambda: pane.experiment_id == 2, what="back to experiment 2")


@pytest.mark.slow
async def test_follows_a_run_in_this_process_and_in_another(seeded):
    home, _repo, hashes = seeded
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_archive(pilot)
        pane = app.archive
        assert len(pane.view["cells"]) == 4
        diff = app.query_one("#archive-diff")
        assert diff.max_scroll_y > 0 and diff.scroll_y == 0, "at 80x24 the diff needs paging"
        await pilot.press("pagedown")
        await until(pilot, lambda: diff.scroll_y > 0, what="the diff to page down")

        def place(conn, cells_commit: str, objective: float, desc: list[float]) -> None:
            """What the loop of a run does: the island's snapshot and history, one iteration."""
            (cid,) = conn.execute("SELECT id FROM commits WHERE experiment_id = 2 AND commit_hash = ?",
                                  (cells_commit,)).fetchone()
            (raw,) = conn.execute("SELECT snapshot FROM map_elites_states WHERE experiment_id = 2 "
                                  "AND island_id = 0").fetchone()
            snap = json.loads(raw)
            arch = Archive.restore(snap["archive"])
            arch.add(cid, objective, desc)
            snap["archive"] = arch.snapshot()
            now = now_iso()
            with conn:
                conn.execute("UPDATE map_elites_states SET snapshot = ?, updated_at = ? WHERE experiment_id = 2 "
                             "AND island_id = 0", (json.dumps(snap), now))
                conn.execute("UPDATE evolution_iterations SET status = 'placed', updated_at = ? "
                             "WHERE experiment_id = 2 AND status = 'evaluating'", (now,))

        # Another process (its own connection, no event here): seen by the tab's poll.
        conn = sqlite3.connect(locations.db_path(home))
        place(conn, hashes["c1"], -0.01, [-0.9, 1.9])
        await until(pilot, lambda: len(pane.view["cells"]) == 5, what="the new cell, by polling")
        assert "in flight: 1 planned" in text_of(app, "#archive-head")
        assert "evaluating" not in text_of(app, "#archive-head")
        assert pane.query_one(Heatmap).current.commit == hashes["c2"], "the cursor stays on its cell"
        await pilot.press("g")
        await until(pilot, lambda: pane.detail and pane.detail["commit"] == hashes["c1"], what="the new best")

        # A loop in this process: its event re-reads at once (well inside the poll interval).
        place(conn, hashes["c4"], -0.02, [0.9, 0.1])
        t0 = time.monotonic()
        app.engine.bus.emit(EvolutionEvent(experiment_id=2, applied=7, mutating=1))
        await until(pilot, lambda: len(pane.view["cells"]) == 6, what="the new cell, by the event")
        assert time.monotonic() - t0 < 1.4

        # While another tab is shown nothing is read; showing the tab again catches up.
        await pilot.press("3")
        assert not pane.shown
        place(conn, hashes["c3"], -0.03, [-0.9, 0.1])
        conn.close()
        app.engine.bus.emit(EvolutionEvent(experiment_id=2, applied=8, mutating=0))
        deadline = time.monotonic() + 2.5  # past the poll interval and the event's delay
        while time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert len(pane.view["cells"]) == 6
        await pilot.press("4")
        await until(pilot, lambda: len(pane.view["cells"]) == 7, what="the cell placed while hidden")


@pytest.mark.slow
async def test_a_project_gone_from_disk_is_said_in_place_of_the_diff(seeded):
    home, repo, hashes = seeded
    shutil.rmtree(repo)
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, app.ready.is_set, what="the engine to open")
        await pilot.press("4")
        await until(pilot, lambda: f"commit {hashes['c2'][:12]}: git" in text_of(app, "#archive-cell"),
                    what="the error of the selected cell")
        assert len(text_of(app, "#archive-cell").splitlines()) == 1, "one line, no traceback"
        await pilot.press("left", "left", "left", "up")  # the app goes on: c3, the same kind of error
        await until(pilot, lambda: f"commit {hashes['c3'][:12]}: git" in text_of(app, "#archive-cell"),
                    what="the next cell's error")


@pytest.mark.slow
async def test_no_experiments_says_how_to_start_one_then_shows_the_first(tmp_path):
    home = tmp_path / "home"
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, app.ready.is_set, what="the engine to open")
        await pilot.press("4")
        await until(pilot, lambda: "no experiments: `evopilot evolve start FILE` (see examples/evolve)"
                    in text_of(app, "#archive-empty"), what="the empty state")
        assert not app.query_one("#archive-body").display
        # Experiments started by another process appear without a key press.
        hashes = await asyncio.to_thread(seed, home, tmp_path / "evolve-demo")
        await until(pilot, lambda: app.archive.detail is not None, what="the newest experiment")
        assert app.archive.experiment_id == 2 and app.archive.detail["commit"] == hashes["c2"]
        assert not app.query_one("#archive-empty").display and app.query_one(Heatmap).has_focus


# ---- snapshots ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot_home(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive-snapshots")
    seed(root / "home", root / "evolve-demo")
    return root / "home"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_archive_snapshot(snap_compare, snapshot_home, size):
    async def run_before(pilot) -> None:
        await open_archive(pilot)
        await pilot.app.workers.wait_for_complete()
        await pilot.wait_for_scheduled_animations()  # the tab bar's underline slides to the tab

    assert snap_compare(make_app(snapshot_home, engine_loop=False), terminal_size=size, run_before=run_before)
