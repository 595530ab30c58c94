"""The pure parts of the `command` mutator: the shell command of a coding-agent CLI, and the usage
it reports. The loop writes the prompt to a file, runs the command as a job in the parent's
worktree (in a terminal when the config says ``tty``), commits what it changed, and reads the
usage from the job's log.
"""

from __future__ import annotations

import re

from evopilot.core.quoting import quote
from evopilot.core.usage import parse_usage  # noqa: F401  (the loop reads it from here)

_PLACEHOLDER = re.compile(r"\{(prompt_file|workdir)\}")


def render_command(template: str, prompt_file: str, workdir: str) -> str:
    """``template`` with each ``{prompt_file}`` and ``{workdir}`` replaced by the quoted path.

    One pass: a path that itself contains ``{workdir}`` is not substituted again. Other braces
    (``${HOME}``, ``awk '{print}'``) are left alone.
    """
    values = {"prompt_file": prompt_file, "workdir": workdir}
    return _PLACEHOLDER.sub(lambda m: quote(values[m.group(1)]), template)
