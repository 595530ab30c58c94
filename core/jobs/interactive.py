"""Interactive jobs: what ``evopilot attach`` runs to show a job's tmux session, and ``send``,
which types a line into a ``tty`` job (see ``scripts.wrapper`` for how such a job runs).

``attach_command`` is pure; ``send`` only runs the script ``tmux.send_keys`` builds.
"""

from __future__ import annotations

from dataclasses import dataclass

from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.hosts.tmux import send_keys
from evopilot.core.jobs import warm
from evopilot.core.quoting import join
from evopilot.core.models import Job, JobStatus


@dataclass(frozen=True, slots=True)
class AttachCommand:
    argv: list[str]
    takes_terminal: bool
    """True: it runs on this terminal until the user detaches. False: it returns at once
    (``switch-client`` moves the tmux client this runs in to the job's session)."""

    @property
    def command(self) -> str:
        """The same as shell text (to print, or paste into a shell)."""
        return join(self.argv)


def attach_command(session: str, *, inside_tmux: bool, ssh: list[str] | None = None) -> AttachCommand:
    """The command showing a job's session: ``tmux attach`` here, ``tmux switch-client`` when
    already inside tmux, or ``ssh -t … tmux attach`` for a session on an SSH host.

    ``ssh`` is the host's ssh argv ending with the destination (``ssh.ssh_command_args``); the
    remote command is one word, quoted for the remote shell.
    """
    target = f"={session}"
    if ssh is not None:
        remote = join(["tmux", "attach-session", "-t", target])
        return AttachCommand([*ssh[:-1], "-t", ssh[-1], remote], takes_terminal=True)
    if inside_tmux:
        return AttachCommand(["tmux", "switch-client", "-t", target], takes_terminal=False)
    return AttachCommand(["tmux", "attach-session", "-t", target], takes_terminal=True)


def check_attachable(job: Job) -> Job:
    """The job if it has a session to show (it is running); else a one-line reason."""
    if job.status != JobStatus.RUNNING or not job.tmux_session:
        if job.slurm_id and job.status == JobStatus.RUNNING:
            raise EvopilotError(f"job {job.id} runs under Slurm, without a terminal "
                                f"(see `evopilot logs {job.id}`)")
        if job.status.finished:
            raise EvopilotError(f"job {job.id} is {job.status.value}: its session is gone "
                                f"(see `evopilot logs {job.id}`)")
        raise EvopilotError(f"job {job.id} is {job.status.value}: it has no session yet")
    if warm.is_runner(job.tmux_session):
        raise EvopilotError(f"job {job.id} runs in a warm evaluation slot, without a terminal of its own "
                            f"(see `evopilot logs {job.id}`)")
    return job


def check_interactive(job: Job) -> Job:
    """The job if it can be typed into; else a one-line reason."""
    if job.mode != "tty":
        raise EvopilotError(f"job {job.id} is not interactive (run it with --tty)")
    return check_attachable(job)


async def send(host: Host, job: Job, text: str) -> None:
    """Type ``text`` and Enter into the terminal of ``job`` (one ``check_interactive`` passed)."""
    res = await host.run(send_keys(job.tmux_session, text))
    if not res.ok:
        raise EvopilotError(f"cannot send to job {job.id}: {res.error_text()}")
