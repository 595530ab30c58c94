"""The `llm` mutator: an OpenAI-compatible chat endpoint through the official `openai` client.

One request per mutation: the loop's prompt as the user message, the answer format as the system
message (``instructions``); with ``choices`` > 1, one request answers that many iterations (the
API's ``n``; see ``core.evolution.loop``). The model is drawn by weight with the request's seed,
and the seed is passed on (providers that honour it answer more reproducibly). The client's
own retries are off; ours retry a request refused for rate or overload (429, 408, 409, 5xx) or
lost to a connection error or timeout, up to ``max_retries`` times, waiting the server's
Retry-After when it sends one, else ``backoff_s * 2**n`` (at most 60 s) times a jitter in
[0.5, 1.5). The jitter is drawn from the request's seeded generator: it still spreads out
iterations that run at once (their seeds differ), and a run stays reproducible.

Errors: a refused key (401, 403) or a missing model or endpoint (404) would fail every iteration
alike, so they stop the run (EvopilotError); anything else fails this iteration (MutationError)
with the tokens already spent.
"""

from __future__ import annotations

import asyncio
import os
import random
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletion

from evopilot.core.errors import EvopilotError
from evopilot.core.evolution.mutators.base import (
    LlmMutatorConfig,
    Mutation,
    MutationError,
    MutationRequest,
    Usage,
    weighted_choice,
)
from evopilot.core.evolution.mutators.edits import apply_answer, first_prose_line

_RETRY_STATUS = frozenset({408, 409, 429})
_MAX_DELAY_S = 60.0

_DIFF = """\
Answer with SEARCH/REPLACE blocks. Each block is the path of the file on its own line, then:
<<<<<<< SEARCH
lines copied exactly from the current file, enough of them to be unique in it
=======
the lines that replace them
>>>>>>> REPLACE
Use one block per change; do not rewrite whole files. Before the blocks, say in one sentence
what the change is meant to achieve."""

_FULL = """\
Answer with the complete new content of each file you change: the path of the file on its own
line, then the whole file in one fenced code block (```python). Leave out the files you do not
change. Before the files, say in one sentence what the change is meant to achieve."""


def instructions(cfg: LlmMutatorConfig) -> str:
    """The system message: how the answer must be written (SEARCH/REPLACE blocks or files)."""
    return _DIFF if cfg.diff_mode == "diff" else _FULL


def provider_name(base_url: str | None) -> str:
    """The provider as the cost ledger names it: the endpoint's host, "openai" by default."""
    if not base_url:
        return "openai"
    return urlsplit(base_url).netloc or base_url


def api_key(cfg: LlmMutatorConfig) -> str:
    if not cfg.api_key_env:
        return "none"  # a local endpoint that takes no key; the client insists on one
    key = os.environ.get(cfg.api_key_env, "")
    if not key:
        raise EvopilotError(f"the llm mutator reads its API key from ${cfg.api_key_env}, "
                            f"which is not set")
    return key


def dollars(cfg: LlmMutatorConfig, model: str, tokens_in: int, tokens_out: int) -> float:
    price = cfg.prices.get(model)
    if price is None:
        return 0.0
    return (tokens_in * price.input_per_mtok + tokens_out * price.output_per_mtok) / 1e6


class LlmMutator:
    """One client (and connection pool) for many mutations; ``aclose`` when the run ends."""

    def __init__(self, cfg: LlmMutatorConfig) -> None:
        self.cfg = cfg
        self.provider = provider_name(cfg.base_url)
        self._client = openai.AsyncOpenAI(base_url=cfg.base_url, api_key=api_key(cfg),
                                          max_retries=0, timeout=cfg.timeout_s)

    async def aclose(self) -> None:
        await self._client.close()

    async def mutate(self, req: MutationRequest) -> Mutation:
        """One candidate: its Mutation, or MutationError."""
        (outcome,) = await self.mutate_choices(req, 1)
        if isinstance(outcome, MutationError):
            raise outcome
        return outcome

    async def mutate_choices(self, req: MutationRequest, choices: int) -> list[Mutation | MutationError]:
        """``choices`` candidates from one request (the API's ``n``: the prompt is sent and paid
        for once), each a Mutation or the MutationError saying why that answer gave none; the
        request's usage is on the first. A request that fails raises MutationError."""
        cfg = self.cfg
        rng = random.Random(req.seed)
        model = weighted_choice(cfg.model_names(), [m.weight for m in cfg.models] or [1.0], rng)
        response = await self._complete(model, req, rng, choices)
        tokens_in = response.usage.prompt_tokens if response.usage else 0
        tokens_out = response.usage.completion_tokens if response.usage else 0
        usage = [Usage(self.provider, model, tokens_in, tokens_out,
                       dollars(cfg, model, tokens_in, tokens_out))]
        answered = sorted(response.choices or [], key=lambda c: c.index)[:choices]
        if not answered:
            raise MutationError(f"{model} gave an empty answer", usage=usage)
        out: list[Mutation | MutationError] = [self._candidate(model, req, c) for c in answered]
        out += [MutationError(f"{model} answered {len(answered)} of the {choices} choices asked for "
                              "(an endpoint that ignores `n`: set choices = 1)")
                for _ in range(choices - len(answered))]
        out[0].usage = usage
        return out

    @staticmethod
    def _candidate(model: str, req: MutationRequest, choice) -> Mutation | MutationError:
        answer = choice.message.content or ""
        if not answer.strip():
            return MutationError(f"{model} gave an empty answer")
        if choice.finish_reason == "length":
            return MutationError(f"{model}'s answer was cut off at its token limit", answer=answer)
        try:
            files = apply_answer(req.files, answer)
        except MutationError as e:
            return MutationError(e.reason, answer=answer)
        idea = first_prose_line(answer)
        changed = ", ".join(sorted(files)) or "no change"
        summary = f"{model}: {changed}" + (f": {idea}" if idea else "")
        return Mutation(files=files, summary=summary, answer=answer)

    async def _complete(self, model: str, req: MutationRequest, rng: random.Random, choices: int):
        cfg = self.cfg
        extra = {} if cfg.temperature is None else {"temperature": cfg.temperature}
        messages = [{"role": "system", "content": instructions(cfg)},
                    {"role": "user", "content": req.prompt}]
        attempt = 0
        while True:
            try:
                # the client's generic request with the same body and auth: create() would
                # first walk its parameters' type annotations (~3 ms of CPU per request here)
                return await self._client.post(
                    "/chat/completions", cast_to=ChatCompletion, options={"security": {"bearer_auth": True}},
                    body={"model": model, "messages": messages, "seed": req.seed % 2**31, **extra,
                          **({"n": choices} if choices > 1 else {})})
            except openai.APIStatusError as e:
                status = e.status_code
                if status in (401, 403):
                    raise EvopilotError(f"{self.provider} refused the API key in "
                                        f"${cfg.api_key_env} ({status}: {_reason(e)})") from None
                if status == 404:
                    raise EvopilotError(f"{self.provider} has no model {model!r} or no chat endpoint "
                                        f"at {cfg.base_url or 'its default URL'} (404: {_reason(e)})") from None
                if status not in _RETRY_STATUS and status < 500:
                    raise MutationError(f"{self.provider} answered {status}: {_reason(e)}") from None
                failure, wait = f"answered {status}: {_reason(e)}", _retry_after(e.response)
            except openai.APIConnectionError as e:  # timeouts too
                failure, wait = f"unreachable: {e}", None
            except openai.OpenAIError as e:
                raise MutationError(f"{self.provider}: {e}") from None
            if attempt == cfg.max_retries:
                raise MutationError(f"{self.provider} {failure} (gave up after {attempt + 1} attempts)")
            if wait is None:
                wait = min(_MAX_DELAY_S, cfg.backoff_s * 2**attempt) * rng.uniform(0.5, 1.5)
            await asyncio.sleep(min(wait, _MAX_DELAY_S))
            attempt += 1


def _reason(e: openai.APIStatusError) -> str:
    body = e.body  # the client unwraps {"error": {...}} already
    text = body["message"] if isinstance(body, dict) and isinstance(body.get("message"), str) else e.message
    return " ".join(text.split())[:200]


def _retry_after(response) -> float | None:
    """Seconds the server asks us to wait (Retry-After in seconds; an HTTP date is ignored)."""
    headers = response.headers
    for name, factor in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return max(0.0, float(headers[name]) * factor)
        except (KeyError, ValueError):
            continue
    return None
