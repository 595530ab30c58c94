"""Starting, stopping and killing jobs on a host: in tmux sessions (local and SSH hosts), or
through Slurm (``core.hosts.slurm``, ``core.jobs.sbatch``). One script per call, however many
jobs; every start is idempotent."""

from __future__ import annotations

from evopilot.core.hosts import slurm
from evopilot.core.hosts.base import CommandResult, Host
from evopilot.core.jobs import sbatch, scripts
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
    res = await host.run(scripts.start(specs), stdin=scripts.start_stdin(specs))
    ok, error = scripts.parse_start(res.stdout), res.error_text()
    return {s.job_id: scripts.Started(True, s.session) if ok.get(s.job_id)
            else scripts.Started(False, error) for s in specs}


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
    return await host.run(scripts.kill(job_dir=job.job_dir, session=job.tmux_session, grace=grace))
