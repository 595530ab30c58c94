"""Shell text for everything a job does on its host, and parsers for what comes back.

Pure functions: each returns a bash script built with ``core.quoting.quote``. A job lives in
``<base>/jobs/<key>/`` with ``run.sh`` (the wrapper), ``log``, ``pid``, ``exit_code`` and
``results.json``; the files are the truth, so any evopilot process can reconcile any job.
"""

from __future__ import annotations

from dataclasses import dataclass

from evopilot.core.hosts.probe import EXIT_CODE, HANGUP, LOG, PID
from evopilot.core.hosts.tmux import has_session, kill_session, new_session
from evopilot.core.quoting import join, quote

# Files in a job directory (besides those the monitor's probe reads, see core.hosts.probe).
RESULTS, WRAPPER = "results.json", "run.sh"


def wrapper(
    *, job_id: int, job_dir: str, workdir: str, command: str, env: dict[str, str],
    done_channel: str, mode: str = "batch",
) -> str:
    """The bash wrapper a job's tmux session runs.

    Either mode starts ``command`` as its own process group (``set -m``), records the group id
    in ``pid``, appends its output to ``log``, writes the exit status to ``exit_code``
    atomically (temp file + rename), then wakes ``tmux wait-for done_channel`` so a watching
    engine reacts at once. ``batch``: see ``_batch``; ``tty``: see ``_tty``.
    """
    if mode not in ("batch", "tty"):
        raise ValueError(f"unknown wrapper mode {mode!r}")
    exports = "".join(f"export {k}={quote(v)}\n" for k, v in env.items())
    body = _batch(command) if mode == "batch" else _tty(job_id, job_dir, command)
    return f"""#!/usr/bin/env bash
# evopilot job {job_id}
set -u
D={quote(job_dir)}
finish() {{ printf '%s\\n' "$1" > "$D/{EXIT_CODE}.tmp" && mv -f "$D/{EXIT_CODE}.tmp" "$D/{EXIT_CODE}"; }}
export EVOPILOT_JOB_ID={quote(job_id)} EVOPILOT_JOB_DIR="$D" EVOPILOT_RESULTS="$D/{RESULTS}"
{exports}cd {quote(workdir)} 2>>"$D/{LOG}" || {{ finish 127; exit 127; }}
{body}finish "$rc"
tmux wait-for -S {quote(done_channel)} 2>/dev/null
"""


def _batch(command: str) -> str:
    """stdin from /dev/null, stdout+stderr to ``log`` (shown in the pane by ``tail``);
    INT/TERM/HUP sent to the wrapper are forwarded to the group, a HUP also noted."""
    return f"""set -m
bash -c {quote(command)} </dev/null >>"$D/{LOG}" 2>&1 &
child=$!
set +m
printf '%s\\n' "$child" > "$D/{PID}.tmp" && mv -f "$D/{PID}.tmp" "$D/{PID}"
trap 'kill -INT -- -$child 2>/dev/null' INT
trap 'kill -TERM -- -$child 2>/dev/null' TERM
trap ': > "$D/{HANGUP}"; kill -HUP -- -$child 2>/dev/null' HUP
tail -n +1 -f --pid="$child" "$D/{LOG}" 2>/dev/null &
while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break  # wait was cut short by a trapped signal
done
"""


# Run in the foreground by the tty wrapper: record its own process group (it leads it), then run
# the command. Arguments: the job directory, the command.
_TTY_LAUNCH = f'printf "%s\\n" "$$" > "$1/{PID}.tmp" && mv -f "$1/{PID}.tmp" "$1/{PID}" && exec bash -c "$2"'


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


def start(specs: list[StartSpec]) -> str:
    """Create each job's directory, write its wrapper and start its session: one script for
    all, printing ``OK <id>`` or ``ERR <id>`` per job.

    Idempotent: a job that already has an exit code or a session is left alone, so sending
    this twice (say, after a dropped link) never starts a job twice.

    A tmux server whose last session has just ended exits: a ``new-session`` that reached it
    then fails ("server exited unexpectedly"), and is tried once more, which starts a new server.
    """
    parts = ["umask 077"]
    for s in specs:
        d = quote(s.job_dir)
        start = new_session(s.session, join(['bash', s.job_dir + '/' + WRAPPER]))
        parts.append(
            f"if [ -e {d}/{EXIT_CODE} ]; then echo OK {s.job_id}\n"
            f"elif mkdir -p {d} && {{ [ -e {d}/{WRAPPER} ] || printf '%s' {quote(s.wrapper)} > {d}/{WRAPPER}; }} "
            f"&& : >> {d}/{LOG} && {{ {start} || {{ ! {has_session(s.session)} && sleep 0.05 && {start}; }}; }}; "
            f"then echo OK {s.job_id}\n"
            # already started by an earlier attempt: the session is there
            f"elif {has_session(s.session)}; then echo OK {s.job_id}\n"
            f"else echo ERR {s.job_id}\nfi"
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


def kill(*, job_dir: str, session: str, grace: float) -> str:
    """SIGTERM the job's process group, SIGKILL it after ``grace`` seconds, remove the session."""
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
        f"{kill_session(session)}\n"
    )


def wait_done(done_channel: str) -> str:
    """Block until some job of this database finishes (see ``wrapper``), or until the process
    that runs this script dies (util-linux's setpriv, where there is one: a kill -9 of evopilot
    must not leave it waiting)."""
    wait = f"tmux wait-for {quote(done_channel)}"
    return (f"if command -v setpriv >/dev/null 2>&1; then exec setpriv --pdeathsig KILL {wait}; fi\n"
            f"exec {wait}\n")
