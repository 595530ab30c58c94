"""The pure parts of agent sessions: an agent's shell command from its config template, the
branch name of an attempt, the hash of the instructions file it ran with, the usage it reported,
and the one-line summary of what it said last.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path

from evopilot.core.config import AgentConfig
from evopilot.core.errors import EvopilotError
from evopilot.core.quoting import join, quote
from evopilot.core.usage import Usage, parse_usage

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILTIN = ("prompt", "prompt_file", "workdir")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INSTRUCTIONS = ("AGENTS.md", "CLAUDE.md")
SLUG_MAX = 40
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` that ``values`` has replaced by its quoted value, in one
    pass (a value holding ``{workdir}`` is not substituted again). Other braces (``${HOME}``,
    ``awk '{print}'``, a placeholder with no value) are left as they are."""
    return PLACEHOLDER.sub(lambda m: quote(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def check_params(agent_name: str, agent: AgentConfig, params: Mapping[str, str]) -> None:
    """Each sweep parameter must reach the agent: a ``{name}`` in its command. A mistyped
    parameter silently ignored would make every cell of a sweep the same run."""
    for name in params:
        if not PARAM_NAME.match(name) or name in BUILTIN:
            raise EvopilotError(f"--param {name}: not a usable parameter name")
        if name not in placeholders(agent.command):
            raise EvopilotError(f"--param {name}: agent {agent_name}'s command has no {{{name}}}")


def session_command(agent: AgentConfig, *, prompt: str, prompt_file: str, workdir: str,
                    params: Mapping[str, str], followup: bool = False) -> str:
    """The shell text of one agent session: its environment, the rendered template (the
    ``followup`` one for a follow-up session), and its usage command after it; the session's
    exit status is the agent's."""
    template = (agent.followup or agent.command) if followup else agent.command
    env = {**agent.env, **{f"EVOPILOT_PARAM_{k.upper()}": v for k, v in params.items()}}
    text = render(template, {**params, "prompt": prompt, "prompt_file": prompt_file, "workdir": workdir})
    lines = [join(["export", f"{k}={v}"]) for k, v in sorted(env.items())]
    if agent.usage_command:
        lines += [text, "status=$?", agent.usage_command, 'exit "$status"']
    else:
        lines.append(text)
    return "\n".join(lines)


def reads_usage(agent: AgentConfig) -> bool:
    return agent.usage == "json" or agent.usage_command is not None


def session_usage(agent: AgentConfig, agent_name: str, log_tail: str) -> list[Usage]:
    """The usage the session reported (its last usage object), or [] when the agent reports none."""
    return parse_usage(log_tail, provider=agent_name) if reads_usage(agent) else []


def slug(title: str) -> str:
    """A branch-safe slug of a task's title: ascii lower-case words joined by '-'."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", text)
    out = ""
    for w in words:
        if len(out) + len(w) + 1 > SLUG_MAX:
            break
        out = f"{out}-{w}" if out else w
    return out or "task"


def branch_name(task_id: int, title: str, taken: int = 0) -> str:
    """``evopilot/<task-id>-<slug>``; the ``taken``-th next attempt gets ``-2``, ``-3``, ..."""
    base = f"evopilot/{task_id}-{slug(title)}"
    return base if taken == 0 else f"{base}-{taken + 1}"


def agents_hash(worktree: Path) -> str | None:
    """sha256 of the first instructions file (AGENTS.md, else CLAUDE.md) at the worktree's top."""
    for name in INSTRUCTIONS:
        try:
            return hashlib.sha256((worktree / name).read_bytes()).hexdigest()
        except OSError:
            continue
    return None


def summary(log_tail: str, limit: int = 200) -> str:
    """The last non-empty line of the output, without terminal escapes (the agent's last words)."""
    for line in reversed(ESCAPES.sub("", log_tail).replace("\r", "\n").splitlines()):
        if line.strip():
            return line.strip()[:limit]
    return ""
