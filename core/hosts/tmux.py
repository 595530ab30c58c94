"""The tmux command lines evopilot runs, quoted with ``core.quoting``.

All functions here are pure and return shell text.
"""

from __future__ import annotations

from evopilot.core.quoting import join, quote


def session_name(prefix: str, instance: str, job_id: int) -> str:
    """tmux session of a job; the database's instance tag keeps two databases apart."""
    return f"{prefix}-{instance}-{job_id}"


def new_session_args(session: str, command: str) -> list[str]:
    """tmux's arguments that start ``command`` (shell text) detached in a new session."""
    return ["new-session", "-d", "-s", session, "-x", "200", "-y", "50", command, *ends_with_command(session)]


def new_session_argv(session: str, argv: list[str]) -> list[str]:
    """The tmux command that starts ``argv`` (no shell) detached in a new session."""
    return ["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", "--", *argv,
            *ends_with_command(session)]


def has_session_argv(session: str) -> list[str]:
    return ["tmux", "has-session", "-t", f"={session}"]


def ends_with_command(session: str) -> list[str]:
    """What follows a ``new-session`` of ``session`` in the same tmux command so that the
    session ends with its command even under a user's ``remain-on-exit on``: a dead pane kept
    would keep a job alive to evopilot (a killed wrapper never seen lost) and leave a session
    per job behind. In the same command, it runs before the server can see the command end."""
    return [";", "set-option", "-w", "-t", f"={session}:", "remain-on-exit", "off"]


def new_session(session: str, command: str) -> str:
    """Start ``command`` (shell text) detached in a new session; fails if the session exists."""
    return join(["tmux", *new_session_args(session, command)])


def has_session(session: str) -> str:
    return f"tmux has-session -t {quote('=' + session)} 2>/dev/null"


def kill_session(session: str) -> str:
    return f"tmux kill-session -t {quote('=' + session)} 2>/dev/null || true"


LIST_SESSIONS = ["tmux", "list-sessions", "-F", "#{session_name}"]


def list_sessions() -> str:
    return f"{join(LIST_SESSIONS)} 2>/dev/null || true"


def send_keys(session: str, text: str) -> str:
    """Type ``text`` literally (no key names, no options even if it starts with '-') into the
    session's active pane, then press Enter."""
    target = f"={session}:"  # the trailing ':' makes '=' (exact name) apply to a pane target
    return (f"{join(['tmux', 'send-keys', '-t', target, '-l', '--', text])} && "
            f"{join(['tmux', 'send-keys', '-t', target, 'Enter'])}")
