"""Every key binding of the app as plain data: an id, a default key, an action, a description.

The table lives in core (which never imports textual) so that config validation knows the
binding ids and keys: ``[keys]`` naming no binding, or binding a key that another binding
active at the same time already has, is a config error like any other (``keys_problem``).
``tui.keymap`` turns these specs into Textual ``Binding``s; every widget builds its
``BINDINGS`` from them, so this table is the one list of keys.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

GROUPS = {"Move": True, "Filter": False, "Tab": True, "Island": True, "Experiment": True, "Attempt": True,
          "View": True}
"""Binding groups shown as one item in the key bar: name -> compact (keys without spaces)."""


@dataclass(frozen=True, slots=True)
class Spec:
    id: str
    key: str
    action: str
    description: str
    show: bool = True
    priority: bool = False
    group: str | None = None
    help: str = ""
    """A longer description for the help screen and the command palette."""
    rank: int = 3
    """Place in the key bar when it is too narrow for every key: lower ranks stay longest
    (0: always shown)."""

    @property
    def long(self) -> str:
        return self.help or self.description


APP: list[Spec] = [
    Spec("app.help", "question_mark", "help", "Help", help="Show every key binding", rank=0),
    Spec("app.tab.projects", "1", "show_tab('projects')", "Projects", group="Tab",
         help="Show the Projects tab", rank=1),
    Spec("app.tab.tasks", "2", "show_tab('tasks')", "Tasks", group="Tab",
         help="Show the Tasks tab", rank=1),
    Spec("app.tab.jobs", "3", "show_tab('jobs')", "Jobs", group="Tab",
         help="Show the Jobs tab", rank=1),
    Spec("app.tab.archive", "4", "show_tab('archive')", "Archive", group="Tab",
         help="Show the Archive tab", rank=1),
    Spec("app.tab.hosts", "5", "show_tab('hosts')", "Hosts", group="Tab",
         help="Show the Hosts tab", rank=1),
    Spec("app.quit", "q", "quit", "Quit", help="Quit (jobs keep running in tmux)", rank=0),
]

PROJECTS: list[Spec] = [
    Spec("projects.add", "a", "add_project", "Add project", rank=2, help="Add a project (a directory)"),
    Spec("projects.add_benchmark", "b", "add_benchmark", "Add bench",
         help="Add benchmark files to the highlighted project"),
    Spec("projects.toggle", "space", "toggle", "Select", rank=2,
         help="Select or unselect a benchmark (on a project: all of its benchmarks)"),
    Spec("projects.run", "r", "run", "Run", rank=2,
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
    Spec("jobs.move_up", "left_square_bracket", "move('up')", "Move up", group="Move", rank=4,
         help="Move the selected queued job up one place"),
    Spec("jobs.move_down", "right_square_bracket", "move('down')", "Move down", group="Move", rank=4,
         help="Move the selected queued job down one place"),
    Spec("jobs.move_front", "left_curly_bracket", "move('front')", "Move to front", group="Move", rank=4,
         help="Move the selected queued job to the front of the queue"),
    Spec("jobs.move_back", "right_curly_bracket", "move('back')", "Move to back", group="Move", rank=4,
         help="Move the selected queued job to the back of the queue"),
    Spec("jobs.pause", "p", "toggle_pause", "Pause/resume",
         help="Pause or resume the queue (running jobs go on)"),
    Spec("jobs.filter_status", "S", "cycle_filter('status')", "Filter by status", group="Filter", rank=4,
         help="Filter by status: all, active, running, queued, finished, failed, succeeded"),
    Spec("jobs.filter_project", "P", "cycle_filter('project')", "Filter by project", group="Filter", rank=4,
         help="Filter by project (cycles through them)"),
    Spec("jobs.filter_host", "H", "cycle_filter('host')", "Filter by host", group="Filter", rank=4,
         help="Filter by host (cycles through them)"),
    Spec("jobs.filter_clear", "escape", "clear_filters", "Clear filters", group="Filter", rank=4,
         help="Show all jobs again"),
    Spec("jobs.log", "l", "toggle_log", "Log", rank=2, help="Move between the job table and the log"),
    Spec("jobs.detail", "d", "toggle_detail", "Detail", rank=2,
         help="Show or hide every detail of the selected job (command, times, metrics, history)"),
    Spec("jobs.sort", "o", "cycle_sort", "Sort",
         help="Sort the table by the next column: id, project, benchmark, host, status"),
    Spec("jobs.mark", "m", "mark", "Mark", help="Mark or unmark the selected job for Compare"),
    Spec("jobs.compare", "C", "compare", "Compare",
         help="Show the marked jobs' metrics side by side (the best of each highlighted)"),
]

JOB_TABLE: list[Spec] = [
    Spec("jobs.find", "slash", "find", "Find", rank=2,
         help="Filter the table by text: project, benchmark, host, status, error"),
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
    Spec("archive.island_next", "i", "island(1)", "Island", group="Island",
         help="Show the next island's archive"),
    Spec("archive.island_prev", "I", "island(-1)", "Island", group="Island",
         help="Show the previous island's archive"),
    Spec("archive.axes", "a", "cycle_axes", "Axes",
         help="Put the next pair of descriptors on the axes (archives of more than two)"),
    Spec("archive.best", "g", "go_best", "Best", help="Move the cursor to the island's best cell"),
    Spec("archive.branch", "b", "branch", "Branch",
         help="Make a git branch at the selected cell's commit (asks for its name)"),
    Spec("archive.exp_older", "e", "experiment(-1)", "Experiment", group="Experiment",
         help="Show the next older experiment"),
    Spec("archive.exp_newer", "E", "experiment(1)", "Experiment", group="Experiment",
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

TASKS: list[Spec] = [
    Spec("tasks.attach", "a", "attach", "Attach", rank=2,
         help="Show the attempt's agent session in tmux (detach with C-b d to come back)"),
    Spec("tasks.followup", "f", "followup", "Follow-up", rank=2,
         help="Send the attempt's agent a follow-up prompt (typed into a live session, else a new one)"),
    Spec("tasks.test", "t", "test", "Test", rank=3,
         help="Run the project's test command in the attempt's worktree"),
    Spec("tasks.merge", "m", "merge", "Merge", rank=3,
         help="Merge the attempt's branch into its target branch (asks first)"),
    Spec("tasks.archive", "x", "archive", "Archive", rank=4,
         help="Remove the attempt's worktree, keeping its branch (asks first)"),
    Spec("tasks.start", "s", "start", "Start", rank=2,
         help="Start a new attempt of the selected task (asks for the agent)"),
    Spec("tasks.log", "l", "view('log')", "Log", group="View", rank=2,
         help="Show the attempt's live agent log (again: back to the board)"),
    Spec("tasks.diff", "d", "view('diff')", "Diff", group="View", rank=2,
         help="Show the attempt's diff, a page at a time (again: back to the board)"),
    Spec("tasks.sweep", "w", "view('sweep')", "Sweep", group="View", rank=2,
         help="Show the table of the attempt's sweep, its champion marked (again: back to the board)"),
    Spec("tasks.attempt_prev", "left_square_bracket", "attempt(-1)", "Previous attempt", group="Attempt",
         rank=3, help="Show the selected task's previous attempt"),
    Spec("tasks.attempt_next", "right_square_bracket", "attempt(1)", "Next attempt", group="Attempt",
         rank=3, help="Show the selected task's next attempt"),
]

TASK_BOARD: list[Spec] = [
    Spec("tasks.move_left", "less_than_sign,shift+left", "move_task(-1)", "Move left", group="Move", rank=2,
         help="Move the selected task to the column on the left"),
    Spec("tasks.move_right", "greater_than_sign,shift+right", "move_task(1)", "Move right", group="Move",
         rank=2, help="Move the selected task to the column on the right"),
    Spec("tasks.left", "left", "cursor(-1, 0)", "Left", show=False, help="Select in the column on the left"),
    Spec("tasks.right", "right", "cursor(1, 0)", "Right", show=False, help="Select in the column on the right"),
    Spec("tasks.up", "up", "cursor(0, -1)", "Up", show=False, help="Select the task above"),
    Spec("tasks.down", "down", "cursor(0, 1)", "Down", show=False, help="Select the task below"),
]

TASK_DIFF: list[Spec] = [
    Spec("tasks.diff_more", "n", "more", "More diff", rank=2, help="Read the next page of the diff"),
]

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

COMPARE: list[Spec] = [
    Spec("compare.close", "escape,C", "close", "Close"),
]

JOB_FIND: list[Spec] = [
    Spec("jobs.find_close", "escape", "close_find", "Clear find", rank=2,
         help="Clear the text filter and go back to the table (Enter keeps it)"),
]

LOG: list[Spec] = [
    Spec("log.search", "slash", "search", "Search", help="Search the log (regular expression)"),
    Spec("log.search_next", "n", "search_next", "Next match", rank=4),
    Spec("log.search_prev", "N", "search_prev", "Prev match", rank=4),
    Spec("log.first_error", "e", "first_error", "First error"),
    Spec("log.follow", "end", "follow", "Follow", help="Follow the end of the log"),
    Spec("log.back", "escape", "back", "Table", rank=2, help="Leave the log, back to the job table"),
]

LOG_SEARCH: list[Spec] = [
    Spec("log.search_close", "escape", "close_search", "Close search", rank=2),
]

SCOPES: dict[str, list[Spec]] = {
    "app": APP,
    "projects": PROJECTS,
    "jobs": JOBS,
    "job_table": JOB_TABLE,
    "job_find": JOB_FIND,
    "log": LOG,
    "log_search": LOG_SEARCH,
    "hosts": HOSTS,
    "archive": ARCHIVE,
    "heatmap": HEATMAP,
    "tasks": TASKS,
    "task_board": TASK_BOARD,
    "task_diff": TASK_DIFF,
    "dialog": DIALOG,
    "confirm": CONFIRM,
    "help": HELP,
    "compare": COMPARE,
}

CONTEXTS: list[tuple[str, ...]] = [
    ("app", "projects"),
    ("app", "jobs", "job_table"),
    ("app", "jobs", "job_find"),
    ("app", "jobs", "log"),
    ("app", "jobs", "log", "log_search"),
    ("app", "hosts"),
    ("app", "archive", "heatmap"),
    ("app", "tasks", "task_board"),
    ("app", "tasks", "task_diff"),
    ("app", "dialog"),
    ("app", "confirm"),
    ("app", "help"),
    ("app", "compare"),
]
"""Scopes whose bindings are active together (a focused widget and the widgets around it):
two bindings of one context must not share a key."""


def all_specs() -> list[Spec]:
    return [s for group in SCOPES.values() for s in group]


def by_id() -> dict[str, Spec]:
    return {s.id: s for s in all_specs()}


def split_keys(keys: str) -> list[str]:
    return [k.strip() for k in keys.split(",") if k.strip()]


def keys_problem(overrides: dict[str, str]) -> tuple[str, str] | None:
    """The first problem of ``[keys]`` overrides as (binding id, what is wrong), or None.

    An id that names no binding is one (with a "did you mean" when one is close), and so is a
    key that an override gives to a binding while another binding active at the same time has
    it (``"jobs.kill" = "q"`` would silently replace quit). Defaults that share a key on purpose
    (``q`` closes help) are not the user's doing and pass.
    """
    specs = by_id()
    for name, keys in overrides.items():
        if name not in specs:
            close = difflib.get_close_matches(name, specs, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else " (the ? screen lists them)"
            return name, f"no such binding{hint}"
        if not split_keys(keys):
            return name, "empty key"
    for context in CONTEXTS:
        owner: dict[str, str] = {}
        for spec in (s for scope in context for s in SCOPES[scope]):
            for key in split_keys(overrides.get(spec.id, spec.key)):
                other = owner.setdefault(key, spec.id)
                if other != spec.id and (spec.id in overrides or other in overrides):
                    name = spec.id if spec.id in overrides else other
                    theirs = other if name == spec.id else spec.id
                    return name, (f"{key!r} is already bound to {theirs} "
                                  f"({specs[theirs].description}); choose another key")
    return None
