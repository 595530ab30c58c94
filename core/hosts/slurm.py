"""A Slurm cluster as a host: jobs go through ``sbatch`` and run the same wrapper as anywhere
(job directory, ``log``, ``exit_code``, ``results.json``, start and end times), on a filesystem
the compute nodes share.

The cluster is reached through a login node over SSH (``SshSlurmHost``) or its commands run on
this machine (``LocalSlurmHost``, ``local = true``): either way scripts run with bash there and
files are read there, so a Slurm host is that host with jobs started, watched and ended through
Slurm:

* start (``core.jobs.sbatch``): one script writes each job's directory and wrapper and
  ``sbatch``es it (output appended to the job's ``log``, so Slurm's own lines, "CANCELLED ...
  DUE TO TIME LIMIT", are in it too), then records the Slurm id in the job directory's
  ``slurm_id``. Idempotent, like a tmux start: a job with a ``slurm_id`` is not submitted again.
* watch: one round trip per tick for all jobs: ``squeue --states=all`` for the ids read from the
  job directories, and the directories' state files (``core.hosts.probe.files``) in the same
  script. What the states mean for a job is the monitor's (``core.jobs.monitor``); ``ENDS`` names
  the ends Slurm explains.
* stop: ``scancel --signal=INT --full`` (the wrapper forwards it; a pending job is cancelled);
  kill: ``scancel`` (TERM, KILL after Slurm's KillWait).

The host's ``env`` is exported to Slurm's commands (``SLURM_CONF``, a module's ``PATH``) and to
the jobs; it travels on stdin, never in a script's text (every user can read argv).

The builders here are pure and quote with ``core.quoting``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path

from evopilot.core.config import HostConfig
from evopilot.core.hosts import probe as probe_scripts
from evopilot.core.hosts.base import IDLE_EVERY, CommandResult, Host, env_file
from evopilot.core.hosts.local import LocalHost
from evopilot.core.hosts.probe import EXIT_CODE, LOG, Probe, Scheduled
from evopilot.core.quoting import join, quote

SLURM_ID = "slurm_id"  # in a job directory: the job's Slurm id, written right after sbatch
TASK_OUT = "task_out"
"""In an array task's job directory: the path of the array's output file for that task, where
Slurm writes its own lines ("CANCELLED ... DUE TO TIME LIMIT"); see ``probe``."""
SQUEUE_FORMAT = "%i|%T|%r"
ACTIVE = frozenset({"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED",
                    "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT",
                    "STOPPED", "RESV_DEL_HOLD"})
"""States of a job Slurm has not ended (``COMPLETING`` hides how it ended: wait for it)."""
ENDS: dict[str, tuple[str, str]] = {
    "CANCELLED": ("cancelled", "cancelled in Slurm (CANCELLED: scancel by a user or an admin)"),
    "PREEMPTED": ("cancelled", "preempted by Slurm (PREEMPTED)"),
    "TIMEOUT": ("failed", "Slurm's time limit was reached (TIMEOUT)"),
    "DEADLINE": ("failed", "Slurm's deadline was reached (DEADLINE)"),
    "OUT_OF_MEMORY": ("failed", "out of memory (OUT_OF_MEMORY)"),
    "NODE_FAIL": ("lost", "its node failed (NODE_FAIL)"),
    "BOOT_FAIL": ("lost", "its node failed to boot (BOOT_FAIL)"),
}
"""Slurm's end states that say what ended a job, other than its own exit: (status, reason)."""


# ---- pure builders ------------------------------------------------------------------------


def time_limit(timeout_s: float | None, configured: str | None) -> str | None:
    """``--time``: from the job's own timeout, in whole minutes with one to spare (evopilot's
    own timeout, which says why, comes first), else the host's ``time_limit``."""
    if timeout_s:
        return str(math.ceil(timeout_s / 60) + 1)
    return configured


def sbatch_argv(cfg: HostConfig, *, name: str, job_dir: str, timeout_s: float | None,
                script: str) -> list[str]:
    """The ``sbatch`` command line of one job running ``script`` (its wrapper)."""
    argv = ["sbatch", "--parsable", f"--job-name={name}", f"--chdir={job_dir}",
            f"--output={job_dir}/{LOG}", "--open-mode=append", "--no-requeue"]
    for option, value in (("partition", cfg.partition), ("account", cfg.account),
                          ("time", time_limit(timeout_s, cfg.time_limit)),
                          ("cpus-per-task", cfg.cpus_per_job), ("mem", cfg.mem),
                          ("gres", cfg.gres)):
        if value:
            argv.append(f"--{option}={value}")
    return [*argv, *cfg.sbatch_options, script]


def with_env(script: str, env: str) -> str:
    """``script`` run with the host's ``env`` exported: its text (``env_file``, quoted
    export lines) comes first on stdin (``env_stdin``)."""
    n = len(env.encode())
    if not n:
        return script
    return f'e=; LC_ALL=C IFS= read -r -N {n} e; eval "$e"\n{script}'


def env_stdin(env: str, rest: bytes = b"") -> bytes:
    return env.encode() + rest


SLURM_TIMEOUT = 2
"""Seconds each Slurm command of a tick may take: a slurmctld that is down makes squeue and
sinfo retry for ~9 s (Slurm's MessageTimeout, 10 s by default) before they fail, and every
tick of the host would wait that long; one that answers does so in milliseconds. A command cut
short means "not answering": nothing is taken for ended (see ``parse_squeue``)."""
TIMED_OUT = 124  # ``timeout``'s exit status


def _bounded(argv: list[str]) -> str:
    return join(["timeout", str(SLURM_TIMEOUT), *argv])


def cluster(partition: str | None = None) -> str:
    """The partition's nodes by state: ``sinfo`` lines ``node|<state>|<count>|``, then
    ``sinfo=<its exit status>``."""
    part = ["-p", partition] if partition else []
    return f"{_bounded(['sinfo', '-h', *part, '-o', 'node|%T|%D|'])} 2>/dev/null; echo sinfo=$?\n"


def probe(dirs: list[str], partition: str | None = None) -> str:
    """Slurm's view of the jobs in ``dirs`` (one ``squeue`` for the ids in their ``slurm_id``
    files, then a line ``rc=<its exit status>``), the partition's nodes (``cluster``; not asked
    when squeue found slurmctld not answering), then the directories' files.

    Ids squeue has forgotten (past MinJobAge, or lost by a slurmctld restart) are asked of
    Slurm's accounting (``sacct``), else its job-completion log (``sacct -c``): lines
    ``acct|<id>|<state>``, e.g. ``CANCELLED by 1000``.

    An array task that has ended (its ``exit_code`` written) gets Slurm's own lines for it
    ("CANCELLED ... DUE TO TIME LIMIT", in the array's output file that its ``task_out``
    names) appended to its log, once (then ``task_out.done``), before the logs' sizes are read,
    and a line ``ended|<dir>``: the tick that settles it reads them (``parse_probe`` holds back
    an exit code written after that line's check)."""
    ids = join(f"{d}/{SLURM_ID}" for d in dirs)
    fmt = quote(SQUEUE_FORMAT)
    squeue = _bounded(["squeue", "-h", "-r", "--states=all"])
    sacct = " || ".join(f'{_bounded([*argv, "-j"])} "${{m%,}}" {join(["-o", fields])} 2>/dev/null'
                        for argv, fields in ((["sacct", "-X", "-n", "-P"], "JobID,State"),
                                             (["sacct", "-c", "-n", "-P"], "jobid,state")))
    appends = (f'for d in {join(dirs)}; do [ -e "$d/{EXIT_CODE}" ] && read -r o 2>/dev/null < "$d/{TASK_OUT}" '
               f'|| continue; echo "ended|$d"; [ -e "$d/{TASK_OUT}.done" ] || '
               f'{{ cat -- "$o" >> "$d/{LOG}" 2>/dev/null; echo 1 > "$d/{TASK_OUT}.done"; }}; done\n')
    return (
        f"ids=$(cat {ids} 2>/dev/null | tr '\\n' ,); rc=0\n"
        f'if [ -n "$ids" ]; then q=$({squeue} -j "${{ids%,}}" -o {fmt} 2>&1); rc=$?\n'
        'printf \'%s\\nrc=%s\\n\' "$q" "$rc"; n=$\'\\n\'; m=\n'
        'if [ $rc -eq 0 ] || case "$q" in *"Invalid job id"*) true;; *) false;; esac; then\n'
        '  for i in ${ids//,/ }; do case "$n$q" in *"$n$i|"*) ;; *) m=$m$i,;; esac; done\n'
        "fi\n"
        f'if [ -n "$m" ]; then {{ {sacct}; }} | sed \'s/^/acct|/\'; fi\n'
        f"else echo rc=0; fi\n"
        f"if [ $rc -ne {TIMED_OUT} ]; then {cluster(partition)}fi\n"
        f"{appends}printf '\\0--evopilot--\\n'\n"
        f"{probe_scripts.files(dirs, (*probe_scripts.SMALL_FILES, SLURM_ID, TASK_OUT))}"
    )


def parse_squeue(text: str) -> tuple[bool, dict[str, tuple[str, str]]]:
    """Whether squeue answered, and each job id it knows: (state, reason)."""
    lines = text.splitlines()
    rc = next((line for line in lines if line.startswith("rc=")), "rc=?")
    jobs = {}
    for line in lines:
        parts = line.split("|")
        if len(parts) == 3 and parts[0] != "acct":
            jobs[parts[0]] = (parts[1], parts[2])
    # one id that Slurm has forgotten is an error; among others it is just left out
    answered = rc == "rc=0" or (not jobs and "Invalid job id specified" in text)
    for line in lines:  # forgotten by squeue, known to accounting: "CANCELLED by 1000"
        parts = line.split("|")
        if answered and len(parts) == 3 and parts[0] == "acct" and parts[2]:
            state, _, who = parts[2].partition(" ")
            jobs.setdefault(parts[1], (state, who))
    return answered, jobs


def parse_nodes(text: str) -> dict[str, int] | None:
    """The partition's nodes by state (``idle``, ``mixed``, ``allocated``, ``down``...) from
    the lines of ``cluster``; None when sinfo did not answer."""
    if "sinfo=0" not in text.splitlines():
        return None
    nodes: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) == 4 and parts[0] == "node" and parts[2].isdigit():
            state = parts[1].rstrip("*~#!%$@^-")  # sinfo's flags: not responding, powered down...
            nodes[state] = nodes.get(state, 0) + int(parts[2])
    return nodes


def not_answering(text: str) -> str | None:
    """What is wrong with Slurm's controller, from a probe's first section (squeue's output and
    ``rc=`` line) or ``cluster``'s lines; None when it answered."""
    lines = text.splitlines()
    if f"rc={TIMED_OUT}" in lines or f"sinfo={TIMED_OUT}" in lines:
        return f"slurmctld not answering (no answer within {SLURM_TIMEOUT} s)"
    if any(line.startswith("rc=") for line in lines) and not parse_squeue(text)[0]:
        said = next((line for line in lines if line.strip() and not line.startswith("rc=")), "")
        return f"squeue failed: {said}" if said else "squeue failed"
    if "sinfo=0" not in lines and any(line.startswith("sinfo=") for line in lines):
        return "sinfo failed"
    return None


def parse_probe(out: bytes, jobs: list[tuple[int, str]]) -> dict[int, Probe]:
    first, found = probe_scripts.parse_files(out)
    text = first.decode("utf-8", "surrogateescape")
    answered, known = parse_squeue(text)
    ended = {line[len("ended|"):] for line in text.splitlines() if line.startswith("ended|")}
    result = {}
    for job_id, d in jobs:
        slurm_id = found.contents.get(f"{d}/{SLURM_ID}", "").strip() or None
        state, reason = known.get(slurm_id, (None, "")) if slurm_id else (None, "")
        # "alive": Slurm may still run it (or cannot be asked); a job with no id was never
        # submitted, and one whose start never reached the host goes back to the queue
        p = found.probe(
            d, session_alive=slurm_id is not None and (not answered or state in ACTIVE),
            scheduled=Scheduled(slurm_id, state, "" if reason == "None" else reason, answered))
        if f"{d}/{TASK_OUT}" in found.contents and d not in ended:
            # an array task whose exit code came after the probe appended Slurm's lines: next tick
            p = dataclasses.replace(p, exit_code=None)
        result[job_id] = p
    return result


def _id_of(job_dir: str) -> str:
    """Shell text: read the job's Slurm id into ``$id``, or exit 3 when it has none yet."""
    return f"id=$(cat {quote(job_dir + '/' + SLURM_ID)} 2>/dev/null) && [ -n \"$id\" ] || exit 3\n"


def stop(job_dir: str) -> str:
    """SIGINT to every process of the job (the wrapper forwards it to the command's group); a
    job still pending is cancelled (signalling it makes scancel retry for ~90 s). Each scancel
    acts only on a job in its state, so one that starts in between is signalled."""
    return (_id_of(job_dir) + 'scancel --state=PENDING "$id" || exit\n'
            'scancel --state=RUNNING --signal=INT --full "$id" 2>/dev/null || true\n')


def cancel(job_dir: str) -> str:
    """``scancel``: SIGTERM to the job's processes, SIGKILL after Slurm's KillWait."""
    return _id_of(job_dir) + 'scancel "$id"\n'


# ---- the hosts ----------------------------------------------------------------------------


class SlurmHost(Host):
    """Jobs through Slurm; scripts run and files are read by the host class it is mixed into
    (``LocalSlurmHost``, ``SshSlurmHost``)."""

    in_tmux = False
    nodes: dict[str, int] | None = None
    """The partition's nodes by state, as last seen (None: not asked yet)."""
    nodes_at: float | None = None
    """When they were last asked (``time.monotonic``)."""
    queue: dict[str, int] = {}
    """evopilot's jobs there that Slurm has not ended, by state (``PENDING``, ``RUNNING``...),
    as the last tick saw them."""
    slurm_error: str | None = None
    """Slurm's controller not answering (or its commands failing) at the last look; it is the
    host's ``last_error`` meanwhile."""

    @property
    def _env(self) -> str:
        return env_file(self.config.env)

    async def slurm(self, script: str, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        """Run ``script`` with the host's ``env`` exported (Slurm's commands need it)."""
        return await self.run(with_env(script, self._env), stdin=env_stdin(self._env, stdin),
                              timeout=timeout)

    async def connect(self) -> None:
        await super().connect()
        await self.refresh(force=True)

    async def refresh(self, *, force: bool = False) -> None:
        """The partition's nodes (``sinfo``; a tick with no job to probe calls this) when not
        asked for ``IDLE_EVERY`` seconds, or the last look found Slurm failing: the Hosts
        tab shows a cluster evopilot runs nothing on, and an error no longer true goes."""
        if (force or self.nodes_at is None or self.slurm_error
                or time.monotonic() - self.nodes_at > IDLE_EVERY):
            res = await self.slurm(cluster(self.config.partition))
            self._saw(res.stdout.decode("utf-8", "replace"))

    def _saw(self, text: str) -> None:
        """Record the cluster's nodes and its controller's error from Slurm's output ``text``."""
        nodes = parse_nodes(text)
        if nodes is not None:
            self.nodes = nodes
        self.nodes_at = time.monotonic()
        old, self.slurm_error = self.slurm_error, not_answering(text)
        if self.last_error is None or self.last_error == old:  # a connection's error stays
            self.last_error = self.slurm_error

    async def probe(self, jobs: list[tuple[int, str, str]]) -> dict[int, Probe]:
        dirs = [(job_id, d) for job_id, d, _ in jobs]
        res = await self.slurm(probe([d for _, d in dirs], self.config.partition))
        got = parse_probe(res.stdout, dirs)
        self._saw(probe_scripts.parse_files(res.stdout)[0].decode("utf-8", "replace"))
        queue: dict[str, int] = {}
        for p in got.values():
            # ended ones are left out: no tick asks again once no job runs there
            if p.scheduled is not None and p.scheduled.state in ACTIVE:
                queue[p.scheduled.state] = queue.get(p.scheduled.state, 0) + 1
        self.queue = queue
        return got

    def summary(self) -> dict:
        """The cluster for the Hosts tab and ``evopilot hosts --json``: the partition's nodes
        by state, evopilot's jobs there by Slurm state, as last seen, and what is wrong with
        Slurm's controller (None: nothing)."""
        return {"partition": self.config.partition, "nodes": self.nodes, "jobs": self.queue,
                "error": self.slurm_error}


class LocalSlurmHost(SlurmHost, LocalHost):
    """Slurm's commands on this machine (``local = true``); the job directories are here."""


@functools.cache
def _ssh_slurm_host() -> type:
    from evopilot.core.hosts.ssh import SshHost  # asyncssh only when a login node is used

    class SshSlurmHost(SlurmHost, SshHost):
        """Slurm reached through a login node over SSH."""

    return SshSlurmHost


def make(name: str, cfg: HostConfig, default_base: Path, ssh_config: list[str] | None) -> Host:
    if cfg.local:
        return LocalSlurmHost(name, cfg, default_base)
    return _ssh_slurm_host()(name, cfg, ssh_config=ssh_config)


# ---- doctor -------------------------------------------------------------------------------

DOCTOR_WAIT = 60
"""Seconds ``doctor`` waits for its test job to run and end."""


def doctor_script(cfg: HostConfig, base_dir: str, tag: str, uv: str) -> str:
    """One script printing ``key<TAB>status<TAB>detail`` lines (``core.hosts.doctor``): the
    partitions (``sinfo``), then a tiny test job submitted and awaited end to end, which
    reports from its compute node whether ``base_dir`` is there and writable and uv's version
    (``uv``: shell text). ``tag`` names its directory under ``base_dir`` (removed at the end)."""
    d = f"{base_dir}/.evp-doctor-{tag}"
    say = "say() { printf '%s\\t%s\\t%s\\n' \"$1\" \"$2\" \"$3\"; }\n"
    b = quote(base_dir)
    job = (
        f"#!/usr/bin/env bash\n{say}"
        'say node 0 "$(hostname)"\n'
        f"if [ -w {b} ]; then say shared 0 {b}; else say shared 1 {quote(base_dir + ' is missing or not writable')}; fi\n"
        f'v=$({uv} --version 2>&1); say uv $? "$(printf "%s" "$v" | head -n1)"\n'
    )
    argv = sbatch_argv(cfg.model_copy(update={"time_limit": "2"}), name="evp-doctor",
                       job_dir=d, timeout_s=None, script=f"{d}/job.sh")
    part = ["-p", cfg.partition] if cfg.partition else []
    return (
        f"{say}o=$({join(['sinfo', '-h', *part, '-o', '%P %a %D %T'])} 2>&1); r=$?\n"
        'say sinfo $r "$(printf "%s" "$o" | paste -sd ";" | sed "s/;/; /g")"\n'
        "[ $r -eq 0 ] || exit 0\n"
        f"mkdir -p {quote(d)} && printf '%s' {quote(job)} > {quote(d + '/job.sh')} || "
        f"{{ say job 1 {quote('cannot write ' + d)}; exit 0; }}\n"
        f'id=$({join(argv)} 2>&1) || {{ say job 1 "$id"; rm -rf {quote(d)}; exit 0; }}\n'
        "id=${id%%;*}; t0=$(date +%s%3N)\n"
        f"for _ in $(seq {DOCTOR_WAIT * 10}); do\n"
        f'  st=$(squeue -h --states=all -j "$id" -o {quote("%T (%r)")} 2>/dev/null)\n'
        "  case \"$st\" in PENDING*|RUNNING*|COMPLETING*|CONFIGURING*|'') sleep 0.1;; *) break;; esac\n"
        "done\n"
        'case "$st" in COMPLETED*) r=0;; PENDING*|RUNNING*|CONFIGURING*|"") scancel "$id"; r=2;; *) r=1;; esac\n'
        'say job $r "Slurm job $id: ${st:-not seen} after $(( $(date +%s%3N) - t0 )) ms"\n'
        f"cat {quote(d + '/' + LOG)} 2>/dev/null\nrm -rf {quote(d)}\ntrue\n"
    )
