"""The pure parts of sweeps (seed 003's solves): the matrix of cells and the champion.

A sweep runs one attempt per cell: each agent with each combination of the parameters' values.
The champion is the attempt whose tests pass (and that changed something: an empty diff solves
nothing), then the fewest lines changed, then the lowest cost, then the shortest time.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evopilot.core.errors import EvopilotError
from evopilot.core.models import AttemptRow

MAX_CELLS = 256


@dataclass(frozen=True, slots=True)
class Result:
    """One attempt's outcome as the ranking sees it."""

    attempt_id: int
    tests_passed: bool | None
    lines_changed: int | None
    dollars: float
    seconds: float


def parse_param(text: str) -> tuple[str, list[str]]:
    """``NAME=V1,V2`` -> (NAME, [V1, V2])."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values:
        raise EvopilotError(f"--param {text!r}: expected NAME=VALUE[,VALUE...]")
    return name, [v.strip() for v in values.split(",")]


def expand(agents: Sequence[str], params: Mapping[str, Sequence[str]]) -> list[tuple[str, dict[str, str]]]:
    """Every cell of the matrix: (agent, {param: value}), agents outermost, in the order given."""
    if not agents:
        raise EvopilotError("a sweep needs at least one agent (--agents a,b)")
    if len(set(agents)) != len(agents):
        raise EvopilotError("--agents: an agent is named twice")
    names = list(params)
    combos = list(itertools.product(*(params[n] for n in names)))
    if len(agents) * len(combos) > MAX_CELLS:
        raise EvopilotError(f"the sweep has {len(agents) * len(combos)} cells; at most {MAX_CELLS}")
    return [(a, dict(zip(names, c))) for a in agents for c in combos]


def rank_key(r: Result) -> tuple:
    return (r.lines_changed, r.dollars, r.seconds, r.attempt_id)


def champion(results: Sequence[Result]) -> int | None:
    """The winning attempt's id; None when none passed its tests with changes."""
    eligible = [r for r in results if r.tests_passed and r.lines_changed]
    return min(eligible, key=rank_key).attempt_id if eligible else None


def result_of(a: AttemptRow) -> Result:
    return Result(a.id, a.tests_passed, a.lines_changed, a.dollars, a.agent_seconds)
