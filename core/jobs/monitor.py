"""Watch a host's running jobs: one probe round trip, one round trip for new log bytes, then
finish, time out or lose jobs by what the job directories say.

Reconcile after a restart is the same tick: the files and ``tmux has-session`` are the truth.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiosqlite

from evopilot.core.config import Config
from evopilot.core.db import jobs as jobs_db
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts import slurm
from evopilot.core.hosts.base import Host
from evopilot.core.jobs import parse, scripts, warm
from evopilot.core.jobs.reap import needs_reap
from evopilot.core.events import LogEvent
from evopilot.core.models import Job, JobStatus, now_iso, parse_iso

ERROR_TAIL = 16 * 1024
HANGUP_WAIT = 2.0
"""Seconds a hung-up wrapper has to write its exit code (it takes milliseconds)."""
COMPLETING_WAIT = 10.0
"""Seconds a Slurm job that exited with an error may stay active in Slurm (``_slurm_may_explain``)
before it is settled by its exit code alone."""
COPY_SECONDS = 3.0
"""A log more than ``log_chunk_bytes`` behind on an SSH host is copied by ``ssh`` straight into
its mirror, for up to this long a tick (the tick holds up the host's other jobs); one ``ssh``
costs a handshake (0.1-0.5 s), so not one per chunk."""
_CARRY = 64  # bytes kept from the previous chunk, so a marker split across reads is still seen


@dataclass
class TickResult:
    changed: dict[int, JobStatus] = field(default_factory=dict)
    """Jobs whose row changed (status, progress, pid), with their status before."""
    logs: list[LogEvent] = field(default_factory=list)
    kills: list[Job] = field(default_factory=list)
    """Jobs past their timeout, to be killed."""
    reaps: list[Job] = field(default_factory=list)
    """Jobs that ended other than by their own clean exit: their process group is taken down."""
    backlog: bool = False
    """Some log had more new bytes than one read takes: tick again soon."""
    probed: bool = False
    """The host was asked about its jobs (no job running there: not)."""


class Monitor:
    def __init__(self, db: aiosqlite.Connection, config: Config) -> None:
        self.db = db
        self.config = config
        self._carry: dict[int, bytes] = {}
        self._no_copy: set[str] = set()  # hosts whose logs cannot be copied (see _copy_logs)
        self._hung_up: dict[int, float] = {}  # job -> when its hangup was first seen, exit code pending
        self._ending: dict[int, float] = {}  # Slurm job -> when it was first seen ending (see _scheduled)

    async def tick(self, host: Host) -> TickResult:
        jobs = await jobs_db.list_jobs(self.db, status=[JobStatus.RUNNING.value], host=host.name,
                                       with_metrics=False)
        out = TickResult()
        if not jobs:
            return out
        probed = [(j.id, j.job_dir, j.tmux_session) for j in jobs if j.job_dir]
        probes = await host.probe(probed) if probed else {}
        out.probed = bool(probed)

        chunk = self.config.engine.log_chunk_bytes
        copies = host.name not in self._no_copy and hasattr(host, "copy_from")
        reqs, req_jobs, far_behind = [], [], []
        for j in jobs:
            p = probes.get(j.id)
            if p is None:
                continue
            if copies and j.log_path and p.log_size - j.log_offset > chunk:
                far_behind.append(j)
            elif p.log_size > j.log_offset:
                reqs.append((f"{j.job_dir}/{scripts.LOG}", j.log_offset, chunk))
                req_jobs.append((j, "log"))
            if p.exit_code is not None and p.results_exists:
                # one byte past the limit tells a file over it from one that fits exactly
                reqs.append((f"{j.job_dir}/{scripts.RESULTS}", 0, self.config.engine.results_max_bytes + 1))
                req_jobs.append((j, "results"))
        got, mirrored = await asyncio.gather(host.read_ranges(reqs), self._copy_logs(host, far_behind))
        new_bytes: dict[int, bytes | memoryview] = {}
        results: dict[int, bytes] = {}
        for (j, what), data in zip(req_jobs, got):
            if what == "log":
                new_bytes[j.id] = data
            else:
                results[j.id] = bytes(data)
            out.backlog |= what == "log" and len(data) >= chunk
        for j in far_behind:  # copied or not, more is left: the next tick comes at once
            out.backlog = True
            if mirrored.get(j.id):
                new_bytes[j.id] = tail(j.log_path, parse.PROGRESS_WINDOW, j.log_offset + mirrored[j.id])

        # Most ticks find every job just running on: no transaction then (its turn on the
        # shared connection's lock would queue behind every other host's writes).
        jobs = [j for j in jobs if not self._quiet(j, probes.get(j.id), new_bytes.get(j.id))]
        if not jobs:
            return out
        now = now_iso()
        async with jobs_db.transaction(self.db):
            # A stop or kill may have been asked for while the probe was on its way (and be why
            # the job ended): the final status must see it, so re-read it for ending jobs.
            ending = [j.id for j in jobs if probes.get(j.id) and probes[j.id].exit_code is not None]
            requested = await jobs_db.requested(self.db, ending) if ending else {}
            for j in jobs:
                if j.id in requested:
                    j = j.model_copy(update={"requested": requested[j.id]})
                await self._update(host, j, probes.get(j.id), new_bytes.get(j.id, b""),
                                   results.get(j.id), now, out, mirrored.get(j.id))
        return out

    async def _copy_logs(self, host, jobs: list[Job]) -> dict[int, int]:
        """Logs far behind copied into their mirrors by the host's ``copy_from``, for up to
        ``COPY_SECONDS`` in all: the bytes copied per job. A host whose ``ssh`` cannot do it is
        read chunk by chunk from then on."""
        copied: dict[int, int] = {}
        until = time.monotonic() + COPY_SECONDS
        for j in jobs:
            if time.monotonic() >= until:
                break
            try:
                n = await host.copy_from(f"{j.job_dir}/{scripts.LOG}", j.log_offset, j.log_path,
                                         j.log_offset, until - time.monotonic())
            except OSError as e:
                raise _mirror_error(j, e) from None
            if n is None:
                self._no_copy.add(host.name)
                break
            copied[j.id] = n
        return copied

    async def _update(self, host, j: Job, p, data: bytes, results: bytes | None, now: str,
                      out: TickResult, mirrored: int | None = None) -> None:
        """``data``: the log's new bytes; with ``mirrored``, the last of the bytes copied into
        the mirror already, ``mirrored`` of them."""
        fields: dict = {}
        if data:
            if mirrored is None and not host.is_local:
                try:
                    _pwrite(j.log_path, j.log_offset, data)
                except OSError as e:  # the tick is undone; the next one fetches these bytes again
                    raise _mirror_error(j, e) from None
            offset = j.log_offset + (len(data) if mirrored is None else mirrored)
            fields["log_offset"] = offset
            prog = parse.parse_progress(data, self._carry.get(j.id, b""))
            self._carry[j.id] = bytes(data[-_CARRY:])
            if prog and prog != (j.progress_current, j.progress_total):
                fields["progress_current"], fields["progress_total"] = prog
            out.logs.append(LogEvent(job_id=j.id, log_path=j.log_path or "", size=offset))
        else:
            offset = j.log_offset
        if not host.is_local and p is not None and p.exit_code is not None and offset > p.log_size:
            # The wrapper cut its log's tail after a tick copied it (a tty job's end marker, see
            # scripts._tty): the mirror ends where the host's log ends.
            try:
                os.truncate(j.log_path, p.log_size)
            except OSError as e:  # the tick is undone; the next one cuts it again
                raise EvopilotError(f"cannot cut the mirror of job {j.id}'s log: {e.strerror}") from None
            offset = fields["log_offset"] = p.log_size
        if p is not None and p.pgid and p.pgid != j.pgid:
            fields.update(pid=p.pgid, pgid=p.pgid)
        if p is not None and p.started_at is not None and _iso(p.started_at) != j.started_at:
            fields["started_at"] = _iso(p.started_at)
        s = p.scheduled if p is not None else None
        if s is not None and s.job_id and s.job_id != j.slurm_id:
            fields["slurm_id"] = s.job_id

        metrics: list = []
        if p is not None and p.exit_code is not None and offset >= p.log_size:
            if _slurm_may_explain(j, p.exit_code, s) and self._waited(j.id) < COMPLETING_WAIT:
                pass  # how Slurm ended it (cancelled, time limit) shows on a later tick
            else:
                ended = _iso(p.finished_at) if p.finished_at is not None else now
                done, metrics = self._finish(j, p.exit_code, p.hangup, results, ended)
                if s is not None and s.answered and not j.requested:
                    _slurm_end(done, s)
                fields.update(done)
        elif (p is None or p.never_started or _warm_unstarted(j, p) or _session_unstarted(p)) \
                and await self._start_abandoned(j):
            # Claimed, but its start never reached the host (the claimer died in between, or
            # took far too long): back to the queue. Starting again is safe (see scripts.start).
            fields.update(status=JobStatus.QUEUED.value, started_at=None, claimed_by=None)
        elif s is not None:
            self._scheduled(j, p, s, fields, now, out)
        elif p is not None and p.exit_code is None and not p.session_alive:
            if p.hangup and self._exit_code_due(j.id):
                pass  # its wrapper was hung up and is writing the exit code: that says why it ended
            elif self._age(j) > self.config.engine.lost_grace:
                gone = (f"its wrapper in warm slot {j.tmux_session}" if warm.is_runner(j.tmux_session)
                        else f"tmux session {j.tmux_session}")
                fields.update(status=JobStatus.LOST.value, finished_at=now,
                              error_message=f"{gone} vanished without an exit code")
        elif j.timeout_s and j.requested in (None, "timeout") and self._age(j) > j.timeout_s:
            # asked again on every tick until it ends: a kill cut short (evopilot exited) resumes
            if j.requested is None:
                fields["requested"] = "timeout"
            out.kills.append(j)
        if p is not None and p.nospace and "status" in fields:
            _no_space(fields, j.job_dir)

        if not fields:
            return
        fields["updated_at"] = now
        sets = ", ".join(f"{k} = ?" for k in fields)
        # Conditional on 'running': only one process finishes a job, however many watch it.
        cur = await self.db.execute(
            f"UPDATE jobs SET {sets} WHERE id = ? AND status = 'running'", (*fields.values(), j.id)
        )
        if cur.rowcount != 1:
            return
        if fields.get("status", JobStatus.QUEUED.value) != JobStatus.QUEUED.value:
            self._carry.pop(j.id, None)
            self._hung_up.pop(j.id, None)
            self._ending.pop(j.id, None)
            await jobs_db.replace_metrics(self.db, j.id, metrics)
            ok = fields["status"] == JobStatus.SUCCEEDED.value
            released = await jobs_db.release_dependents(
                self.db, j.id, ok,
                f"{j.name} (job {j.id}) {fields['status']}: see `evopilot logs {j.id}`, "
                f"fix it and `evopilot retry {j.id}`",
            )
            out.changed.update(dict.fromkeys(released, JobStatus.PENDING))
            # under Slurm, its proctrack takes down what is left of a job
            if host.in_tmux and needs_reap(fields["status"], fields.get("exit_code"), j.requested):
                out.reaps.append(j)
        out.changed[j.id] = JobStatus.RUNNING

    def _quiet(self, j: Job, p, data: bytes | None) -> bool:
        """Whether ``_update`` would leave the job as it is: alive in its session (not a Slurm
        job: its state is Slurm's), no new log bytes, its pid and start time recorded, not past
        a timeout."""
        return (p is not None and p.scheduled is None and not data and p.exit_code is None
                and p.session_alive and not _warm_unstarted(j, p)
                and (not p.pgid or p.pgid == j.pgid)
                and (p.started_at is None or _iso(p.started_at) == j.started_at)
                and not (j.timeout_s and self._age(j) > j.timeout_s))

    def _scheduled(self, j: Job, p, s, fields: dict, now: str, out: TickResult) -> None:
        """A Slurm job without its exit code yet (or its log not caught up): its waiting
        reason while pending, its end when Slurm ended or forgot it without one, its timeout."""
        if s.answered and s.state == "PENDING":
            wait = f"Slurm: pending ({s.reason})" if s.reason else "Slurm: pending"
            if j.error_message != wait:
                fields["error_message"] = wait
            return  # a timeout counts from the job's start
        if s.answered and j.error_message is not None:
            fields["error_message"] = None  # no longer waiting
        if p.exit_code is not None:
            return  # its end is settled once the log is caught up
        if not p.session_alive:
            if self._waited(j.id) < self.config.engine.lost_grace:
                return  # its wrapper may be writing the exit code (a shared filesystem lags)
            fields.update(finished_at=now, **_slurm_lost(j, s))
        elif (j.timeout_s and j.requested in (None, "timeout") and p.started_at is not None
              and time.time() - p.started_at > j.timeout_s):
            if j.requested is None:
                fields["requested"] = "timeout"
            out.kills.append(j)

    def _waited(self, job_id: int) -> float:
        """Seconds since this monitor first saw the Slurm job ending."""
        return time.monotonic() - self._ending.setdefault(job_id, time.monotonic())

    def _exit_code_due(self, job_id: int) -> bool:
        """A job whose wrapper recorded a hangup gets ``HANGUP_WAIT`` seconds (from when this
        monitor first saw it) to write its exit code before it counts as vanished."""
        first = self._hung_up.setdefault(job_id, time.monotonic())
        return time.monotonic() - first < HANGUP_WAIT

    def _finish(self, j: Job, code: int, hangup: bool, results: bytes | None, now: str) -> tuple[dict, list]:
        """Final status, error and metrics of a job whose exit code is known and log read."""
        fields: dict = {"exit_code": code, "finished_at": now}
        metrics: list = []
        error = None
        limit = self.config.engine.results_max_bytes
        if results and len(results) > limit:
            error = (f"results.json is over the size limit of {limit} bytes "
                     "(engine.results_max_bytes in the config)")
        elif results:
            try:
                metrics = parse.parse_results(results)
            except parse.ResultsError as e:
                error = str(e)
        if j.requested == "kill":
            status = JobStatus.KILLED
        elif j.requested == "timeout":
            status, error = JobStatus.FAILED, f"timeout: killed after {j.timeout_s:g}s"
        elif hangup:
            status = JobStatus.LOST
            error = f"tmux session {j.tmux_session} went away under the job (SIGHUP, exit code {code})"
        elif code == 0 and error is None:
            status = JobStatus.SUCCEEDED
        elif j.requested == "stop":
            status = JobStatus.CANCELLED
        else:
            status = JobStatus.FAILED
            if error is None:
                error = parse.error_summary(tail(j.log_path, ERROR_TAIL)) or f"exit code {code}"
        fields["status"] = status.value
        if error is not None:
            fields["error_message"] = error
        return fields, metrics

    async def _start_abandoned(self, j: Job) -> bool:
        """Whether the start of a claimed job that shows no trace on its host is over: its
        claimer is a process of this machine that is gone, or the claim is older than
        ``lost_grace`` (a claimer elsewhere cannot be asked)."""
        machine, _, pid = (await jobs_db.claimed_by(self.db, j.id) or "").rpartition(":")
        if machine == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            return True
        return self._age(j) > self.config.engine.lost_grace

    def _age(self, j: Job) -> float:
        started = parse_iso(j.started_at)
        if started is None:
            return 0.0
        return (parse_iso(now_iso()) - started).total_seconds()


def _warm_unstarted(j: Job, p) -> bool:
    """A job sent to a warm runner (``core.jobs.warm``) that shows no trace of its wrapper: the
    runner's session is alive, but it may have died with the job's line unread (a new runner
    takes over the session's name), or the line was never sent."""
    return (warm.is_runner(j.tmux_session) and p.exit_code is None and p.pgid is None
            and p.started_at is None)


def _session_unstarted(p) -> bool:
    """A job of a tmux host whose session is not there and whose wrapper never began (it
    creates ``started_at`` before the command, exclusively): its start was cut short after the
    job's files were written (the log among them) and before tmux started it, so it never ran.
    Not for Slurm, whose pending jobs look the same until they run."""
    return p.scheduled is None and p.wrapper_never_began


def _slurm_may_explain(j: Job, code: int, s) -> bool:
    """Whether a job that exited with an error may yet get Slurm's reason (``_slurm_end``): Slurm
    still shows it active. ``COMPLETING`` hides how it ended; and squeue runs before the job's
    files are read, so a job Slurm ended (a time limit, an scancel) between the two shows its
    exit code beside its old ``RUNNING``. A clean exit, or an end evopilot asked for, needs no
    reason from Slurm."""
    return (s is not None and s.answered and s.state in slurm.ACTIVE and code != 0
            and not j.requested)


def _slurm_end(done: dict, s) -> None:
    """A job with an exit code that Slurm ended (cancelled, time limit...), not evopilot: that
    is its status and reason (its exit 0 stands)."""
    end = slurm.ENDS.get(s.state or "")
    if end is not None and done["status"] != JobStatus.SUCCEEDED.value:
        done["status"], reason = end
        done["error_message"] = f"{reason}; exit code {done['exit_code']}"


def _slurm_lost(j: Job, s) -> dict:
    """The end of a Slurm job that has no exit code: what evopilot asked for, else what Slurm
    says, else lost."""
    what = f"Slurm job {s.job_id}"
    if j.requested == "kill":
        return {"status": JobStatus.KILLED.value}
    if j.requested == "stop":
        return {"status": JobStatus.CANCELLED.value}
    if j.requested == "timeout":
        return {"status": JobStatus.FAILED.value, "error_message": f"timeout: killed after {j.timeout_s:g}s"}
    if s.job_id is None:
        return {"status": JobStatus.LOST.value,
                "error_message": "its submission to Slurm did not finish (no Slurm job id)"}
    if s.state is None:
        return {"status": JobStatus.LOST.value,
                "error_message": f"Slurm forgot job {s.job_id} without an exit code"}
    status, reason = slurm.ENDS.get(s.state, (JobStatus.LOST.value, f"ended {s.state}"))
    who = f" {s.reason}" if s.reason.startswith("by ") else ""  # accounting says who: "by 1000"
    return {"status": status, "error_message": f"{what}: {reason}{who}, without an exit code"}


def _no_space(fields: dict, job_dir: str) -> None:
    """The job's disk filled up (its wrapper says so): that is the reason shown first, and an
    exit 0 is no success (its output may be cut short)."""
    if fields["status"] == JobStatus.SUCCEEDED.value:
        fields["status"] = JobStatus.FAILED.value
    reason = fields.get("error_message") or f"exit code {fields.get('exit_code')}"
    fields["error_message"] = f"no space left on {job_dir}: {reason}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mirror_error(j: Job, e: OSError) -> EvopilotError:
    where = os.path.dirname(j.log_path or "")
    why = f"no space left on {where}" if e.errno == errno.ENOSPC else f"{where}: {e.strerror}"
    return EvopilotError(f"{why}: cannot mirror the log of job {j.id}")


def _pwrite(path: str | None, offset: int, data: bytes) -> None:
    """Write log bytes at their offset in the local mirror: idempotent if two processes do it."""
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def tail(path: str | None, n: int, end: int | None = None) -> bytes:
    """The last ``n`` bytes of the file ``path``, or of its first ``end`` bytes; b"" when it
    cannot be read."""
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            if end is None:
                end = os.fstat(f.fileno()).st_size
            return os.pread(f.fileno(), min(n, end), max(0, end - n))
    except OSError:
        return b""
