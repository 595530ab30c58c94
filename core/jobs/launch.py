"""Starting, stopping and killing jobs on a host: in tmux sessions (local and SSH hosts), or
through Slurm (``core.hosts.slurm``, ``core.jobs.sbatch``). One script per call, however many
jobs; every start is idempotent."""

from __future__ import annotations

import asyncio
import os

from evopilot.core.hosts import slurm
from evopilot.core.hosts.base import CommandResult, Host
from evopilot.core.hosts.probe import EXIT_CODE
from evopilot.core.hosts.tmux import has_session_argv, new_session_argv
from evopilot.core.jobs import sbatch, scripts, warm
from evopilot.core.models import Job


async def start(host: Host, specs: list[scripts.StartSpec]) -> dict[int, scripts.Started]:
    """Start the jobs: each in its tmux session, or ``sbatch``ed (jobs of one shape as a job
    array)."""
    if isinstance(host, slurm.SlurmHost):
        res = await host.slurm(sbatch.submit(host.config, specs, f"{host.base_dir}/arrays"),
                               scripts.start_stdin(specs))
        started = sbatch.parse_submit(res.stdout)
        return {s.job_id: started.get(s.job_id) or scripts.Started(False, res.error_text())
                for s in specs}
    if host.is_local:
        sessions, error = await start_here(specs)
    else:
        res = await host.run(scripts.start(specs), stdin=scripts.start_stdin(specs))
        ok, error = scripts.parse_start(res.stdout), res.error_text()
        sessions = {s.job_id: s.session for s in specs if ok.get(s.job_id)}
    return {s.job_id: scripts.Started(True, sessions[s.job_id]) if s.job_id in sessions
            else scripts.Started(False, error) for s in specs}


async def start_here(specs: list[scripts.StartSpec]) -> tuple[dict[int, str], str]:
    """``scripts.start`` done by this process for jobs on this machine: the same files (mode
    0600 in 0700 directories), the same idempotence and the same retries of ``new-session``,
    without a bash and its mkdir per dispatch (every evolution candidate is a job). The session
    runs the wrapper without a shell in between. A job with a warm start goes to its runner
    first (``core.jobs.warm``). Returns the session of each job started (a runner's for a warm
    start, else its own), and the last error."""
    started, error = {}, ""
    for s in specs:
        d = s.job_dir
        if os.path.exists(f"{d}/{EXIT_CODE}"):
            started[s.job_id] = s.warm.session if s.warm is not None else s.session
            continue
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
        except OSError as e:
            error = f"{d}: {e.strerror}"
            continue
        if s.warm is not None and await warm.send(s.warm, _tmux):
            started[s.job_id] = s.warm.session
            continue
        try:
            _write(f"{d}/{scripts.ENV}", s.env.encode(), truncate=True)
            if not _written(f"{d}/{scripts.WRAPPER}"):
                # written whole under another name, then renamed: a start killed between creating
                # the file and writing it left it empty, the next start took it for written,
                # and bash ran the empty file (the job lost; seen in the kill drill)
                _write(f"{d}/{scripts.WRAPPER}.tmp", s.wrapper.encode(), truncate=True)
                os.replace(f"{d}/{scripts.WRAPPER}.tmp", f"{d}/{scripts.WRAPPER}")
            _write(f"{d}/{scripts.LOG}", b"", truncate=False)
        except OSError as e:
            error = f"{d}: {e.strerror}"
            continue
        new = new_session_argv(s.session, ["bash", f"{d}/{scripts.WRAPPER}"])
        ok, err = False, b""
        for pause in (0.0, 0.05, 0.2):  # tmux exiting after its last session: try again
            await asyncio.sleep(pause)
            code, err = await _tmux(new)
            if code == 0 or (await _tmux(has_session_argv(s.session)))[0] == 0:
                ok = True
                break
        if ok:
            started[s.job_id] = s.session
        else:
            error = err.decode("utf-8", "replace").strip().splitlines()[-1:][0] if err.strip() else "tmux failed"
    return started, error


def _written(path: str) -> bool:
    """Whether the file is there and not empty (an empty one: see start_here)."""
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


def _write(path: str, data: bytes, *, truncate: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
        f.write(data)


async def _tmux(argv: list[str]) -> tuple[int, bytes]:
    # umask 077: a tmux server this starts passes it on to the wrappers (their files are private)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, umask=0o077)
    except FileNotFoundError:
        return 127, b"tmux is not installed"
    _, err = await proc.communicate()
    return proc.returncode or 0, err


async def stop(host: Host, job: Job) -> bool:
    """SIGINT to the job's command (under Slurm: ``scancel --signal=INT --full``, a pending job
    cancelled); False when it has no process to signal yet."""
    if isinstance(host, slurm.SlurmHost):
        return (await host.slurm(slurm.stop(job.job_dir))).ok
    return (await host.run(scripts.signal(job_dir=job.job_dir, sig="INT"))).ok


async def kill(host: Host, job: Job, grace: float) -> CommandResult:
    """SIGTERM the job's process group, SIGKILL after ``grace`` seconds, end its session (under
    Slurm: ``scancel``, which does the same after its KillWait)."""
    if isinstance(host, slurm.SlurmHost):
        return await host.slurm(slurm.cancel(job.job_dir))
    # a warm runner's session is shared by its jobs: it stays
    session = None if warm.is_runner(job.tmux_session) else job.tmux_session
    return await host.run(scripts.kill(job_dir=job.job_dir, session=session, grace=grace))
