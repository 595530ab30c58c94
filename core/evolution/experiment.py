"""An experiment file: what to evolve, how to evaluate it, how to search, and what it may spend.

The file is TOML validated by these models (unknown keys are errors naming the file and the
key). Its canonical JSON is hashed: the same settings give the same experiment, so starting the
same file twice resumes it instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evopilot.core.config import MAX_TIMEOUT_S, validate_toml
from evopilot.core.errors import EvopilotError
from evopilot.core.evolution.mutators import MutatorConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage(_Strict):
    benchmark: str
    """A benchmark of the project (its path, or its file name when unique)."""
    threshold: float | None = None
    """The next stage runs only when this stage's objective reaches it (by the direction)."""


class Evaluation(_Strict):
    stages: Annotated[list[Stage], Field(min_length=1)]
    """Benchmarks in cascade: a cheap one first, the next only past its threshold."""
    objective: str = "objective"
    """The metric (in results.json) that MAP-Elites maximises or minimises."""
    direction: Literal["max", "min"] = "max"
    timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 600.0
    hosts: Annotated[list[str], Field(min_length=1)] = ["local"]
    parallel: Annotated[int, Field(ge=1, le=256)] = 2
    """Evaluations running at once (over all hosts)."""


class Descriptors(_Strict):
    metrics: list[str] = []
    """Metric names used as descriptor axes, or:"""
    embedding: Annotated[int, Field(ge=0, le=8)] = 0
    """The number of PCA dimensions of the code embedding (0: use ``metrics``)."""
    embedding_dim: Annotated[int, Field(ge=8, le=4096)] = 64
    refit_every: Annotated[int, Field(ge=1)] = 50
    """Placed candidates between PCA refits (a refit re-bins the archive)."""
    bins: list[Annotated[int, Field(ge=1, le=1000)]] = [10, 10]
    lower: list[float] = []
    upper: list[float] = []
    """Declared ranges; leave both empty to freeze them after ``warmup`` candidates."""
    warmup: Annotated[int, Field(ge=1)] = 10
    qd_offset: float | None = None
    """The QD score sums how much better than this each elite is; default: the seed program's
    objective (so the score measures what the search added)."""

    @model_validator(mode="after")
    def _shape(self) -> "Descriptors":
        dims = self.embedding or len(self.metrics)
        if dims == 0:
            raise ValueError("name descriptor metrics, or set embedding = N dimensions")
        if self.embedding and self.metrics:
            raise ValueError("use either metrics or embedding, not both")
        if len(self.bins) != dims:
            raise ValueError(f"bins has {len(self.bins)} entries for {dims} descriptor dimensions")
        if (self.lower or self.upper) and not (len(self.lower) == len(self.upper) == dims):
            raise ValueError(f"lower and upper need {dims} values each (or none, to freeze after warmup)")
        if self.embedding and self.warmup < self.embedding + 1:
            raise ValueError(f"warmup must be at least embedding + 1 ({self.embedding + 1}) to fit the PCA")
        if any(lo >= hi for lo, hi in zip(self.lower, self.upper)):
            raise ValueError("each lower bound must be below its upper bound")
        return self

    @property
    def dims(self) -> int:
        return self.embedding or len(self.metrics)


class Islands(_Strict):
    count: Annotated[int, Field(ge=1, le=64)] = 2
    migration_interval: Annotated[int, Field(ge=0)] = 20
    """Placed candidates between migrations (0: never): each island sends its best to the next."""
    migration_count: Annotated[int, Field(ge=1)] = 1
    in_flight: Annotated[int, Field(ge=1)] = 4
    """Candidates of one island being mutated or evaluated at once, so that parents come from
    recent results (the pipeline holds at most count x in_flight)."""


class Selection(_Strict):
    exploit: Annotated[float, Field(ge=0)] = 0.7
    """Parent = the island's best."""
    explore: Annotated[float, Field(ge=0)] = 0.2
    """Parent = a uniformly sampled elite."""
    random: Annotated[float, Field(ge=0)] = 0.1
    """Parent = any candidate ever placed, archived or not."""
    inspirations: Annotated[int, Field(ge=0, le=16)] = 2

    @model_validator(mode="after")
    def _some(self) -> "Selection":
        if self.exploit + self.explore + self.random <= 0:
            raise ValueError("exploit, explore and random cannot all be 0")
        return self


class Budget(_Strict):
    iterations: Annotated[int, Field(ge=1)] = 100
    minutes: Annotated[float, Field(gt=0)] | None = None
    dollars: Annotated[float, Field(ge=0)] | None = None
    requests: Annotated[int, Field(ge=0)] | None = None


class Experiment(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    project: str
    """A project registered with `evopilot project add`; it must be a git repository."""
    files: Annotated[list[str], Field(min_length=1)]
    """The files a mutator may change, relative to the project root."""
    seed: int = 0
    base: str = "HEAD"
    """The commit the seed program is taken from."""
    notes: str = ""
    """Free text for the prompt: what the code does and what to improve."""
    evaluation: Evaluation
    descriptors: Descriptors
    islands: Islands = Islands()
    selection: Selection = Selection()
    mutators: Annotated[list[MutatorConfig], Field(min_length=1)]
    mutations_in_flight: Annotated[int, Field(ge=1, le=64)] = 4
    """Mutator calls under way at once (they overlap with evaluations)."""
    novelty_threshold: Annotated[float, Field(ge=0)] = 0.0
    """Skip a child whose code embedding is closer than this to an archived one (0: off)."""
    budget: Budget = Budget()

    def config_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def maximize(self) -> bool:
        return self.evaluation.direction == "max"


def load_experiment(path: str | Path) -> Experiment:
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvopilotError(f"{path}: no such experiment file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EvopilotError(f"{path}: cannot read: {e}") from None
    _, exp = validate_toml(text, p, Experiment)
    return exp


def parse_experiment(snapshot: str) -> Experiment:
    """An experiment back from its stored snapshot (canonical JSON)."""
    return Experiment.model_validate_json(snapshot)
