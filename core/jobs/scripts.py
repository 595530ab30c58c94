"""Shell text for everything a job does on its host, and parsers for what comes back.

Pure functions: each returns a bash script built with ``core.quoting.quote``. A job lives in
``<base>/jobs/<key>/`` with ``run.sh`` (the wrapper), ``env``, ``log``, ``pid``, ``exit_code`` and
``results.json``; the files are the truth, so any evopilot process can reconcile any job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from evopilot.core.hosts.base import env_file  # noqa: F401  (the wrapper's env file, for dispatch)
from evopilot.core.hosts.probe import EXIT_CODE, FINISHED, HANGUP, LOG, NOSPACE, PID, RESULTS, STARTED
from evopilot.core.hosts.tmux import LIST_SESSIONS, has_session, kill_session, new_session, new_session_args
from evopilot.core.quoting import join, quote

if TYPE_CHECKING:
    from evopilot.core.jobs.warm import WarmStart

# Files in a job directory (besides those the monitor's probe reads, see core.hosts.probe).
WRAPPER = "run.sh"
# The host's ``env`` (licence paths, tokens), mode 0600: never in a script's text, which is a
# ``bash -c`` argument that every user of the host can read in /proc/*/cmdline.
ENV = "env"


def wrapper(
    *, job_id: int, job_dir: str, workdir: str, command: str, done_channel: str,
    done_fifo: str = "", mode: str = "batch", pane: bool = True,
) -> str:
    """The bash wrapper a job's tmux session runs.

    Either mode records its start time in ``started_at`` (created exclusively: a second
    wrapper of the same job, from a start sent again after a crash, leaves at once, so a job
    never runs twice), sources the ``env`` file ``start`` wrote, starts ``command`` as its own
    process group (``set -m``), records the group id in ``pid``, appends its output to ``log``,
    writes its end time to ``finished_at`` and then the exit status to ``exit_code`` (one
    write of a few bytes by the shell itself: a reader sees it empty, that is no exit code yet,
    or whole; a rename would cost a ``mv`` process between every job's end and its engine's
    wake; ``pid`` is written the same way), then wakes a watching engine at once: through ``done_fifo`` when given
    (a local job: its engines watch the FIFO, see ``core.jobs.wake``), else ``tmux wait-for
    done_channel`` (a tmux client process per job, which a local job saves). ``batch``: see
    ``_batch``; ``tty``: see ``_tty``.
    """
    if mode not in ("batch", "tty"):
        raise ValueError(f"unknown wrapper mode {mode!r}")
    if mode == "tty" and not pane:
        raise ValueError("a tty job needs a pane")
    body = _batch(command, pane) if mode == "batch" else _tty(job_id, job_dir, command)
    # read-write: never blocks, with or without a reader
    wake = (f"[ -p {quote(done_fifo)} ] && printf x 2>/dev/null 1<>{quote(done_fifo)}\n" if done_fifo
            else f"{'exec ' if pane else ''}tmux wait-for -S {quote(done_channel)} 2>/dev/null\n"
            if done_channel else "")  # the wrapper's last command (in a pane): no fork
    # under Slurm (no pane) the job is recorded as FAILED or COMPLETED by the wrapper's exit
    end = "" if pane else 'exit "$rc"\n'
    return f"""#!/usr/bin/env bash
# evopilot job {job_id}
set -u
D={quote(job_dir)}
now() {{ printf '%s\\n' "${{EPOCHREALTIME:-$(date +%s)}}"; }}
# exclusive and empty first (an inode only, so a full disk does not stop it), the time after
set -C; : > "$D/{STARTED}" 2>/dev/null || exit 0; set +C; now >> "$D/{STARTED}" 2>/dev/null
# A full disk must not lose the exit code: it then overwrites, in place, a file reserved at the
# start (no new block needed), and an empty marker (an inode only) says why. The reserved file
# stays when unused (removing it would cost an ``rm`` process per job; it goes with the job
# directory).
R="$D/{EXIT_CODE}.reserved"; printf '%16s\\n' '' > "$R" || : > "$D/{NOSPACE}"
finish() {{ now > "$D/{FINISHED}" 2>/dev/null
  printf '%s\\n' "$1" > "$D/{EXIT_CODE}" ||
  {{ : > "$D/{NOSPACE}"; printf '%-16s\\n' "$1" 1<> "$R" && mv -f "$R" "$D/{EXIT_CODE}"; }}; }}
export EVOPILOT_JOB_ID={quote(job_id)} EVOPILOT_JOB_DIR="$D" EVOPILOT_RESULTS="$D/{RESULTS}"
[ ! -e "$D/{ENV}" ] || . "$D/{ENV}"
cd {quote(workdir)} 2>>"$D/{LOG}" || {{ finish 127; exit 127; }}
{body}finish "$rc"
{wake}{end}"""


def _batch(command: str, pane: bool = True) -> str:
    """stdin from /dev/null, stdout+stderr to ``log`` (shown in the pane by ``tail``);
    INT/TERM/HUP sent to the wrapper are forwarded to the group, a HUP also noted."""
    show = f'tail -n +1 -f --pid="$child" "$D/{LOG}" 2>/dev/null &\n' if pane else ""
    return f"""set -m
bash -c {quote(command)} </dev/null >>"$D/{LOG}" 2>&1 &
child=$!
set +m
printf '%s\\n' "$child" > "$D/{PID}"
trap 'kill -INT -- -$child 2>/dev/null' INT
trap 'kill -TERM -- -$child 2>/dev/null' TERM
trap ': > "$D/{HANGUP}"; kill -HUP -- -$child 2>/dev/null' HUP
{show}while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break  # wait was cut short by a trapped signal
done
"""


# Run in the foreground by the tty wrapper: record its own process group (it leads it), then run
# the command. Arguments: the job directory, the command.
_TTY_LAUNCH = f'printf "%s\\n" "$$" > "$1/{PID}" && exec bash -c "$2"'


def _tty(job_id: int, job_dir: str, command: str) -> str:
    """The command on the pane's terminal: stdin, stdout and stderr are the pane, and it is the
    terminal's foreground process group, so it can read keys (a background group reading its
    terminal gets SIGTTIN). It starts in the foreground (job control gives it the terminal
    before it runs: no race with ``fg`` and a command that ends at once). tmux copies the pane's
    output to ``log`` (pipe-pane, opened before the command starts).

    Signals need no forwarding: stop/kill signal the group, keys typed in the pane reach it.

    * INT is trapped only because bash, seeing its foreground job die of SIGINT (a stop), would
      take it as its own and exit before writing the exit code.
    * Ctrl-Z is a plain key here: a stopped job would end the wrapper's wait.
    * HUP is not trapped (bash would run the trap only after the foreground job): a hangup ends
      the wrapper, the kernel hangs up the command's group, and the job is lost. A wrapper that
      outlives its pane anyway cannot write to it, and notes the hangup.

    At the end a marker (a pane-title escape) written to the pane and awaited in ``log`` proves
    that tmux has copied every byte before it; then the pipe is closed and the marker cut off.
    """
    pipe = f"cat >> {quote(job_dir + '/' + LOG)}"  # run by tmux with sh -c
    return f"""tmux pipe-pane -t "$TMUX_PANE" {quote(pipe)} 2>>"$D/{LOG}" || {{ finish 127; exit 127; }}
trap : INT
stty susp undef 2>/dev/null
set -m
bash -c {quote(_TTY_LAUNCH)} evopilot "$D" {quote(command)}
rc=$?
set +m
printf -v end '\\033]2;%s\\007' {quote(f"evopilot job {job_id} ended")}
ends() {{ [ "$(tail -c ${{#end}} "$D/{LOG}" 2>/dev/null)" = "$end" ]; }}
if printf '%s' "$end" 2>/dev/null; then
  for _ in $(seq 200); do ends && break; sleep 0.05; done
else
  : > "$D/{HANGUP}"
fi
tmux pipe-pane -t "$TMUX_PANE" 2>/dev/null
ends && truncate -s "$(($(stat -c %s "$D/{LOG}") - ${{#end}}))" "$D/{LOG}"
"""


@dataclass(frozen=True, slots=True)
class StartSpec:
    job_id: int
    job_dir: str
    session: str
    wrapper: str
    env: str = ""
    """The ``env`` file's text (``env_file``): sent on stdin, see ``start_stdin``."""
    timeout_s: float | None = None
    """The job's own timeout (a Slurm host asks for a time limit from it)."""
    warm: WarmStart | None = None
    """A local evaluation's start in its environment's warm runner (``core.jobs.warm``): tried
    first, the session above when that fails."""


@dataclass(frozen=True, slots=True)
class Started:
    """How a job's start went: ``detail`` is its session or Slurm id, else the error."""

    ok: bool
    detail: str
    slurm_id: str | None = None


def start_stdin(specs: list[StartSpec]) -> bytes:
    """What ``start`` reads from stdin: each job's ``env`` file, one after the other."""
    return b"".join(s.env.encode() for s in specs)


def wrapper_once(job_dir_quoted: str, wrapper: str) -> str:
    """Shell that writes the job's wrapper unless a start sent before wrote it (a start sent
    again keeps it). -s, not -e: an attempt killed between `>` creating the file and printf's
    one write leaves it empty, and bash runs an empty file without a word (the job is lost)."""
    d = job_dir_quoted
    return f"{{ [ -s {d}/{WRAPPER} ] || printf '%s' {quote(wrapper)} > {d}/{WRAPPER}; }}"


def start(specs: list[StartSpec]) -> str:
    """Create each job's directory, write its wrapper and start its session: one script for
    all, printing ``OK <id>`` or ``ERR <id>`` per job.

    Idempotent: a job that already has an exit code or a session is left alone, so sending
    this twice (say, after a dropped link) never starts a job twice (and its wrapper runs the
    command only once). Each job's ``env`` file comes from stdin (``start_stdin``), read
    byte-exact by the builtin ``read`` (no process, so never in an argv), and is written 0600
    (umask) before the wrapper.

    All sessions are started by one tmux command (a process per job costs seconds when
    hundreds start at once on a busy host), skipping those already there; a job whose session
    that did not start goes the slow way, one ``new-session`` of its own: tmux exits when its
    last session ends, and a ``new-session`` racing that exit fails ("server exited
    unexpectedly"), so it is tried again, twice, before the job is reported not started.
    """
    # the sessions there, one per line between newlines (no process but tmux's)
    there = f"""there=$'\\n'"$({join(LIST_SESSIONS)} 2>/dev/null)"$'\\n'"""
    parts = ["umask 077", f"mkdir -p {join([s.job_dir for s in specs])} 2>/dev/null", there, "batch=()"]
    for i, s in enumerate(specs):
        d = quote(s.job_dir)
        n = len(s.env.encode())
        cmd = join(["bash", s.job_dir + "/" + WRAPPER])
        parts.append(
            f"e=; [ {n} -eq 0 ] || LC_ALL=C IFS= read -r -N {n} e\n"
            f"r{i}=ERR\n"
            f"if [ -e {d}/{EXIT_CODE} ]; then r{i}=OK\n"
            f"elif [ -d {d} ] && printf '%s' \"$e\" > {d}/{ENV} && {wrapper_once(d, s.wrapper)} "
            f"&& : >> {d}/{LOG}; then\n"
            f"  case \"$there\" in *$'\\n'{quote(s.session)}$'\\n'*) r{i}=OK ;; "
            f"*) r{i}=NEW; batch+=(';' {join(new_session_args(s.session, cmd))}) ;; esac\n"
            f"fi"
        )
    parts.append(f'if [ ${{#batch[@]}} -gt 0 ]; then tmux "${{batch[@]:1}}" 2>/dev/null; {there}; fi')
    for i, s in enumerate(specs):
        new = new_session(s.session, join(["bash", s.job_dir + "/" + WRAPPER]))
        # already started by an earlier attempt (or the batch): the session is there
        has = has_session(s.session)
        parts.append(
            f"if [ \"$r{i}\" = NEW ]; then r{i}=ERR\n"
            # a session not listed may have ended already: its wrapper's start time says so
            f"  case \"$there\" in *$'\\n'{quote(s.session)}$'\\n'*) r{i}=OK ;; *) [ -e {quote(s.job_dir)}/{STARTED} ] || "
            f"{{ {new} 2>/dev/null || {has} || {{ sleep 0.05; {new} 2>/dev/null; }} "
            f"|| {has} || {{ sleep 0.2; {new}; }} || {has}; }} && r{i}=OK ;; esac\n"
            f"fi\n"
            f"echo \"$r{i}\" {s.job_id}"
        )
    return "\n".join(parts) + "\n"


def parse_start(out: bytes) -> dict[int, bool]:
    result = {}
    for line in out.decode("utf-8", "replace").splitlines():
        word, _, job_id = line.partition(" ")
        if word in ("OK", "ERR") and job_id.isdigit():
            result[int(job_id)] = word == "OK"
    return result


def signal(*, job_dir: str, sig: str) -> str:
    """Send ``sig`` to the job's process group; fails when the job has no group yet."""
    d = quote(job_dir)
    return f'pg=$(cat {d}/{PID} 2>/dev/null) || exit 3\nkill -{quote(sig)} -- "-$pg"\n'


def kill(*, job_dir: str, session: str | None, grace: float) -> str:
    """SIGTERM the job's process group, SIGKILL it after ``grace`` seconds, remove the session
    (None: a session that is not the job's own, see ``core.jobs.warm``)."""
    d = quote(job_dir)
    steps = max(1, int(grace * 10))
    return (
        f"pg=$(cat {d}/{PID} 2>/dev/null) || pg=\n"
        f'if [ -n "$pg" ]; then\n'
        f'  kill -TERM -- "-$pg" 2>/dev/null\n'
        f"  for _ in $(seq {steps}); do kill -0 -- \"-$pg\" 2>/dev/null || break; sleep 0.1; done\n"
        f'  kill -KILL -- "-$pg" 2>/dev/null\n'
        # give the wrapper a moment to record the exit code before its session goes
        f"  for _ in $(seq 20); do [ -e {d}/{EXIT_CODE} ] && break; sleep 0.05; done\n"
        f"fi\n"
        + (f"{kill_session(session)}\n" if session else "")
    )


NUDGES = (0.2, 1, 3)
"""Seconds after which ``wait_done`` asks the tmux server for its sessions (each after the last)."""


def wait_done(done_channel: str) -> str:
    """Block until some job of this database finishes (see ``wrapper``), or until the process
    that runs this script dies (util-linux's setpriv, where there is one: a kill -9 of evopilot
    must not leave it waiting).

    A ``wait-for`` that reaches a tmux server whose last session has just ended (it is exiting,
    and its ``wait-for -S`` left with it) can wait until some other client comes (tmux 3.3a:
    ~1 in 100 such races, for ever): a few ``list-sessions`` after it began bring that client.
    They run beside it with their output away from the channel, whose end is the wait's."""
    wait = f"tmux wait-for {quote(done_channel)}"
    nudge = "; ".join(f"sleep {s}; kill -0 $$ 2>/dev/null || exit; tmux list-sessions" for s in NUDGES)
    return (f"( {nudge} ) </dev/null >/dev/null 2>&1 &\n"
            f"if command -v setpriv >/dev/null 2>&1; then exec setpriv --pdeathsig KILL {wait}; fi\n"
            f"exec {wait}\n")
