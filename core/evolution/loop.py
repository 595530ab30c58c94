"""The iteration loop of one experiment: plan, mutate, commit, evaluate, place, in a pipeline.

Iteration 0 evaluates the seed program. Iteration n >= 1 is planned (island, parent,
inspirations, mutator) from the search state after exactly ``max(1, n - window + 1)``
iterations have been applied, and outcomes are applied strictly in iteration order. Up to ``window``
iterations are thus under way at once — mutating (``mutations_in_flight`` at a time) or
evaluating (``parallel`` jobs at a time, and as many queued behind them in the jobs' slot group,
so that the scheduler's tick that sees one end starts the next) — and yet the candidates do not
depend on timing: with the same seed and mutator answers a run makes the same commits.

Every step is recorded before the next starts, so a run killed at any point resumes from the
database: a mutator answer once received is kept (never paid for twice), commits are made with
fixed dates (made again, they are the same commit), an evaluation job already queued is
re-attached, and the archive is restored from its snapshots.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import aiosqlite
import numpy as np

from evopilot.core import gitops, locations
from evopilot.core.db import evolution as evo_db
from evopilot.core.db import jobs as jobs_db
from evopilot.core.errors import EvopilotError
from evopilot.core.events import EventBus, EvolutionEvent, IterationEvent
from evopilot.core.evolution.evaluation import ORIGIN
from evopilot.core.evolution.journal import AnswerJournal, Entry
from evopilot.core.evolution.experiment import Experiment
from evopilot.core.models import CommitRow, ExperimentRow, IterationRow
from evopilot.core.evolution.mutators import Mutation, MutationError, MutationRequest, Mutators
from evopilot.core.evolution.mutators.command import parse_usage, render_command
from evopilot.core.evolution.prompt import build_prompt
from evopilot.core.evolution.search import Candidate, SearchState
from evopilot.core.jobs.submit import Submitter
from evopilot.core.jobs.monitor import tail
from evopilot.core.models import Benchmark, JobStatus, Project, now_iso
from evopilot.core.waits import wait_set

HEARTBEAT = 2.0
STALE_AFTER = 15.0  # a claim not renewed for this long is free to take over
COMMIT_EPOCH = 1_700_000_000  # candidates' commit dates: fixed, so a commit made again is the same
TERMINAL = ("evaluated", "skipped", "failed")
COMMAND_LOG_TAIL = 256 * 1024  # what of a coding agent's output is kept as its answer
FILES_CACHED = 256  # commits whose files in scope are kept in memory (parents recur: the best)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def dead_owners(owners: list[str | None]) -> list[str]:
    """Owners on this machine whose process is gone (their claim is free at once)."""
    here = socket.gethostname()
    dead = []
    for o in owners:
        host, _, pid = (o or "").rpartition(":")
        if host == here and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                dead.append(o)
            except PermissionError:
                pass
    return dead


def _seed_is(rows: list[IterationRow], status: str) -> bool:
    """Whether the first of the iterations under way is the seed's (number 0), in ``status``."""
    return bool(rows) and rows[0].number == 0 and rows[0].status == status


def ref_name(exp_id: int, number: int) -> str:
    return f"refs/evopilot/exp-{exp_id}/{number}"


class EvolutionLoop:
    def __init__(self, *, db: aiosqlite.Connection, submitter: Submitter, bus: EventBus,
                 row: ExperimentRow, exp: Experiment, project: Project,
                 on_progress: Callable[[dict], None] | None = None) -> None:
        self.db, self.submitter, self.bus = db, submitter, bus
        self.row, self.exp, self.project = row, exp, project
        self.repo = project.path
        self.owner = owner_id()
        self.on_progress = on_progress
        # iterations under way at once: enough to keep every slot busy (evaluations running and
        # as many queued ahead, mutations in flight), few enough per island that parents come
        # from recent results
        self._mutators = Mutators(exp.mutators)
        choices = max(self._mutators.choices(i) for i in range(len(exp.mutators)))
        self.window = min(2 * exp.evaluation.parallel + exp.mutations_in_flight * choices,
                          exp.islands.count * exp.islands.in_flight)
        self._wake = asyncio.Event()
        self._mutating: dict[int, asyncio.Task] = {}
        self._asking: set[int] = set()  # of those, the ones waiting for a mutator's answer
        self._submitting: dict[int, asyncio.Task] = {}
        self._failure: BaseException | None = None  # of a mutation or submission task: ends the run
        self._recording = asyncio.Lock()  # a tree is checked as unseen and recorded at once
        self._mutation_ended = asyncio.Event()
        self._resumed: set[int] = set()
        self._benches: dict[int, Benchmark] = {}  # evaluation stage -> its benchmark
        self._dollars = 0.0  # spent so far: read at the start, then added to as costs are recorded
        self._requests = 0
        self._evaluations = 0  # queued or running, as of the last pass
        self._files: OrderedDict[str, dict[str, str]] = OrderedDict()
        # placed commits (parents and inspirations; their metrics are final), by hash and id
        self._placed: OrderedDict[str, CommitRow] = OrderedDict()
        self._placed_ids: dict[int, str] = {}
        self._git = gitops.Batch(self.repo)  # git processes kept open for the run: no new one per candidate
        self._warming: asyncio.Future | None = None
        self._state: SearchState | None = None
        self._seed_commit_id = 0
        self._started = time.monotonic()
        self._active_before = row.active_seconds

    # ---- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> tuple[str, str | None]:
        """Run until the iterations are done, a budget cap is reached, ``stop`` is set or the
        experiment is stopped from elsewhere; returns the final (state, reason)."""
        stale = time.time() - STALE_AFTER
        async with jobs_db.transaction(self.db):
            claimed = await evo_db.claim_experiment(self.db, self.row.id, self.owner, stale,
                                                    dead_owners([self.row.owner]))
        if not claimed:
            raise EvopilotError(f"experiment {self.row.name} is already running in {self.row.owner}")
        events = self.bus.subscribe(types=("iteration",))  # jobs' events are not read for it
        waker = asyncio.create_task(self._wake_on_events(events))
        state, reason = "failed", None
        try:
            state, reason = await self._run(stop)
            if state == "finished":  # else an agent may still be at work in a worktree, for a resume
                await self._remove_worktrees()
        except EvopilotError as e:
            reason = e.message
            raise
        except asyncio.CancelledError:  # this process is going away: another one may adopt it
            state, reason = "running", None
            raise
        finally:
            waker.cancel()
            self.bus.unsubscribe(events)
            tasks = [*self._mutating.values(), *self._submitting.values(), *([self._warming] if self._warming else [])]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._mutators.aclose()
            await self._git.close()
            # in a transaction of its own: a write outside one joins whichever another task has
            # open on the connection, and is lost with it if that task is cancelled (the worker)
            async with jobs_db.transaction(self.db):
                await evo_db.release_experiment(self.db, self.row.id, self.owner, state, reason, self._active())
            self._emit()
        return state, reason

    async def _wake_on_events(self, events) -> None:
        while True:  # an evaluation's end recorded; not its own progress events (a busy loop)
            ev = await events.get()
            if isinstance(ev, IterationEvent) and ev.experiment_id == self.row.id:
                self._wake.set()

    def _active(self) -> float:
        return self._active_before + time.monotonic() - self._started

    async def _run(self, stop: asyncio.Event) -> tuple[str, str | None]:
        await self._restore()
        planned = self.row.iterations_planned
        cap: str | None = None
        last_beat = 0.0
        while True:
            # cleared before the round looks, not after: what ends while it looks (an
            # evaluation, a mutation) asks for the next round, or it waits a whole timeout
            self._wake.clear()
            if time.monotonic() - last_beat > HEARTBEAT:
                last_beat = time.monotonic()
                async with jobs_db.transaction(self.db):
                    db_state = await evo_db.heartbeat(self.db, self.row.id, self.owner, self._active())
                if db_state is None:
                    raise EvopilotError(f"experiment {self.row.name} was taken over by another process")
                if db_state == "stopping":
                    return "stopped", "stopped by `evolve stop`"
            if stop.is_set():
                return "stopped", "interrupted"
            if self._failure is not None:
                raise self._failure
            cap = cap or self._budget_reached()
            rows = await evo_db.iterations(self.db, self.row.id, from_number=self._state.applied)
            if _seed_is(rows, "failed"):
                return "failed", f"the seed program's evaluation failed: {rows[0].last_error}"
            if await self._apply_and_plan(rows, None if cap else planned):
                rows = await evo_db.iterations(self.db, self.row.id, from_number=self._state.applied)
            if not rows and (self._state.applied > planned or cap):
                return "finished", cap or f"{planned} iterations done"
            if cap and all(r.status == "planned" and r.answer is None for r in rows) and not self._mutating:
                return "finished", cap  # nothing paid for is left unevaluated
            # again, with no await before the start: a mutation that ended (and paid) since the
            # first check frees a slot, and must not let one more start past the cap
            cap = cap or self._budget_reached()
            self._start_mutations(rows, cap)
            self._start_evaluations(rows)
            if self._warming is None and not _seed_is(rows, "mutated"):
                # once the seed's evaluation is queued, not while its tree and environment are
                # made: the LLM clients (openai's import holds the GIL for ~0.4 s), git's
                # processes for candidates
                self._mutators.start()
                self._warming = asyncio.ensure_future(asyncio.gather(
                    self._git.warm(), self.submitter.workspaces.warm(self.project)))
            self._emit()
            await wait_set(self._wake, 0.5)

    # ---- restore ---------------------------------------------------------------------------

    async def _restore(self) -> None:
        seed = await evo_db.commit_by_hash(self.db, self.row.id, self.row.base_commit)
        if seed is None:
            tree = await gitops.tree_of(self.repo, self.row.base_commit, batch=self._git)
            files = await gitops.read_files(self.repo, self.row.base_commit, self.exp.files, batch=self._git)
            async with jobs_db.transaction(self.db):
                cid = await evo_db.add_commit(
                    self.db, self.row.id, commit_hash=self.row.base_commit, parent=None, tree=tree,
                    island=None, iteration=0, message="seed program", extra=self._raw_extra(files))
                await evo_db.add_iteration(self.db, self.row.id, 0, status="mutated",
                                           base=self.row.base_commit, island=0, inspirations=[],
                                           payload={"seed": True}, candidate=self.row.base_commit)
            seed = (await evo_db.commits_by_id(self.db, [cid]))[cid]
        self._seed_commit_id = seed.id
        spend = await evo_db.spend(self.db, self.row.id)  # only this loop adds to it from here on
        self._dollars = sum(s["dollars"] or 0 for s in spend)
        self._requests = sum(s["requests"] or 0 for s in spend)
        snaps = await evo_db.snapshots(self.db, self.row.id)
        applied = snaps.get(evo_db.GLOBAL_ISLAND, {}).get("applied", 0)
        cands = await self._candidates(applied)
        self._state = SearchState.restore(self.exp, seed.id, snaps, cands, evo_db.GLOBAL_ISLAND)
        # answers an earlier process received and was killed before storing
        self._journal = AnswerJournal(locations.evolution_dir(self.submitter.home, self.row.id) / "answers.jsonl")
        unstored = {r.id: r for r in await evo_db.iterations(self.db, self.row.id, from_number=applied)
                    if r.answer is None and r.status != "failed"}
        await self._store_answers([(unstored.pop(e.iteration_id), e) for e in self._journal.read()
                                   if e.iteration_id in unstored])
        self._journal.clear()
        # candidates an earlier process may have queued an evaluation for without recording it
        # (killed in between); those of this process are recorded before it looks again
        self._resumed = {r.number for r in await evo_db.iterations(self.db, self.row.id, from_number=applied)
                         if r.status == "mutated"}

    async def _candidates(self, applied: int) -> list[Candidate]:
        """The evaluated candidates of iterations 0 .. applied-1, in iteration order."""
        its = await evo_db.iterations(self.db, self.row.id, limit=applied)
        by_hash = {c.commit_hash: c for c in await evo_db.commits(self.db, self.row.id)}
        out = []
        for it in its:
            if it.status == "placed":
                c = by_hash[it.candidate_hash]
                out.append(Candidate(c.id, it.island, c.objective, tuple(c.extra_context["raw"])))
        return out

    def _raw_extra(self, files: dict[str, str]) -> dict:
        """The code embedding a candidate is placed by (metrics descriptors come with results)."""
        d = self.exp.descriptors
        if not d.embedding:
            return {}
        from evopilot.core.evolution.descriptors import embed_files

        vec = embed_files({p: s.encode("utf-8", "surrogateescape") for p, s in files.items()}, d.embedding_dim)
        return {"raw": [float(v) for v in vec]}

    # ---- apply -----------------------------------------------------------------------------

    async def _apply_and_plan(self, rows: list[IterationRow], planned: int | None) -> bool:
        """Apply finished iterations in order (each with its snapshots in one transaction), and
        after each, plan the iterations it makes eligible: iteration n is planned right after
        ``n - window + 1`` iterations are applied (up to ``planned``; None: plan nothing).
        Whether it applied or planned any (else ``rows`` are still what is under way)."""
        next_n = rows[-1].number + 1 if rows else self._state.applied
        first, applied = next_n, self._state.applied
        for it in [*rows, None]:
            if planned is not None and self._state.applied >= 1:
                while next_n <= planned and next_n <= self._state.applied + self.window - 1:
                    next_n += await self._plan(next_n, planned)
            if it is None or it.number != self._state.applied or it.status not in TERMINAL:
                break
            await self._apply(it)
        return next_n != first or self._state.applied != applied

    async def _apply(self, it: IterationRow) -> None:
        cand = None
        if it.status == "evaluated":
            c = await evo_db.commit_by_hash(self.db, self.row.id, it.candidate_hash)
            cand = Candidate(c.id, it.island, c.objective, tuple(c.extra_context["raw"]))
            self._keep(c)
        changed = self._state.apply(cand)
        async with jobs_db.transaction(self.db):
            for island in sorted(changed):
                await evo_db.save_snapshot(self.db, self.row.id, island, self._state.snapshot(island))
                arch = self._state.archives[island]
                best = arch.best()
                await evo_db.add_history(self.db, self.row.id, island, len(self._state.candidates),
                                         arch.coverage, arch.qd_score, best[1] if best else None)
            await evo_db.save_snapshot(self.db, self.row.id, evo_db.GLOBAL_ISLAND, self._state.shared())
            if cand is not None:
                await evo_db.update_iteration(self.db, it.id, status="placed")
                await evo_db.update_commit(self.db, cand.commit_id, evaluation_summary="placed")

    # ---- plan ------------------------------------------------------------------------------

    async def _plan(self, number: int, last: int) -> int:
        """Plan iteration ``number``, and with it the rest of its group when its mutator gives
        several candidates per call (they share its parent, inspirations, island and prompt);
        returns how many iterations were planned. The group is decided at the first one's
        planning, so it does not depend on timing either."""
        choice = self._state.choose(number)
        size = min(self._mutators.choices(choice.mutator), last - number + 1)
        ids = [choice.parent, *choice.inspirations]
        missing = [i for i in ids if i not in self._placed_ids]
        for c in (await evo_db.commits_by_id(self.db, missing)).values() if missing else ():
            self._keep(c)
        hashes = {i: self._placed_ids[i] for i in ids}
        async with jobs_db.transaction(self.db):
            for k in range(size):
                payload = {"mutator": choice.mutator, "seed": choice.seed,
                           **({"leader": number} if k else {"choices": size} if size > 1 else {})}
                await evo_db.add_iteration(
                    self.db, self.row.id, number + k, status="planned", base=hashes[choice.parent],
                    island=choice.island, inspirations=[hashes[i] for i in choice.inspirations],
                    payload=payload)
        return size

    def _keep(self, c: CommitRow) -> None:
        """Remember a placed commit's row (read once: parents recur, the best above all)."""
        self._placed[c.commit_hash] = c
        self._placed.move_to_end(c.commit_hash)
        self._placed_ids[c.id] = c.commit_hash
        if len(self._placed) > FILES_CACHED:
            del self._placed_ids[self._placed.popitem(last=False)[1].id]

    async def _placed_row(self, commit: str) -> CommitRow:
        c = self._placed.get(commit) or await evo_db.commit_by_hash(self.db, self.row.id, commit)
        self._keep(c)
        return c

    # ---- mutate ----------------------------------------------------------------------------

    def _start_mutations(self, rows: list[IterationRow], cap: str | None) -> None:
        """Start the planned iterations' mutations in order, at most ``mutations_in_flight``
        waiting for an answer. A group's later iterations go with its first (one answer for
        all of them), unless that one is done with and they are still to commit (a resume)."""
        planned = {it.number for it in rows if it.status == "planned"}
        for it in rows:
            if it.status != "planned" or it.number in self._mutating:
                continue
            leader = it.payload.get("leader")
            if leader in self._mutating or leader in planned:
                continue
            if it.answer is None:
                if cap:
                    continue  # past a budget cap: only what is already paid for goes on
                if len(self._asking) >= self.exp.mutations_in_flight:
                    return
                self._asking.add(it.number)
            group = [it, *(r for r in rows if r.status == "planned" and r.payload.get("leader") == it.number)]
            self._spawn(self._mutating, it.number, self._mutate(group))

    def _spawn(self, tasks: dict[int, asyncio.Task], number: int, coro) -> None:
        """Run an iteration's step beside the loop; the loop wakes when it ends, and its error
        (an EvopilotError: a refused API key, a host away) ends the run."""
        def done(t: asyncio.Task) -> None:
            tasks.pop(number, None)
            self._asking.discard(number)
            self._mutation_ended.set()
            if not t.cancelled() and t.exception() is not None and self._failure is None:
                self._failure = t.exception()
            self._wake.set()

        tasks[number] = asyncio.create_task(coro)
        tasks[number].add_done_callback(done)

    async def _files_of(self, commit: str) -> dict[str, str]:
        """The files in scope at ``commit`` (read with git once, then from memory)."""
        files = self._files.get(commit)
        if files is None:
            files = await gitops.read_files(self.repo, commit, self.exp.files, batch=self._git)
        self._remember(commit, files)
        return files

    def _remember(self, commit: str, files: dict[str, str]) -> None:
        self._files[commit] = files
        self._files.move_to_end(commit)
        if len(self._files) > FILES_CACHED:
            self._files.popitem(last=False)

    async def _mutate(self, group: list[IterationRow]) -> None:
        """Mutate the parent of a group's iterations (one call of the mutator answers them all,
        or their answers are stored already), then commit each candidate in order."""
        it = group[0]
        files = await self._files_of(it.base_commit_hash)
        if it.answer is None:
            cfg = self.exp.mutators[it.payload["mutator"]]
            prompt = await self._prompt(it, files)
            try:
                if cfg.kind == "command":
                    outcomes = [await self._command_mutation(it, cfg, prompt)]
                else:
                    outcomes = await self._mutators.mutate(it.payload["mutator"], MutationRequest(
                        files=files, prompt=prompt, seed=it.payload["seed"]), len(group))
            except MutationError as e:
                outcomes = [e] + [MutationError(f"the call that answers this iteration failed: {e.reason}")
                                  for _ in group[1:]]
            usage = outcomes[0].usage
            share = sum(u.dollars for u in usage) / len(group)  # each candidate's part of the call
            entries = [Entry(member.id, prompt, usage if k == 0 else [],
                             {"error": m.reason, "raw": m.answer} if isinstance(m, MutationError)
                             else {"files": m.files, "summary": m.summary, "raw": m.answer, "cost": share},
                             m.reason if isinstance(m, MutationError) else None)
                       for k, (member, m) in enumerate(zip(group, outcomes))]
            self._journal.write(*entries)  # before any await: paid for, it is never asked again
            await self._store_answers(list(zip(group, entries)))
            answered = [(member, e.answer) for member, e in zip(group, entries) if e.error is None]
        else:
            answered = [(member, json.loads(member.answer)) for member in group]
        for member, answer in answered:
            m = Mutation(files=answer["files"], summary=answer["summary"], answer=answer["raw"])
            await self._commit(member, files, m, answer.get("cost", 0.0))

    async def _store_answers(self, answered: list[tuple[IterationRow, Entry]]) -> None:
        """Mutator answers (or failures: the iteration fails with the reason) and their cost,
        in one transaction."""
        if not answered:
            return
        async with jobs_db.transaction(self.db):
            for it, entry in answered:
                payload = {**it.payload, "prompt": entry.prompt}
                if entry.error is not None:
                    await evo_db.update_iteration(self.db, it.id, status="failed", last_error=entry.error,
                                                  answer=json.dumps(entry.answer), payload=payload)
                else:
                    await evo_db.update_iteration(self.db, it.id, answer=json.dumps(entry.answer),
                                                  plan_summary=entry.answer["summary"], payload=payload,
                                                  started_at=now_iso())
                await self._add_costs(it, entry.usage)
        for _, entry in answered:
            self._spent(entry.usage)

    def _spent(self, usage: list) -> None:
        """Costs now recorded, added to the totals the budget is checked against."""
        self._dollars += sum(u.dollars or 0 for u in usage)
        self._requests += sum(u.requests or 0 for u in usage)

    async def _add_costs(self, it: IterationRow, usage: list) -> None:
        for u in usage:
            await evo_db.add_cost(self.db, experiment_id=self.row.id, iteration_id=it.id,
                                  job_id=it.payload.get("mutation_job"), provider=u.provider, model=u.model,
                                  tokens_in=u.tokens_in, tokens_out=u.tokens_out, cost_usd=u.dollars,
                                  requests=u.requests)

    async def _command_mutation(self, it: IterationRow, cfg, prompt: str) -> Mutation:
        """Run a coding-agent CLI as a job in a worktree of the parent (one per iteration under
        way, reused), then read back the files in scope. A job already started for this
        iteration (before a crash) is waited for, not started again."""
        slot = self._slot_dir(it)
        job_id = it.payload.get("mutation_job")
        if job_id is None:
            await self._checkout(slot, it.base_commit_hash)
            prompt_file = slot.with_suffix(".prompt.md")
            prompt_file.write_text(prompt, encoding="utf-8")
            job = await self.submitter.submit(
                render_command(cfg.template, str(prompt_file), str(slot)), name=f"mutate {self.row.name}#{it.number}",
                workdir=str(slot), timeout=cfg.timeout_s, kind="mutation", origin=(ORIGIN, it.id),
                tty=cfg.tty)
            job_id = job.id
            it.payload["mutation_job"] = job_id
            async with jobs_db.transaction(self.db):
                await evo_db.update_iteration(self.db, it.id, payload=it.payload)
            await self.submitter.dispatch()
        while not (job := await jobs_db.get_job(self.db, job_id)).status.finished:
            await asyncio.sleep(0.1)
        log = tail(job.log_path, COMMAND_LOG_TAIL).decode("utf-8", "replace")
        usage = parse_usage(log) if cfg.usage == "json" else []
        if job.status != JobStatus.SUCCEEDED:
            raise MutationError(f"mutation job {job.id} {job.status.value}: {job.error_message or ''}",
                                usage=usage, answer=log)
        files = {}
        for p in self.exp.files:
            try:
                files[p] = (slot / p).read_text(encoding="utf-8", errors="surrogateescape")
            except FileNotFoundError:
                raise MutationError(f"the agent removed {p}", usage=usage, answer=log) from None
        return Mutation(files=files, summary=first_line(log) or f"{cfg.kind} mutation", answer=log, usage=usage)

    def _slot_dir(self, it: IterationRow) -> Path:
        return locations.evolution_dir(self.submitter.home, self.row.id) / f"slot-{it.number % self.window}"

    async def _checkout(self, slot: Path, commit: str) -> None:
        """The slot's worktree at ``commit``, clean (made once, then reused: `git worktree add`
        costs far more than a checkout)."""
        if not (slot / ".git").exists():
            slot.parent.mkdir(parents=True, exist_ok=True)
            await gitops.git(self.repo, "worktree", "add", "--detach", "--force", str(slot), commit)
        else:
            await gitops.git(slot, "checkout", "--detach", "--force", commit)
            await gitops.git(slot, "clean", "-fdxq")

    async def _remove_worktrees(self) -> None:
        """Give the command mutators' worktrees back: the user's repository lists them (`git
        worktree list`). More iterations later make them again."""
        for path in sorted(locations.evolution_dir(self.submitter.home, self.row.id).glob("slot-*")):
            if (path / ".git").exists():
                await gitops.git(self.repo, "worktree", "remove", "--force", str(path))
            elif path.is_file():
                path.unlink()  # a slot's prompt

    async def _prompt(self, it: IterationRow, files: dict[str, str]) -> str:
        parent = await self._placed_row(it.base_commit_hash)
        insp = []
        for h in it.inspiration_hashes:
            insp.append((h, (await self._placed_row(h)).metrics, await self._files_of(h)))
        return build_prompt(notes=self.exp.notes, objective=self.exp.evaluation.objective,
                            maximize=self.exp.maximize, files=files, metrics=parent.metrics,
                            inspirations=insp)

    async def _commit(self, it: IterationRow, parent_files: dict[str, str], m: Mutation, cost: float) -> None:
        """Commit the candidate and record it."""
        changed = {p: s for p, s in m.files.items() if parent_files.get(p) != s}
        cfg = self.exp.mutators[it.payload["mutator"]]
        message = (f"evopilot {self.row.name} iteration {it.number}\n\n{m.summary.strip()}\n\n"
                   f"Evopilot-Parent: {it.base_commit_hash}\nEvopilot-Island: {it.island}\n"
                   f"Evopilot-Mutator: {cfg.kind}\nEvopilot-Cost: {cost:.6f}\n")
        if not changed:
            await self._skip(it, "the mutator changed nothing")
            return
        commit, tree = await gitops.commit_files(self.repo, it.base_commit_hash, changed, message,
                                                 f"{COMMIT_EPOCH + it.number} +0000", batch=self._git)
        # Twins (the same tree) resolve by iteration number, not by which mutator answered first:
        # a candidate is recorded only after every lower-numbered mutation under way (they
        # start in order, so none of them waits for this one). Not for its own task: a group's
        # later candidates are committed by its first one's.
        task = it.payload.get("leader", it.number)
        while any(n < it.number and n != task for n in self._mutating):
            self._mutation_ended.clear()
            await self._mutation_ended.wait()
        async with self._recording:  # else twins mutated at once would both pass the check
            if await evo_db.tree_seen(self.db, self.row.id, tree) and \
                    (await evo_db.commit_by_hash(self.db, self.row.id, commit)) is None:
                await self._skip(it, "identical to a candidate already seen")
                return
            new_files = {**parent_files, **changed}
            self._remember(commit, new_files)
            extra = {"mutator": cfg.kind, "cost": cost, **self._raw_extra(new_files)}
            if reason := self._too_close(extra):
                await self._skip(it, reason)
                return
            await gitops.update_ref(self.repo, ref_name(self.row.id, it.number), commit, batch=self._git)
            async with jobs_db.transaction(self.db):
                await evo_db.add_commit(self.db, self.row.id, commit_hash=commit, parent=it.base_commit_hash,
                                        tree=tree, island=it.island, iteration=it.number, message=message,
                                        extra=extra)
                await evo_db.update_iteration(self.db, it.id, status="mutated", candidate_hash=commit)

    async def _skip(self, it: IterationRow, reason: str) -> None:
        async with jobs_db.transaction(self.db):
            await evo_db.update_iteration(self.db, it.id, status="skipped", last_error=reason)

    def _too_close(self, extra: dict) -> str | None:
        """ShinkaEvolve's novelty rejection: an embedding closer than the threshold to an elite."""
        t = self.exp.novelty_threshold
        if not t or "raw" not in extra or not self._state.candidates:
            return None
        raws = np.asarray([c.raw for c in self._state.candidates])
        d = float(np.min(np.linalg.norm(raws - np.asarray(extra["raw"]), axis=1)))
        return f"too close to an earlier candidate (distance {d:.3g} < {t:g})" if d < t else None

    # ---- evaluate --------------------------------------------------------------------------

    def _start_evaluations(self, rows: list[IterationRow]) -> None:
        """Queue the candidates' evaluations, each beside the loop (placing a commit's tree on a
        host takes git and shell processes), up to ``parallel`` running and as many queued."""
        submitted = sum(1 for r in rows if r.status == "evaluating") + len(self._submitting)
        for it in rows:
            if submitted >= 2 * self.exp.evaluation.parallel:
                break
            if it.status != "mutated" or it.number in self._submitting:
                continue
            self._spawn(self._submitting, it.number, self._evaluate(it))
            submitted += 1
        self._evaluations = submitted  # for the progress line

    async def _evaluate(self, it: IterationRow) -> None:
        bench = self._benches.get(it.stage)
        if bench is None:
            stage = self.exp.evaluation.stages[it.stage]
            bench = await self.submitter.projects.resolve_benchmark(self.project, stage.benchmark)
            self._benches[it.stage] = bench
        job_id = None
        if it.number in self._resumed:
            job_id = await evo_db.linked_job(self.db, it.id, bench.path)  # queued before a crash
        if job_id is None:
            hosts = self.exp.evaluation.hosts
            (job,) = await self.submitter.run(
                self.project.name, [bench.path], host=hosts[it.number % len(hosts)],
                timeout=self.exp.evaluation.timeout_s, check=False, kind="evaluation",
                origin=(ORIGIN, it.id), commit=it.candidate_hash,
                group=(f"experiment-{self.row.id}", self.exp.evaluation.parallel))
            job_id = job.id
        # the end handler may already have recorded the outcome: only 'mutated' moves on
        async with jobs_db.transaction(self.db):
            await evo_db.link_evaluation(self.db, it.id, job_id, it.stage)

    # ---- budget and progress ---------------------------------------------------------------

    def _budget_reached(self) -> str | None:
        b = self.exp.budget
        if b.minutes is not None and self._active() >= b.minutes * 60:
            return f"budget: {b.minutes:g} minutes reached"
        if b.dollars is not None and self._dollars >= b.dollars:
            return f"budget: ${b.dollars:g} reached (${self._dollars:.4f} spent)"
        if b.requests is not None and self._requests >= b.requests:
            return f"budget: {b.requests} requests reached"
        return None

    def _emit(self) -> None:
        s = self._state
        if s is None:
            return
        bests = [a.best() for a in s.archives if a is not None and a.num_elites]
        best = (max if self.exp.maximize else min)((b[1] for b in bests), default=None)
        info = {"experiment_id": self.row.id, "applied": s.applied, "mutating": len(self._mutating),
                "best": best, "coverage": float(np.mean([a.coverage if a else 0.0 for a in s.archives]))}
        self.bus.emit(EvolutionEvent(**info))
        if self.on_progress:
            self.on_progress({**info, "evaluating": self._evaluations, "dollars": self._dollars})




async def rebuild(db: aiosqlite.Connection, row: ExperimentRow, exp: Experiment) -> SearchState:
    """The search state replayed from the iterations and commits in the database (without the
    snapshots): what a resumed run must equal."""
    seed = await evo_db.commit_by_hash(db, row.id, row.base_commit)
    applied = (await evo_db.snapshots(db, row.id)).get(evo_db.GLOBAL_ISLAND, {}).get("applied", 0)
    by_hash = {c.commit_hash: c for c in await evo_db.commits(db, row.id)}
    state = SearchState(exp, seed.id)
    for it in await evo_db.iterations(db, row.id, limit=applied):
        c = by_hash.get(it.candidate_hash) if it.status == "placed" else None
        state.apply(Candidate(c.id, it.island, c.objective, tuple(c.extra_context["raw"])) if c else None)
    return state
