"""Shell text for everything a job does on its host, and parsers for what comes back.

Pure functions: each returns a bash script built with ``core.hosts.tmux.quote``. A job lives in
``<base>/jobs/<key>/`` with ``run.sh`` (the wrapper), ``log``, ``pid``, ``exit_code`` and
``results.json``; the files are the truth, so any evopilot process can reconcile any job.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.hosts.tmux import join, kill_session, list_sessions, new_session, quote

# Files in a job directory.
LOG, PID, EXIT_CODE, RESULTS, WRAPPER = "log", "pid", "exit_code", "results.json", "run.sh"
HANGUP = "hangup"  # present when the job's tmux session went away under it (SIGHUP)


def wrapper(
    *, job_id: int, job_dir: str, workdir: str, command: str, env: dict[str, str]
) -> str:
    """The bash wrapper a job's tmux session runs.

    It starts ``command`` as its own process group (``set -m``), records the group id in
    ``pid``, appends stdout+stderr to ``log`` (shown in the pane too), forwards INT/TERM/HUP to
    the group and writes the exit status to ``exit_code`` atomically (temp file + rename).
    """
    exports = "".join(f"export {k}={quote(v)}\n" for k, v in env.items())
    return f"""#!/usr/bin/env bash
# evopilot job {job_id}
set -u
D={quote(job_dir)}
finish() {{ printf '%s\\n' "$1" > "$D/{EXIT_CODE}.tmp" && mv -f "$D/{EXIT_CODE}.tmp" "$D/{EXIT_CODE}"; }}
export EVOPILOT_JOB_ID={quote(job_id)} EVOPILOT_JOB_DIR="$D" EVOPILOT_RESULTS="$D/{RESULTS}"
{exports}cd {quote(workdir)} 2>>"$D/{LOG}" || {{ finish 127; exit 127; }}
set -m
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
finish "$rc"
"""


def start(*, job_dir: str, session: str, wrapper_text: str) -> str:
    """Create the job directory, write the wrapper and start its session: idempotent.

    A job that already has a session or an exit code is left alone, so sending this twice
    (say, after a dropped link) never starts the job twice.
    """
    d = quote(job_dir)
    return (
        f"set -e\nmkdir -p {d} && chmod 700 {d}\n"
        f"if [ -e {d}/{EXIT_CODE} ]; then exit 0; fi\n"
        f"umask 077\n"
        f"[ -e {d}/{WRAPPER} ] || printf '%s' {quote(wrapper_text)} > {d}/{WRAPPER}\n"
        f": >> {d}/{LOG}\n"
        f"{new_session(session, join(['bash', job_dir + '/' + WRAPPER]))}\n"
    )


@dataclass(frozen=True, slots=True)
class Probe:
    """What a host says about one job in a monitor tick."""

    exit_code: int | None
    pgid: int | None
    log_size: int
    session_alive: bool
    hangup: bool = False


def probe(jobs: list[tuple[int, str, str]]) -> str:
    """One script reporting on every (job id, job dir, session): sessions, then a line per job."""
    lines = [f"{{ {list_sessions()}; }} | sed 's/^/S\\t/'"]
    for job_id, job_dir, _session in jobs:
        d = quote(job_dir)
        lines.append(
            f"printf 'J\\t%s\\t%s\\t%s\\t%s\\t%s\\n' {quote(job_id)} "
            f'"$(cat {d}/{EXIT_CODE} 2>/dev/null)" "$(cat {d}/{PID} 2>/dev/null)" '
            f'"$(stat -c %s {d}/{LOG} 2>/dev/null || echo 0)" "$([ -e {d}/{HANGUP} ] && echo 1)"'
        )
    return "\n".join(lines) + "\n"


def parse_probe(out: bytes, jobs: list[tuple[int, str, str]]) -> dict[int, Probe]:
    sessions: set[str] = set()
    rows: dict[int, tuple[str, str, str, str]] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if parts[0] == "S" and len(parts) == 2:
            sessions.add(parts[1])
        elif parts[0] == "J" and len(parts) == 6:
            rows[int(parts[1])] = (parts[2], parts[3], parts[4], parts[5])
    result = {}
    for job_id, _dir, session in jobs:
        code, pid, size, hangup = rows.get(job_id, ("", "", "0", ""))
        result[job_id] = Probe(
            exit_code=_int_or_none(code),
            pgid=_int_or_none(pid),
            log_size=_int_or_none(size) or 0,
            session_alive=session in sessions,
            hangup=hangup == "1",
        )
    return result


def _int_or_none(s: str) -> int | None:
    try:
        return int(s.strip())
    except ValueError:
        return None


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


def remove_session(session: str) -> str:
    return kill_session(session) + "\n"


def read_ranges(requests: list[tuple[str, int, int]]) -> str:
    """Print, for each (path, offset, limit), a length line then that many bytes of the file."""
    parts = []
    for path, offset, limit in requests:
        p = quote(path)
        parts.append(
            f"s=$(stat -c %s {p} 2>/dev/null || echo 0); n=$((s - {int(offset)}))\n"
            f"[ $n -lt 0 ] && n=0; [ $n -gt {int(limit)} ] && n={int(limit)}\n"
            f"printf '%d\\n' $n\n"
            f"[ $n -gt 0 ] && tail -c +{int(offset) + 1} {p} | head -c $n\n"
        )
    return "".join(parts) + "true\n"


def parse_read_ranges(out: bytes, count: int) -> list[bytes]:
    result: list[bytes] = []
    pos = 0
    for _ in range(count):
        nl = out.find(b"\n", pos)
        if nl < 0:
            result.append(b"")
            continue
        n = int(out[pos:nl] or b"0")
        chunk = out[nl + 1 : nl + 1 + n]
        result.append(chunk)
        pos = nl + 1 + len(chunk)
    return result
