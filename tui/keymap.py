"""Every key binding of the app: an id, a default key, an action and a description.

Keys are kept apart from what they do (as in Harlequin): widgets build their ``BINDINGS`` from
the specs here, every binding has an id like ``jobs.kill``, and ``[keys]`` in config.toml maps
ids to other keys (``"jobs.kill" = "ctrl+k"``; several keys are comma separated). The app applies
the overrides with Textual's keymap support (``App.set_keymap``), so a remapped key works in
every widget, in the footer and in the command palette.

The log view's bindings (``log.*``) live in ``tui.widgets.log_view``; they are listed in the
help screen from that widget's own ``BINDINGS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding

MOVE = Binding.Group("Move", compact=True)
FILTER = Binding.Group("Filter")
TABS = Binding.Group("Tab", compact=True)
ISLAND = Binding.Group("Island", compact=True)
EXPERIMENT = Binding.Group("Experiment", compact=True)


@dataclass(frozen=True, slots=True)
class Spec:
    id: str
    key: str
    action: str
    description: str
    show: bool = True
    priority: bool = False
    group: Binding.Group | None = None
    help: str = ""
    """A longer description for the help screen and the command palette."""

    @property
    def long(self) -> str:
        return self.help or self.description

    def binding(self) -> Binding:
        return Binding(self.key, self.action, self.description, show=self.show, id=self.id,
                       priority=self.priority, group=self.group)


APP: list[Spec] = [
    Spec("app.help", "question_mark", "help", "Help", help="Show every key binding"),
    Spec("app.tab.projects", "1", "show_tab('projects')", "Projects", group=TABS,
         help="Show the Projects tab"),
    Spec("app.tab.tasks", "2", "show_tab('tasks')", "Tasks", group=TABS,
         help="Show the Tasks tab"),
    Spec("app.tab.jobs", "3", "show_tab('jobs')", "Jobs", group=TABS,
         help="Show the Jobs tab"),
    Spec("app.tab.archive", "4", "show_tab('archive')", "Archive", group=TABS,
         help="Show the Archive tab"),
    Spec("app.tab.hosts", "5", "show_tab('hosts')", "Hosts", group=TABS,
         help="Show the Hosts tab"),
    Spec("app.quit", "q", "quit", "Quit", help="Quit (jobs keep running in tmux)"),
]

PROJECTS: list[Spec] = [
    Spec("projects.add", "a", "add_project", "Add project", help="Add a project (a directory)"),
    Spec("projects.add_benchmark", "b", "add_benchmark", "Add bench",
         help="Add benchmark files to the highlighted project"),
    Spec("projects.toggle", "space", "toggle", "Select",
         help="Select or unselect a benchmark (on a project: all of its benchmarks)"),
    Spec("projects.run", "r", "run", "Run",
         help="Queue the selected benchmarks (or the highlighted one) on the target host"),
    Spec("projects.host", "h", "cycle_host", "Host", help="Change the target host for r"),
    Spec("projects.remove", "x", "remove_project", "Remove",
         help="Remove the highlighted project (asks first; jobs are kept)"),
]

JOBS: list[Spec] = [
    Spec("jobs.stop", "s", "stop", "Stop", help="Stop the selected job (SIGINT)"),
    Spec("jobs.kill", "k", "kill", "Kill",
         help="Kill the selected job (asks first; SIGTERM, then SIGKILL)"),
    Spec("jobs.cancel", "c", "cancel", "Cancel", help="Cancel the selected queued job"),
    Spec("jobs.retry", "r", "retry", "Retry", help="Queue the selected finished job again"),
    Spec("jobs.attach", "a", "attach", "Attach",
         help="Show the selected running job's tmux session (detach with C-b d to come back)"),
    Spec("jobs.send", "i", "send", "Send",
         help="Type a line into the selected interactive job (one run with --tty)"),
    Spec("jobs.move_up", "left_square_bracket", "move('up')", "Move up", group=MOVE,
         help="Move the selected queued job up one place"),
    Spec("jobs.move_down", "right_square_bracket", "move('down')", "Move down", group=MOVE,
         help="Move the selected queued job down one place"),
    Spec("jobs.move_front", "left_curly_bracket", "move('front')", "Move to front", group=MOVE,
         help="Move the selected queued job to the front of the queue"),
    Spec("jobs.move_back", "right_curly_bracket", "move('back')", "Move to back", group=MOVE,
         help="Move the selected queued job to the back of the queue"),
    Spec("jobs.pause", "p", "toggle_pause", "Pause/resume",
         help="Pause or resume the queue (running jobs go on)"),
    Spec("jobs.filter_status", "S", "cycle_filter('status')", "Filter by status", group=FILTER,
         help="Filter by status: all, active, running, queued, finished, failed, succeeded"),
    Spec("jobs.filter_project", "P", "cycle_filter('project')", "Filter by project", group=FILTER,
         help="Filter by project (cycles through them)"),
    Spec("jobs.filter_host", "H", "cycle_filter('host')", "Filter by host", group=FILTER,
         help="Filter by host (cycles through them)"),
    Spec("jobs.filter_clear", "escape", "clear_filters", "Clear filters", group=FILTER,
         help="Show all jobs again"),
    Spec("jobs.log", "l", "toggle_log", "Log", help="Move between the job table and the log"),
]

JOB_TABLE: list[Spec] = [
    Spec("jobs.cursor_up", "up", "cursor_up", "Up", show=False),
    Spec("jobs.cursor_down", "down", "cursor_down", "Down", show=False),
    Spec("jobs.page_up", "pageup", "page_up", "Page up", show=False),
    Spec("jobs.page_down", "pagedown", "page_down", "Page down", show=False),
    Spec("jobs.first", "home", "first", "Newest job", show=False, help="Go to the newest job (the top)"),
    Spec("jobs.last", "end", "last", "Oldest job", show=False, help="Go to the oldest job (the bottom)"),
]

HOSTS: list[Spec] = [
    Spec("hosts.doctor", "d", "doctor", "Doctor", help="Check the highlighted host (tools, disk, SSH)"),
    Spec("hosts.reconnect", "r", "reconnect", "Reconnect", help="Reconnect to the highlighted host"),
]

ARCHIVE: list[Spec] = [
    Spec("archive.island_next", "i", "island(1)", "Island", group=ISLAND,
         help="Show the next island's archive"),
    Spec("archive.island_prev", "I", "island(-1)", "Island", group=ISLAND,
         help="Show the previous island's archive"),
    Spec("archive.axes", "a", "cycle_axes", "Axes",
         help="Put the next pair of descriptors on the axes (archives of more than two)"),
    Spec("archive.best", "g", "go_best", "Best", help="Move the cursor to the island's best cell"),
    Spec("archive.branch", "b", "branch", "Branch",
         help="Make a git branch at the selected cell's commit (asks for its name)"),
    Spec("archive.exp_older", "e", "experiment(-1)", "Experiment", group=EXPERIMENT,
         help="Show the next older experiment"),
    Spec("archive.exp_newer", "E", "experiment(1)", "Experiment", group=EXPERIMENT,
         help="Show the next newer experiment"),
    Spec("archive.diff_down", "pagedown", "scroll_diff(1)", "Diff down", show=False,
         help="Scroll the selected cell's diff down a page"),
    Spec("archive.diff_up", "pageup", "scroll_diff(-1)", "Diff up", show=False,
         help="Scroll the selected cell's diff up a page"),
]

HEATMAP: list[Spec] = [
    Spec("archive.left", "left", "move(-1, 0)", "Left", show=False, help="Move the cursor one cell left"),
    Spec("archive.right", "right", "move(1, 0)", "Right", show=False, help="Move the cursor one cell right"),
    Spec("archive.up", "up", "move(0, 1)", "Up", show=False, help="Move the cursor one cell up"),
    Spec("archive.down", "down", "move(0, -1)", "Down", show=False, help="Move the cursor one cell down"),
]

# ---- Tasks tab (one block: the lead moves it to core/bindings.py at merge) -------------------
ATTEMPT = Binding.Group("Attempt", compact=True)
TASK_MOVE = Binding.Group("Move", compact=True)
TASK_VIEW = Binding.Group("View", compact=True)

TASKS: list[Spec] = [
    Spec("tasks.attach", "a", "attach", "Attach",
         help="Show the attempt's agent session in tmux (detach with C-b d to come back)"),
    Spec("tasks.followup", "f", "followup", "Follow-up",
         help="Send the attempt's agent a follow-up prompt (typed into a live session, else a new one)"),
    Spec("tasks.test", "t", "test", "Test", help="Run the project's test command in the attempt's worktree"),
    Spec("tasks.merge", "m", "merge", "Merge",
         help="Merge the attempt's branch into its target branch (asks first)"),
    Spec("tasks.archive", "x", "archive", "Archive",
         help="Remove the attempt's worktree, keeping its branch (asks first)"),
    Spec("tasks.start", "s", "start", "Start", help="Start a new attempt of the selected task (asks for the agent)"),
    Spec("tasks.log", "l", "view('log')", "Log", group=TASK_VIEW,
         help="Show the attempt's live agent log (again: back to the board)"),
    Spec("tasks.diff", "d", "view('diff')", "Diff", group=TASK_VIEW,
         help="Show the attempt's diff, a page at a time (again: back to the board)"),
    Spec("tasks.sweep", "w", "view('sweep')", "Sweep", group=TASK_VIEW,
         help="Show the table of the attempt's sweep, its champion marked (again: back to the board)"),
    Spec("tasks.attempt_prev", "left_square_bracket", "attempt(-1)", "Previous attempt", group=ATTEMPT,
         help="Show the selected task's previous attempt"),
    Spec("tasks.attempt_next", "right_square_bracket", "attempt(1)", "Next attempt", group=ATTEMPT,
         help="Show the selected task's next attempt"),
]

TASK_BOARD: list[Spec] = [
    Spec("tasks.move_left", "less_than_sign,shift+left", "move_task(-1)", "Move left", group=TASK_MOVE,
         help="Move the selected task to the column on the left"),
    Spec("tasks.move_right", "greater_than_sign,shift+right", "move_task(1)", "Move right", group=TASK_MOVE,
         help="Move the selected task to the column on the right"),
    Spec("tasks.left", "left", "cursor(-1, 0)", "Left", show=False, help="Select in the column on the left"),
    Spec("tasks.right", "right", "cursor(1, 0)", "Right", show=False, help="Select in the column on the right"),
    Spec("tasks.up", "up", "cursor(0, -1)", "Up", show=False, help="Select the task above"),
    Spec("tasks.down", "down", "cursor(0, 1)", "Down", show=False, help="Select the task below"),
]

TASK_DIFF: list[Spec] = [
    Spec("tasks.diff_more", "n", "more", "More diff", help="Read the next page of the diff"),
]
# ---- end of the Tasks tab's block ----------------------------------------------------------

DIALOG: list[Spec] = [
    Spec("dialog.cancel", "escape", "cancel", "Cancel"),
    Spec("dialog.complete", "tab", "complete", "Complete path", help="Accept the path completion"),
]

CONFIRM: list[Spec] = [
    Spec("confirm.yes", "y", "yes", "Yes"),
    Spec("confirm.no", "n,escape", "no", "No"),
]

HELP: list[Spec] = [
    Spec("help.close", "escape,question_mark,q", "close", "Close"),
]

SCOPES: dict[str, list[Spec]] = {
    "app": APP,
    "projects": PROJECTS,
    "jobs": JOBS + JOB_TABLE,
    "hosts": HOSTS,
    "archive": ARCHIVE + HEATMAP,
    "tasks": TASKS + TASK_BOARD + TASK_DIFF,
    "dialog": DIALOG,
    "confirm": CONFIRM,
    "help": HELP,
}


def bindings(*specs: list[Spec]) -> list[Binding]:
    return [s.binding() for group in specs for s in group]


def log_specs() -> list[Spec]:
    """The log view's bindings, as specs (read from the widget, which owns them)."""
    from evopilot.tui.widgets.log_view import LogLines, _SearchInput

    out = []
    for b in [*LogLines.BINDINGS, *_SearchInput.BINDINGS]:
        if isinstance(b, Binding) and b.id:
            out.append(Spec(b.id, b.key, b.action, b.description, b.show))
    return out


def all_specs() -> list[Spec]:
    return [s for group in SCOPES.values() for s in group] + log_specs()


def by_id() -> dict[str, Spec]:
    return {s.id: s for s in all_specs()}


def known_ids() -> set[str]:
    return {s.id for s in all_specs()}


def check_keymap(keys: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The overrides to apply, and one warning per id that names no binding."""
    ids = known_ids()
    good = {k: v for k, v in keys.items() if k in ids and v.strip()}
    bad = [f"[keys] {k!r}: no such binding (see ? for the list)" for k in keys if k not in ids]
    bad += [f"[keys] {k!r}: empty key" for k, v in keys.items() if k in ids and not v.strip()]
    return good, bad
