"""Usage reports of coding-agent CLIs: what a session cost, read from its output.

Shared by the evolution's `command` mutator and the tasks' agent sessions.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

# CSI sequences (colours, cursor moves) and OSC sequences (titles, links) a terminal CLI prints
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
# Claude Code splits input tokens three ways; all of them went into the model
_INPUT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass
class Usage:
    """What one mutation (or agent session) cost at one provider and model."""

    provider: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    dollars: float = 0.0
    requests: int = 1


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
