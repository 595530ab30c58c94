"""Mutators: what turns a parent's code into a candidate (params, command, llm); see base.py.

``Mutators`` holds one mutator per entry of an experiment's ``[[mutators]]`` for a run (an LLM
client keeps its connections between calls). The `command` mutator runs as a job: the loop
does that part itself, with the pure helpers in command.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
from collections.abc import Sequence

from evopilot.core.evolution.mutators.base import (
    Mutation, MutationError, MutationRequest, MutatorConfig, Usage,
)

__all__ = ["Mutation", "MutationError", "MutationRequest", "MutatorConfig", "Mutators", "Usage"]


class Mutators:
    def __init__(self, configs: Sequence[MutatorConfig]) -> None:
        self.configs = list(configs)
        self._llm: dict[int, object] = {}
        self._preparing: asyncio.Future | None = None

    def start(self) -> None:
        """Make the LLM clients (importing openai takes ~0.4-1 s) in a thread while the seed is
        evaluated, rather than at the first mutation, between the seed's evaluation and the
        next."""
        if self._preparing is None:
            self._preparing = asyncio.ensure_future(asyncio.to_thread(self.prepare))

    def prepare(self) -> None:
        for index, cfg in enumerate(self.configs):
            if cfg.kind == "llm" and index not in self._llm:
                from evopilot.core.evolution.mutators.llm import LlmMutator  # openai only when used

                self._llm[index] = LlmMutator(cfg)
                # what the client's first request imports (~40 ms), here rather than on the
                # event loop between the seed's evaluation and the first candidates'
                with contextlib.suppress(ImportError):
                    importlib.import_module("anyio._backends._asyncio")
                gc.freeze()  # openai's modules: as the worker loop's start does (core.jobs.scheduler)

    def choices(self, index: int) -> int:
        """Candidates one call of the mutator gives (iterations planned together)."""
        return getattr(self.configs[index], "choices", 1)

    async def mutate(self, index: int, req: MutationRequest, choices: int = 1) -> list[Mutation | MutationError]:
        """``choices`` outcomes (at most ``choices(index)``: a group cut short by the end of the
        run asks for fewer), each a candidate or the reason it gave none; a call that failed as
        a whole raises MutationError."""
        cfg = self.configs[index]
        if cfg.kind == "params":
            from evopilot.core.evolution.mutators import params

            return [await params.mutate(req, cfg)]
        if cfg.kind == "llm":
            if self._preparing is not None:
                await self._preparing
            self.prepare()
            return await self._llm[index].mutate_choices(req, choices)
        raise ValueError(f"the {cfg.kind} mutator runs as a job, not in process")

    async def aclose(self) -> None:
        if self._preparing is not None:
            await asyncio.gather(self._preparing, return_exceptions=True)
        for m in self._llm.values():
            await m.aclose()
        self._llm.clear()
