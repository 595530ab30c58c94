"""Reading a job's output: progress from its log, metrics from results.json, errors from tracebacks.

Completion is never parsed from output: it is the exit code. These functions are pure.
"""

from __future__ import annotations

import json
import math
import re

from evopilot.core.models import Metric

# The last of these in the output is the job's progress.
_PROGRESS = re.compile(
    rb"\[\s*(?P<bi>\d+)\s*/\s*(?P<bn>\d+)\s*\]"  # [12/50]
    rb"|(?<![\w/.:-])(?P<ti>\d+)/(?P<tn>\d+)(?![\w/.:-])"  # tqdm's 12/50 (not a date or path)
    rb"|(?<![\w.])(?P<pct>\d{1,3}(?:\.\d+)?)%"  # 24%
)
_HINT = re.compile(rb"\d\s*/\s*\d|\d%")
PROGRESS_WINDOW = 64 * 1024
_LINE_BREAK = re.compile(rb"[\r\n]")
# Control characters no line of text has (tab and ESC, for colours, are text here).
_BINARY = re.compile(rb"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]")


def parse_progress(data: bytes, before: bytes = b"") -> tuple[int, int] | None:
    """The last progress marker in the last 64 KB of ``before + data`` as (current, total),
    or None. ``before``: the end of the previous read (a marker split across reads).

    Only the tail is searched so that a flood of output without markers costs a bounded few
    milliseconds per tick; a job that reports progress does so far more often than that. The
    two are not joined whole: a catch-up reads 16 MiB at a time.
    """
    return _last_progress((before + data[-PROGRESS_WINDOW:])[-PROGRESS_WINDOW:])


def _last_progress(data: bytes) -> tuple[int, int] | None:
    """The marker of the last line that has one; within a line ``[i/n]`` beats ``i/n`` beats
    ``NN%`` (so "[3/16] gap 0.8%" is 3 of 16, and tqdm's "45%|###| 45/100" is 45 of 100).
    Only lines of text count: "[5/100]" inside binary output is chance, not progress."""
    # Every marker has a digit by a "/" or before a "%": only lines with one are searched
    # (the full search costs ~5 us a line: 4-6 ms a tick for a 64 KB window of a flooded log)
    if not _HINT.search(data):
        return None
    for line in reversed(_LINE_BREAK.split(data)):
        if not _HINT.search(line):
            continue
        best_rank, found = 0, None
        for m in _PROGRESS.finditer(line):
            if m["bn"] is not None:
                rank, cur, tot = 3, int(m["bi"]), int(m["bn"])
            elif m["tn"] is not None:
                rank, cur, tot = 2, int(m["ti"]), int(m["tn"])
                if tot == 0 or cur > tot:
                    continue
            else:
                pct = float(m["pct"])
                if pct > 100:
                    continue
                rank, cur, tot = 1, int(pct), 100
            if rank >= best_rank:
                best_rank, found = rank, (cur, tot)
        if found and _is_text(line):
            return found
    return None


def _is_text(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _BINARY.search(line) is None


class ResultsError(ValueError):
    """results.json exists but is not a usable object of metrics."""


def parse_results(text: str | bytes) -> list[Metric]:
    """Metrics from results.json: ``{"name": number}`` or
    ``{"name": {"value": n, "unit": "s", "higher_is_better": false}}`` (seed 000's metrics)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"results.json is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"results.json must be a JSON object, not {type(data).__name__}")
    out = []
    for name, v in data.items():
        unit = hib = None
        if isinstance(v, dict):
            unknown = set(v) - {"value", "unit", "higher_is_better"}
            if "value" not in v or unknown:
                raise ResultsError(
                    f"results.json: metric {name!r} must have 'value' and only "
                    f"'unit' and 'higher_is_better' besides"
                )
            unit, hib, v = v.get("unit"), v.get("higher_is_better"), v["value"]
            if unit is not None and not isinstance(unit, str):
                raise ResultsError(f"results.json: metric {name!r}: unit must be a string")
            if hib is not None and not isinstance(hib, bool):
                raise ResultsError(f"results.json: metric {name!r}: higher_is_better must be true/false")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ResultsError(f"results.json: metric {name!r} is not a finite number: {v!r}")
        out.append(Metric(name=str(name), value=float(v), unit=unit, higher_is_better=hib))
    return out


_TRACEBACK = b"Traceback (most recent call last):"


def error_summary(log_tail: bytes, max_lines: int = 15) -> str:
    """The last lines of the last traceback in ``log_tail``, else its last lines."""
    i = log_tail.rfind(_TRACEBACK)
    text = log_tail[i:] if i >= 0 else log_tail
    lines = [l.rstrip() for l in text.decode("utf-8", "replace").splitlines() if l.strip()]
    return "\n".join(line[:500] for line in lines[-max_lines:])
