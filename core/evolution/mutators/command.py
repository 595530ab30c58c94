"""The pure parts of the `command` mutator: the shell command of a coding-agent CLI, and the usage
it reports. The loop writes the prompt to a file, runs the command as a job in the parent's
worktree (in a terminal when the config says ``tty``), commits what it changed, and reads the
usage from the job's log.
"""

from __future__ import annotations

import json
import math
import re

from evopilot.core.evolution.mutators.base import Usage
from evopilot.core.quoting import quote

_PLACEHOLDER = re.compile(r"\{(prompt_file|workdir)\}")
# CSI sequences (colours, cursor moves) and OSC sequences (titles, links) a terminal CLI prints
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
# Claude Code splits input tokens three ways; all of them went into the model
_INPUT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def render_command(template: str, prompt_file: str, workdir: str) -> str:
    """``template`` with each ``{prompt_file}`` and ``{workdir}`` replaced by the quoted path.

    One pass: a path that itself contains ``{workdir}`` is not substituted again. Other braces
    (``${HOME}``, ``awk '{print}'``) are left alone.
    """
    values = {"prompt_file": prompt_file, "workdir": workdir}
    return _PLACEHOLDER.sub(lambda m: quote(values[m.group(1)]), template)


def parse_usage(text: str, provider: str = "command") -> list[Usage]:
    """The usage in the last line of ``text`` holding a JSON object with ``usage`` or
    ``total_cost_usd`` (Claude Code's ``--output-format json``); [] when there is none.

    Noise is tolerated: terminal escapes, carriage returns, text before the object on its line,
    other JSON lines. tokens_in counts cache reads and writes too; a field of the wrong type
    counts as 0. The model is the one named in ``modelUsage`` (several joined by commas) or
    ``model``.
    """
    decoder = json.JSONDecoder()
    for line in reversed(text.splitlines()):
        if "{" not in line:
            continue
        line = _ESCAPES.sub("", line).replace("\r", "")
        start = line.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(line, start)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and ("total_cost_usd" in obj or isinstance(obj.get("usage"), dict)):
                return [_usage(obj, provider)]
            start = line.find("{", start + 1)
    return []


def _usage(obj: dict, provider: str) -> Usage:
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
    models = obj.get("modelUsage")
    if isinstance(models, dict) and models:
        model = ",".join(sorted(models))
    else:
        model = obj["model"] if isinstance(obj.get("model"), str) else ""
    return Usage(provider=provider, model=model,
                 tokens_in=sum(_tokens(usage.get(k)) for k in _INPUT_KEYS),
                 tokens_out=_tokens(usage.get("output_tokens")),
                 dollars=_dollars(obj.get("total_cost_usd")))


def _tokens(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0  # not a bool, not a float


def _dollars(value: object) -> float:
    ok = type(value) in (int, float) and math.isfinite(value) and value >= 0
    return float(value) if ok else 0.0
