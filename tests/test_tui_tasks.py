"""The Tasks tab, driven by Pilot on a real engine (its own job loop), a real git repository, real
tmux and the scripted agents of tests/programs/agent.py; and a snapshot of the board at 80x24.

Update the snapshot baseline with ``pytest tests/test_tui_tasks.py --snapshot-update``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evopilot.core import locations
from evopilot.core.config import AgentConfig, Config, EngineConfig, HostConfig, TasksConfig
from evopilot.core.engine import Engine
from evopilot.core.quoting import join
from evopilot.tui.app import EvopilotApp
from evopilot.tui.screens.dialogs import ConfirmDialog, LineDialog
from evopilot.tui.widgets import diff_view
from evopilot.tui.widgets.key_bar import KeyBar
from evopilot.tui.widgets.task_board import TaskBoard
from tests.test_tasks import git, repo  # noqa: F401 - repo: the fixture (a git repository)
from tests.test_tui import started, static_text, type_text, until

AGENT = Path(__file__).parent / "programs" / "agent.py"


def agent(*opts: str, param: str = "") -> str:
    return join([sys.executable, str(AGENT), *opts]) + param + " {prompt}"


AGENTS = {
    "committer": AgentConfig(command=agent("--write", "notes.txt", "--commit", "--usage-dollars", "0.25"),
                             usage="json"),
    "chat": AgentConfig(command=agent("--write", "notes.txt", "--interactive"), tty=True),
    "big": AgentConfig(command=agent("--write", "notes.txt", "--lines", "1500", "--commit")),
    "huge": AgentConfig(command=agent("--write", "notes.txt", "--lines", "60000", "--commit")),
    "sized": AgentConfig(command=agent("--write", "notes.txt", "--commit", "--lines", param=" {n}")),
}


def config(tmp_path: Path) -> Config:
    return Config(engine=EngineConfig(poll_interval=0.1, kill_grace=0.5),
                  hosts={"local": HostConfig(max_parallel=4)}, agents=AGENTS,
                  tasks=TasksConfig(test_command="test -f notes.txt", worktree_dir=str(tmp_path / "wt")))


def board_text(app) -> str:
    return "\n".join(app.tasks.board.visible_text())


def detail(app) -> str:
    return static_text(app, "#task-detail")


async def until_detail(pilot, text: str, timeout: float = 60) -> None:
    """Until the attempt's header shows ``text`` (a failure says what it showed)."""
    app = pilot.app
    try:
        await until(pilot, lambda: text in detail(app), timeout=timeout, what=repr(text))
    except AssertionError as e:
        jobs = [(j.id, j.kind, j.status.value, j.error_message) for j in await app.engine.jobs(reconcile=False)]
        raise AssertionError(f"{e}; the header shows {detail(app)!r}; jobs {jobs}") from None


async def setup(pilot, repo: Path, *titles: str) -> EvopilotApp:
    """The app started, the repository a project, the tasks added, the Tasks tab shown."""
    app = await started(pilot)
    await app.engine.add_project(str(repo), "proj")
    for title in titles:
        await app.engine.tasks.add("proj", title)
    await pilot.press("2")
    await until(pilot, lambda: app.tasks.tasks and app.tasks.board.has_focus, what="the board")
    return app


@pytest.mark.slow
async def test_board_moves_start_log_diff_test_followup_merge_archive(repo, home, tmp_path):
    app = EvopilotApp(config(tmp_path), home)
    async with app.run_test(size=(80, 24)) as pilot:
        app = await started(pilot)
        assert app.engine._tasks is None  # not shown yet: the tasks service is not even loaded
        app = await setup(pilot, repo, "Fix it", "Second")
        shown = {description for _, description in app.query_one(KeyBar).items}
        assert {"Move", "Attach", "Follow-up", "Test", "Merge", "Archive", "Start", "View", "Attempt"} <= shown
        lines = app.tasks.board.visible_text()
        assert lines[0].startswith("todo 2") and "in progress 0" in lines[0]
        assert "▶1 Fix it" in lines[1] and "2 Second" in lines[2]

        # moved right and back with the keyboard; the cursor follows the task
        await pilot.press("greater_than_sign")
        await until(pilot, lambda: "in progress 1" in board_text(app), what="the task in progress")
        assert app.tasks.board.current["id"] == 1 and app.tasks.board.col == 1
        assert (await app.engine.tasks.board())[0]["status"] == "inprogress"
        await pilot.press("shift+left")
        await until(pilot, lambda: board_text(app).startswith("todo 2"), what="the task back in todo")
        await pilot.press("less_than_sign")
        await until(pilot, lambda: "first column" in " ".join(str(n.message) for n in app._notifications),
                    what="the first column refused")

        # start an attempt: the dialog offers the first agent
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, LineDialog), what="the start dialog")
        await pilot.press("enter")
        await until_detail(pilot, "tests passed ✓", timeout=60)
        d = detail(app)
        assert "attempt 1 (1 of 1)" in d and "committer · ready" in d and "$0.2500" in d and "+1 -0" in d
        assert "120 tokens" in d and "evopilot/1-fix-it" in d
        assert "in review 1" in board_text(app)
        assert "▶1 Fix it    ✓" in board_text(app)  # its column, its attempt's tests passed
        # its live log (the agent session), followed in the LogView
        await until(pilot, lambda: any("agent finished" in line for line in app.tasks.log_view.visible_text()),
                    what="the agent's log")

        # the diff, coloured, read from git's stream
        await pilot.press("d")
        dv = app.tasks.diff_view
        await until(pilot, lambda: dv.done and dv.lines, what="the diff")
        assert "+++ b/notes.txt" in dv.visible_text() and "+Fix it 0" in dv.visible_text()
        assert "end of the diff" in dv.visible_text() and dv.has_focus
        await pilot.press("d")  # again: back to the board
        assert app.tasks.board.has_focus

        # tests again, as a job
        await pilot.press("t")
        await until(pilot, lambda: "tests queued" in " ".join(str(n.message) for n in app._notifications),
                    what="tests queued")
        await until(pilot, lambda: "tests passed ✓" in detail(app) and "ready" in detail(app), timeout=60,
                    what="the tests again")

        # a follow-up: the batch agent is not live, so a new session in the same worktree
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, LineDialog), what="the follow-up dialog")
        await type_text(pilot, "more")
        await pilot.press("enter")
        await until(pilot, lambda: "a new session" in " ".join(str(n.message) for n in app._notifications),
                    what="the follow-up sent")
        await until(pilot, lambda: "ready" in detail(app) and "+2 -0" in detail(app), timeout=60,
                    what="the follow-up's work")
        assert app.tasks.session is not None and app.tasks.session.id != 1

        # merge (asks first), then the task is done
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the merge question")
        await pilot.press("y")
        await until(pilot, lambda: "done 1" in board_text(app), what="the task done")
        assert (repo / "notes.txt").read_text() == "Fix it 0\nmore 0\n"
        assert "merged" in detail(app)

        # archive: a merged attempt's worktree goes, its branch stays
        wt = Path((await app.engine.tasks.attempt(1))["worktree"])
        assert wt.is_dir()
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the archive question")
        await pilot.press("y")
        await until_detail(pilot, "(archived)")
        assert not wt.exists() and git(repo, "branch", "--list", "evopilot/1-fix-it")


@pytest.mark.slow
async def test_interactive_followup_is_typed_and_attach_says_why_it_cannot(repo, home, tmp_path, monkeypatch):
    app = EvopilotApp(config(tmp_path), home)
    async with app.run_test(size=(80, 24)) as pilot:
        app = await setup(pilot, repo, "Chat")
        await app.engine.tasks.start(1, "chat")
        await until_detail(pilot, "chat · running")
        log = app.tasks.log_view
        await until(pilot, lambda: any("ready for input" in line for line in log.visible_text()), timeout=30,
                    what="the agent waiting on its terminal")
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, LineDialog), what="the follow-up dialog")
        await type_text(pilot, "hello")
        await pilot.press("enter")
        await until(pilot, lambda: any("got: hello" in line for line in log.visible_text()), timeout=30,
                    what="the follow-up typed into the live session")
        assert "typed into its live session" in " ".join(str(n.message) for n in app._notifications)
        # attach from inside tmux is a switch-client; with no client of that server, tmux says
        # why and the app shows it (the app keeps running)
        monkeypatch.setenv("TMUX", "/nonexistent,1,0")
        await pilot.press("a")
        await until(pilot, lambda: "switch-client" in " ".join(str(n.message) for n in app._notifications),
                    what="the attach error")
        monkeypatch.delenv("TMUX")
        session = (await app.engine.tasks.attach_command(1, inside_tmux=False)).argv
        assert session[:2] == ["tmux", "attach"] or "attach-session" in session
        await app.engine.send(app.tasks.session.id, "done")
        await until_detail(pilot, "tests passed ✓", timeout=60)


@pytest.mark.slow
async def test_a_large_diff_is_paged(repo, home, tmp_path):
    app = EvopilotApp(config(tmp_path), home)
    async with app.run_test(size=(80, 24)) as pilot:
        app = await setup(pilot, repo, "Big")
        await app.engine.tasks.start(1, "big")
        await until_detail(pilot, "ready", timeout=60)
        await pilot.press("d")
        dv = app.tasks.diff_view
        await until(pilot, lambda: dv.lines, what="the first page")
        assert dv.lines == diff_view.PAGE_LINES and not dv.done and dv.pages == 1
        assert "n reads the next page" in dv.visible_text()
        await pilot.press("n")
        await until(pilot, lambda: dv.pages == 2, what="the second page")
        assert dv.lines == 2 * diff_view.PAGE_LINES
        await pilot.press("n", "n", "n")
        await until(pilot, lambda: dv.done, what="the end")
        assert dv.lines == 1500 + 6  # header lines + one per line written
        assert "end of the diff (1506 lines)" in dv.visible_text()

        # a diff larger than the pipes: git is kept waiting between pages, and ended once the
        # view is left
        await app.engine.tasks.add("proj", "Huge")
        await app.engine.tasks.start(2, "huge")
        await pilot.press("d")  # back to the board
        await until(pilot, lambda: "in review 2" in board_text(app), timeout=60, what="the second attempt ready")
        await pilot.press("down")
        await until_detail(pilot, "attempt 2 (1 of 1)")
        wt = (await app.engine.tasks.attempt(2))["worktree"]

        def git_diffs() -> list[str]:
            out = subprocess.run(["pgrep", "-f", f"git -C {wt} diff"], capture_output=True, text=True).stdout
            return out.split()

        await pilot.press("d")
        await until(pilot, lambda: dv.pages == 1, what="the first page of the huge diff")
        await pilot.press("n")
        await until(pilot, lambda: dv.pages == 2, what="its second page")
        assert dv.lines == 2 * diff_view.PAGE_LINES and not dv.done and len(git_diffs()) == 1
        # its tests run again (held in the queue until the screen shows them) and end: the
        # attempt's state changes, its diff does not, and the pages read stay
        await app.engine.set_queue_paused(True)
        await app.engine.tasks.test(2)
        await until(pilot, lambda: app.tasks.attempt["state"] == "testing", what="the tests queued")
        await app.engine.set_queue_paused(False)
        await until(pilot, lambda: app.tasks.attempt["state"] == "ready", timeout=60, what="the tests to end")
        assert dv.pages == 2 and dv.lines == 2 * diff_view.PAGE_LINES
        await pilot.press("l")
        await until(pilot, lambda: not git_diffs(), what="git diff to end")


@pytest.mark.slow
async def test_sweep_table_marks_the_champion(repo, home, tmp_path):
    app = EvopilotApp(config(tmp_path), home)
    async with app.run_test(size=(80, 24)) as pilot:
        app = await setup(pilot, repo, "Sweep it")
        sweep = await app.engine.tasks.sweep(1, ["sized"], ["n=3,1"])
        await until(pilot, lambda: "✓" in board_text(app), timeout=60, what="an attempt tested")

        async def champion():
            return (await app.engine.tasks.sweep_status(sweep.id))["champion"]

        for _ in range(600):
            if await champion():
                break
            await pilot.pause(0.1)
        await pilot.press("w")
        text = app.tasks.query_one("#task-sweep-text")
        await until(pilot, lambda: "champion: attempt 2" in str(text.content), what="the sweep's table")
        rows = str(text.content).splitlines()
        starred = [r for r in rows if r.startswith("★")]
        assert len(starred) == 1 and starred[0].split()[1] == "2" and "n=1" in starred[0]
        # the task's other attempt, with [ and ]; the table stays the sweep's
        assert "attempt 2 (2 of 2)" in detail(app)
        await pilot.press("left_square_bracket")
        await until_detail(pilot, "attempt 1 (1 of 2)")
        await until(pilot, lambda: "champion: attempt 2" in str(text.content), what="the same sweep")
        await pilot.press("right_square_bracket")
        await until_detail(pilot, "attempt 2 (2 of 2)")

        # the champion merged; the other attempt wrote the same file: its merge conflicts, says
        # where, and leaves main as it was
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the merge question")
        await pilot.press("y")
        await until(pilot, lambda: "done 1" in board_text(app), what="the champion merged")
        main = git(repo, "rev-parse", "main")
        await pilot.press("left_square_bracket", "m")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the second merge question")
        await pilot.press("y")
        await until(pilot, lambda: "conflicts in notes.txt" in " ".join(str(n.message) for n in app._notifications),
                    what="the conflict shown")
        assert git(repo, "rev-parse", "main") == main and git(repo, "status", "--porcelain") == ""


def test_diff_lines_are_split_and_long_lines_cut():
    dv = diff_view.DiffView()
    out = dv._split(b"+a\n+b") + dv._split(b"c\n" + b"x" * (diff_view.MAX_LINE * 5)) + dv._split(b"yy\n+z\n")
    assert out[:2] == ["+a", "+bc"] and out[2].endswith(" …") and len(out[2]) == diff_view.MAX_LINE + 2
    assert out[3:] == ["+z"]


# -- snapshot ----------------------------------------------------------------------------------

NOW = datetime(2025, 3, 14, 10, 6, 40, tzinfo=UTC)
T0 = "2025-03-14T10:00:00.000+00:00"
TASKS = [  # id, title, status
    (1, "Fix the parser's off-by-one", "todo"),
    (2, "Add a --json flag to report", "todo"),
    (3, "Speed up the index build", "inprogress"),
    (4, "Document the config keys", "inreview"),
    (5, "Remove the old CLI", "done"),
    (6, "Port to Windows", "cancelled"),
]
ATTEMPTS = [  # id, task, agent, state, tests, files, +, -, dollars
    (1, 3, "claude", "running", None, None, None, None, 0.05),
    (2, 4, "codex", "ready", 1, 2, 40, 3, 0.3125),
    (3, 5, "claude", "merged", 1, 1, 5, 12, 0.08),
]


def seed_board(home: Path, repo: Path) -> None:
    """Fixed rows over a real repository (fixed dates: the same hash on every run) in which
    attempt 2's branch is where evopilot left it."""
    repo.mkdir(exist_ok=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@t", "GIT_COMMITTER_NAME": "u",
           "GIT_COMMITTER_EMAIL": "u@t", "GIT_AUTHOR_DATE": "1700000000 +0000",
           "GIT_COMMITTER_DATE": "1700000000 +0000"}
    (repo / "README.md").write_text("hello\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "initial"],
                 ["branch", "evopilot/4-attempt"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, env=env, capture_output=True,
                          text=True).stdout.strip()

    async def create() -> None:
        await (await Engine.open(Config(), home)).close()

    asyncio.run(create())
    db = sqlite3.connect(locations.db_path(home))
    with db:
        db.execute("INSERT INTO projects(id, name, path, created_at, updated_at) VALUES (1, 'proj', ?, ?, ?)",
                   (str(repo), T0, T0))
        db.executemany("INSERT INTO tasks(id, project_id, title, status, created_at, updated_at) "
                       "VALUES (?, 1, ?, ?, ?, ?)", [(*t, T0, T0) for t in TASKS])
        for aid, tid, agent_name, state, tests, files, plus, minus, dollars in ATTEMPTS:
            db.execute(
                "INSERT INTO attempts(id, task_id, agent, worktree_path, branch, target_branch, base_commit, "
                "branch_head, state, tests_passed, files_changed, lines_added, lines_removed, created_at, "
                "updated_at) VALUES (?, ?, ?, '/nonexistent', ?, 'main', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (aid, tid, agent_name, f"evopilot/{tid}-attempt", head, head, state, tests, files,
                 plus, minus, T0, T0))
            db.execute("INSERT INTO cost_entries(attempt_id, provider, model, tokens_in, tokens_out, cost_usd, "
                       "requests, created_at) VALUES (?, ?, 'm', 1000, 200, ?, 1, ?)", (aid, agent_name, dollars, T0))
    db.close()


def test_board_snapshot(snap_compare, tmp_path):
    home, repo = tmp_path / "home", tmp_path / "repo"
    seed_board(home, repo)

    async def run_before(pilot) -> None:
        app = pilot.app
        for _ in range(500):
            if app.ready.is_set():
                break
            await pilot.pause(0.02)
        await pilot.press("2")
        for _ in range(500):
            if app.tasks.tasks and app.tasks.board.has_focus:
                break
            await pilot.pause(0.02)
        await pilot.press("right", "right")  # task 4, in review: its attempt in the header
        await app.workers.wait_for_complete()
        await pilot.pause()

    app = EvopilotApp(Config(hosts={"local": HostConfig(max_parallel=4)}), home, clock=lambda: NOW,
                      engine_loop=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_a_branch_moved_outside_evopilot_shows(tmp_path):
    home, repo = tmp_path / "home", tmp_path / "repo"
    await asyncio.to_thread(seed_board, home, repo)
    git(repo, "checkout", "-q", "evopilot/4-attempt")
    (repo / "x.txt").write_text("x\n")
    git(repo, "add", "x.txt")
    git(repo, "commit", "-qm", "by hand")
    app = EvopilotApp(Config(hosts={"local": HostConfig(max_parallel=4)}), home, clock=lambda: NOW,
                      engine_loop=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app = await started(pilot)
        await pilot.press("2")
        await until(pilot, lambda: app.tasks.tasks and app.tasks.board.has_focus, what="the board")
        await pilot.press("right", "right")
        await until_detail(pilot, "branch: branch evopilot/4-attempt was moved outside evopilot")
        # a follow-up would build on it: refused, and the dialog says why
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, LineDialog), what="the follow-up dialog")
        await pilot.press("o", "k", "enter")
        await until(pilot, lambda: "does not overwrite it" in static_text(app, "#error"), what="the refusal")
        await pilot.press("escape")
        # an agent that is not configured: said in the start dialog, nothing started
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, LineDialog), what="the start dialog")
        await pilot.press("z", "enter")
        await until(pilot, lambda: "error:" in static_text(app, "#error"), what="the start error")
        await pilot.press("escape")
        assert len((await app.engine.tasks.board(reconcile=False))[3]["attempts"]) == 1
        # the project is no longer a repository: said where the branch's state goes
        shutil.rmtree(repo / ".git")
        await pilot.press("left", "right")
        await until_detail(pilot, "branch: cannot check it:")
        assert "is not in a git repository" in detail(app)


def test_board_seed_reads_through_the_engine(tmp_path):
    """Guard: the snapshot's fixed rows are what the engine reads (a schema change fails here)."""
    home = tmp_path / "home"
    seed_board(home, tmp_path / "repo")

    async def read():
        engine = await Engine.open(Config(), home)
        try:
            return await engine.tasks.board(reconcile=False), await engine.tasks.attempt(2)
        finally:
            await engine.close()

    board, shown = asyncio.run(read())
    assert shown["branch_problem"] is None
    assert [(t["id"], t["status"]) for t in board] == [(t[0], t[2]) for t in TASKS]
    a = json.loads(json.dumps(board[3]["attempts"][0]))
    assert a["cost_usd"] == 0.3125 and a["tests_passed"] is True and a["tokens_in"] == 1000


async def test_board_keys_and_a_column_longer_than_the_board():
    """The widget alone (no engine): the cursor between columns and rows, a long column scrolled
    to keep the cursor in view, the selection kept by id when the tasks change."""
    from textual.app import App

    class Host(App):
        def compose(self):
            yield TaskBoard()

    tasks = [{"id": i, "title": f"t{i}", "status": "todo", "attempts": []} for i in range(1, 21)]
    tasks.append({"id": 21, "title": "review me", "status": "inreview",
                  "attempts": [{"state": "ready", "tests_passed": False}]})
    app = Host()
    async with app.run_test(size=(80, 8)) as pilot:
        board = app.query_one(TaskBoard)
        board.set_tasks(tasks)
        board.focus()
        await pilot.pause()
        assert board.current["id"] == 1 and board.visible_text()[0].startswith("todo 20")
        await pilot.press(*["down"] * 12)
        assert board.current["id"] == 13
        rows = board.visible_text()[1:]
        assert len(rows) == board.content_size.height - 1 and rows[-1].startswith("▶13 t13")
        await pilot.press("right", "right")
        assert board.current["id"] == 21 and "✗" in board.visible_text()[1]
        await pilot.press("right")
        assert board.current is None  # an empty column
        await pilot.press("left")
        tasks[-1] = {**tasks[-1], "status": "done"}
        board.set_tasks(tasks)  # moved elsewhere (by the CLI): the cursor follows it
        assert board.current["id"] == 21 and board.col == 3
