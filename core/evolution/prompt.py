"""The prompt a mutator gets: the notes, the parent's code and metrics, the inspirations'.

Pure text; the loop keeps it with the iteration, and `evolve show` prints it.
"""

from __future__ import annotations

from collections.abc import Mapping


def build_prompt(*, notes: str, objective: str, maximize: bool, files: Mapping[str, str],
                 metrics: Mapping[str, float], inspirations: list[tuple[str, Mapping[str, float], Mapping[str, str]]]) -> str:
    goal = "higher" if maximize else "lower"
    parts = [
        "You improve a program by editing its code.",
        f"Goal: make the metric '{objective}' {goal}.",
    ]
    if notes.strip():
        parts += ["", "Notes:", notes.strip()]
    parts += ["", "Current program" + (f" ({_metrics(metrics)})" if metrics else "") + ":"]
    parts += [_file_block(p, src) for p, src in files.items()]
    for i, (commit, m, insp_files) in enumerate(inspirations, 1):
        parts += ["", f"Inspiration {i} (commit {commit[:12]}, {_metrics(m)}):"]
        parts += [_file_block(p, src) for p, src in insp_files.items()]
    parts += ["", "Answer with SEARCH/REPLACE blocks (path line, <<<<<<< SEARCH, old lines, =======, "
              "new lines, >>>>>>> REPLACE) or the whole new file in a fenced block."]
    return "\n".join(parts) + "\n"


def _metrics(m: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in m.items()) or "no metrics"


def _file_block(path: str, src: str) -> str:
    return f"{path}\n```python\n{src.rstrip()}\n```"
