"""What every mutator takes and gives back, and the config of each kind.

A mutator gets the parent's files in scope, the prompt the loop built and a seed, and answers
with the full new content of the files it changed. It never touches the disk or git: the loop
writes the files into the parent's worktree, commits them and evaluates the commit. A mutator
that cannot produce a candidate raises ``MutationError``; the loop fails that iteration with the
reason and goes on. A problem that would fail every iteration the same way (a missing API key, a
refused key) is an ``EvopilotError`` instead, and stops the run.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal, TypeVar

from evopilot.core.config import MAX_TIMEOUT_S
from evopilot.core.usage import Usage  # noqa: F401  (mutators import it from here)
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

T = TypeVar("T")


@dataclass
class Mutation:
    files: dict[str, str]
    """path -> full new content, only the files that changed (empty: the answer changed nothing)."""
    summary: str
    """One line for the commit message and the iteration list."""
    answer: str
    """The mutator's raw answer, kept for `evolve show`."""
    usage: list[Usage] = field(default_factory=list)


@dataclass
class MutationRequest:
    files: dict[str, str]
    """The parent's files in scope: path (relative, '/'-separated) -> content."""
    prompt: str
    seed: int


class MutationError(Exception):
    """This iteration produced no candidate; ``reason`` is one line saying why.

    ``usage`` and ``answer`` carry what was spent and said before it failed, so that a budget
    counts failed iterations too and `evolve show` can show the answer that did not apply.
    """

    def __init__(self, reason: str, *, usage: list[Usage] | None = None, answer: str = "") -> None:
        self.reason = " ".join(reason.split())  # one line, whatever a model or server put in it
        super().__init__(self.reason)
        self.usage = usage or []
        self.answer = answer


def weighted_choice(options: Sequence[T], weights: Sequence[float], rng: random.Random) -> T:
    """One of ``options`` with probability proportional to its weight, drawn from ``rng``."""
    return rng.choices(options, weights=weights, k=1)[0]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Weight = Annotated[float, Field(gt=0)]


class ParamsMutatorConfig(_Strict):
    """Perturb a few numeric literals in EVOLVE-BLOCK regions; offline and free."""

    kind: Literal["params"] = "params"
    weight: Weight = 1.0
    changes: Annotated[int, Field(ge=1)] = 2
    """How many literals one mutation changes (fewer when there are fewer)."""
    scale: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """A float is multiplied by a factor in [1-scale, 1+scale]; an int moves by up to scale*|value|."""
    files: list[str] = []
    """Glob patterns (``*`` crosses folders) choosing which of the request's .py files to perturb;
    empty: all of them."""


class ModelChoice(_Strict):
    name: Annotated[str, Field(min_length=1)]
    weight: Weight = 1.0


class Price(_Strict):
    input_per_mtok: Annotated[float, Field(ge=0)]
    """Dollars per million prompt tokens."""
    output_per_mtok: Annotated[float, Field(ge=0)]
    """Dollars per million completion tokens."""


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LlmMutatorConfig(_Strict):
    """An OpenAI-compatible chat endpoint (OpenAI, OpenRouter, vLLM, Ollama)."""

    kind: Literal["llm"] = "llm"
    weight: Weight = 1.0
    base_url: str | None = None
    """e.g. https://openrouter.ai/api/v1 or http://localhost:11434/v1; none: OpenAI's."""
    model: str | None = None
    """One model; or ``models`` to draw one per mutation by weight."""
    models: list[ModelChoice] = []
    api_key_env: str = "OPENAI_API_KEY"
    """The NAME of the environment variable holding the key (never the key itself); "" for an
    endpoint that takes none (a local vLLM or Ollama)."""
    prices: dict[str, Price] = {}
    """model -> price; a model without a price costs $0 (a local model)."""
    max_retries: Annotated[int, Field(ge=0, le=20)] = 5
    """Retries of a request refused for rate (429), overload (408/409/5xx) or a connection error."""
    backoff_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    """First retry delay; doubled per retry, with jitter, unless the server sends Retry-After."""
    timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 600.0
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    diff_mode: Literal["diff", "full"] = "diff"
    """What the model is asked for: SEARCH/REPLACE blocks or whole files. Either answer applies."""
    choices: Annotated[int, Field(ge=1, le=16, exclude_if=lambda v: v == 1)] = 1
    """Candidates asked of one request (the API's ``n``): that many iterations share a parent and
    a prompt, sent and paid for once. Left out of the experiment's hash at 1 (added later: an
    experiment stored before keeps its hash)."""

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if v and not _ENV_NAME.match(v):
            # the value is not echoed: it may be the key itself
            raise ValueError("must be the NAME of an environment variable (like OPENAI_API_KEY), "
                             "not the key itself")
        return v

    @model_validator(mode="after")
    def _one_way_to_name_models(self) -> LlmMutatorConfig:
        if (self.model is None) == (not self.models):
            raise ValueError("set either `model` or `models`, not both and not neither")
        unknown = sorted(set(self.prices) - set(self.model_names()))
        if unknown:
            raise ValueError(f"prices name models that are not used: {', '.join(unknown)}")
        return self

    def model_names(self) -> list[str]:
        return [self.model] if self.model is not None else [m.name for m in self.models]


class CommandMutatorConfig(_Strict):
    """Any coding-agent CLI, run as a job in the parent's worktree."""

    kind: Literal["command"] = "command"
    weight: Weight = 1.0
    template: str
    """Shell command with {prompt_file} and optionally {workdir}, each replaced by a quoted path:
    do not quote them in the template. e.g. `claude -p "$(cat {prompt_file})" --output-format json`."""
    tty: bool = False
    """Run the job in a terminal (for CLIs that need one)."""
    timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 1800.0
    usage: Literal["json", "none"] = "none"
    """"json": the CLI prints a JSON object with usage.input_tokens, usage.output_tokens and
    total_cost_usd (Claude Code's --output-format json) as its last JSON line."""

    @field_validator("template")
    @classmethod
    def _has_prompt(cls, v: str) -> str:
        if "{prompt_file}" not in v:
            raise ValueError("must contain {prompt_file} (the file holding the prompt)")
        return v


MutatorConfig = Annotated[
    ParamsMutatorConfig | LlmMutatorConfig | CommandMutatorConfig, Field(discriminator="kind")
]
