"""A warm evaluation slot: a long-lived Python of a project's environment, in a tmux session of
its own, that runs evaluation jobs without a tmux session, a bash wrapper or an interpreter
start-up per job (see ``core.jobs.warm``, which starts it and sends it jobs).

Run by the environment's own python as ``python warm_runner.py FIFO``; stdlib only, and nothing
of any candidate is imported here: it imports nothing from the project or its packages before it
forks. Each line on the FIFO is a job (JSON, see ``core.jobs.warm.line``). Each goes to a
*wrapper* the runner forked ahead of it (waiting on a pipe: a start costs no fork), that keeps
the bash wrapper's contract (``core.jobs.scripts.wrapper``): it is in a session of its own (it
outlives this runner and its tmux session), creates ``started_at`` exclusively (a job sent
twice runs once), records its pid in ``wrapper_pid`` (the job is alive while it runs:
``core.hosts.local``), forks the job as the leader of its own process group, records the group
in ``pid``, forwards INT/TERM/HUP to the group, and writes ``finished_at``, then ``exit_code``
in one write, then wakes the engines through their FIFO.
The job process is a fork of this interpreter made fresh for the benchmark: ``__main__`` is the
benchmark, run as ``runpy.run_path`` runs a file, with its argv, its working directory, the
environment and ``sys.path`` that ``environments.run_command`` gives a new interpreter, stdin
from /dev/null and stdout and stderr to the job's ``log``. It exits without the interpreter's
teardown, after what a normal exit does first: non-daemon threads, ``atexit`` handlers, then
``__main__``'s globals cleared (a file left open there is closed and written), a collection
and a flush.

Unlike a new interpreter, every job of a slot shares the runner's hash seed (``str`` hashes,
set order), and interpreter options set by environment variables at start-up do not apply:
``core.jobs.warm`` sends no job whose host sets a ``PYTHON*`` variable.
"""

from __future__ import annotations

import atexit
import gc
import io
import json
import os
import select
import signal
import stat
import sys
import time
import traceback
import types

# The job directory's files (core.hosts.probe, core.jobs.scripts): this file imports nothing of
# evopilot (it runs in the project's environment), the engine's tests check they agree.
LOG, PID, EXIT_CODE, STARTED, FINISHED = "log", "pid", "exit_code", "started_at", "finished_at"
HANGUP, NOSPACE, RESULTS, WARM_WRAPPER = "hangup", "nospace", "results.json", "wrapper_pid"
# sys.path as this interpreter started, less this file's own directory: a job's sys.path is the
# benchmark's directory, the import roots, then these (what a new interpreter would have).
BASE_PATH = sys.path[1:]


IDLE = 600.0
"""Seconds without a job after which the runner leaves (the next job starts a new one)."""


def main(fifo: str) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the wrappers are reaped by the kernel
    fd = os.open(fifo, os.O_RDWR)  # read-write: no end-of-file between writers
    buf = b""
    spare = fork_spare(fd)
    while True:
        if not select.select([fd], [], [], IDLE)[0]:
            # idle: new starts find no FIFO (and start a new runner); lines already in it run
            os.unlink(fifo)
            os.set_blocking(fd, False)
            try:
                buf += os.read(fd, 65536)
            except BlockingIOError:
                pass
            run_lines(buf + b"\n", fd, spare)
            return  # the spare left reads end-of-file and exits
        buf += os.read(fd, 65536)
        buf, spare = run_lines(buf, fd, spare)


def run_lines(buf: bytes, fifo_fd: int, spare: int | None) -> tuple[bytes, int | None]:
    """Hand the job of each whole line to the spare wrapper, forking the next spare after it;
    returns what is left of a line, and the spare now waiting."""
    *lines, rest = buf.split(b"\n")
    for line in lines:
        if not line:
            continue
        if spare is None:
            spare = fork_spare(fifo_fd)
            if spare is None:
                continue  # no fork: the engine sees the job never started and queues it again
        try:
            os.write(spare, line)  # at most PIPE_BUF (core.jobs.warm): one write, never partial
        except OSError:
            pass  # the spare was killed: the engine sees the job never started, as above
        os.close(spare)
        spare = fork_spare(fifo_fd)
    return rest, spare


def fork_spare(fifo_fd: int) -> int | None:
    """A wrapper forked before its job, waiting for the job's line on a pipe, in a session of
    its own already: a job's start then costs a write and a wake-up, not a fork, a ``setsid``
    and the pages they copy (~1 ms of the ~2.5 ms of a start). Returns the pipe's write end
    (closed without a line, this runner's exit included, it ends the spare); None: no fork."""
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:
        try:
            os.close(fifo_fd)  # the job must not keep the FIFO open after this runner
            os.close(w)
            detach()
            line = b""
            while chunk := os.read(r, 65536):
                line += chunk
            os.close(r)
            try:
                spec = json.loads(line)
            except ValueError:
                return  # end-of-file (the runner left), or not a job
            wrapper(spec)
        finally:
            os._exit(0)
    os.close(r)
    return w


def detach() -> None:
    """What a wrapper does before it knows its job (a spare does it while it waits)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    os.umask(0o077)
    null = os.open(os.devnull, os.O_RDWR)  # not the runner's pane
    for i in (0, 1, 2):
        os.dup2(null, i)
    os.close(null)
    json.loads('{"warm": ["the pages a parse touches, copied now"]}')


def wrapper(spec: dict) -> None:
    d = spec["job_dir"]
    try:  # exclusive: a second start of the job leaves at once
        fd = os.open(f"{d}/{STARTED}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    _write_fd(fd, _now())
    _write(f"{d}/{WARM_WRAPPER}", f"{os.getpid()}\n")  # the job is alive while this process is
    reserved = f"{d}/{EXIT_CODE}.reserved"
    try:
        _write(reserved, " " * 16 + "\n")
    except OSError:
        _touch(f"{d}/{NOSPACE}")
    log = os.open(f"{d}/{LOG}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 2)  # this wrapper's own errors, if any, in the job's log
    try:
        os.chdir(spec["workdir"])
    except OSError as e:
        os.write(log, f"cd: {spec['workdir']}: {e.strerror}\n".encode())
        _finish(d, 127, reserved, spec["wake"])
        return
    child = os.fork()
    if child == 0:
        try:
            job(spec, log)
        finally:
            os._exit(1)
    try:
        os.setpgid(child, child)
    except OSError:
        pass  # the child did it first, or has already ended
    _write(f"{d}/{PID}.tmp", f"{child}\n")
    os.replace(f"{d}/{PID}.tmp", f"{d}/{PID}")

    def forward(sig, _frame):
        if sig == signal.SIGHUP:
            _touch(f"{d}/{HANGUP}")
        try:
            os.killpg(child, sig)
        except OSError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    _, status = os.waitpid(child, 0)  # retried after a forwarded signal (PEP 475)
    rc = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    _finish(d, rc, reserved, spec["wake"])


def job(spec: dict, log: int) -> None:
    """The benchmark, in this forked interpreter as a new one would run it; never returns."""
    # The runner's objects, inherited, are left out of collections from here on: the one at
    # the end then walks only the benchmark's objects (walking the runner's too wrote to every
    # page of the inherited heap, copying each: ~4 ms per job)
    gc.freeze()
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    d, env_dir, bench = spec["job_dir"], spec["env_dir"], spec["argv"][0]
    env = dict(os.environ)
    env.update(spec["env"])
    env.update(EVOPILOT_JOB_ID=str(spec["job_id"]), EVOPILOT_JOB_DIR=d,
               EVOPILOT_RESULTS=f"{d}/{RESULTS}", VIRTUAL_ENV=env_dir,
               PATH=f"{env_dir}/bin:{env.get('PATH', '')}",
               PYTHONPATH=":".join(spec["roots"] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])))
    os.environ.clear()
    os.environ.update(env)
    sys.argv = list(spec["argv"])
    sys.orig_argv = [sys.executable, *spec["argv"]]
    sys.path[:] = [os.path.dirname(os.path.abspath(bench)), *spec["roots"], *BASE_PATH]
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)))
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                                   errors="backslashreplace", line_buffering=True)
    import importlib
    importlib.invalidate_caches()
    code = 0
    if not os.path.isfile(bench):  # as a new interpreter says it
        print(f"{sys.executable}: can't open file {os.path.abspath(bench)!r}: [Errno 2] No such file or directory",
              file=sys.stderr)
        _flush()
        os._exit(2)
    main = types.ModuleType("__main__")
    try:
        _run_main(main, bench)
    except SystemExit as e:
        code = _exit_code(e.code)
    except KeyboardInterrupt:  # as a new interpreter: the traceback, then die of SIGINT
        _print_exc()
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        _print_exc()
        code = 1
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()  # non-daemon threads, as at a normal exit
    atexit._run_exitfuncs()
    # As a shutdown clears __main__: each value let go in turn, so a file left open is closed
    # with its layers in order (a collection of the module's cycle could close the raw file
    # before the text layer above it is flushed, and lose what it held)
    for name in [n for n in main.__dict__ if n != "__builtins__"]:
        main.__dict__[name] = None
    gc.collect()  # what is left in cycles
    _flush()
    os._exit(code)


def _run_main(main: types.ModuleType, path: str) -> None:
    """``runpy.run_path(path, run_name="__main__")`` for a file, in ``main`` (kept: its globals
    are cleared at the end)."""
    with io.open_code(path) as f:
        code = compile(f.read(), path, "exec")
    sys.modules["__main__"] = main
    main.__dict__.update(__name__="__main__", __file__=path, __cached__=None, __doc__=None,
                         __loader__=None, __package__="", __spec__=None)
    exec(code, main.__dict__)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _print_exc() -> None:
    """The traceback without this file's frames."""
    etype, value, tb = sys.exc_info()
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(etype, value, tb)


def _flush() -> None:
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass


def _finish(d: str, rc: int, reserved: str, wake: str) -> None:
    try:
        _write(f"{d}/{FINISHED}", _now())
    except OSError:
        pass
    try:
        _write(f"{d}/{EXIT_CODE}", f"{rc}\n")
    except OSError:  # a full disk: in place, in the file reserved at the start
        _touch(f"{d}/{NOSPACE}")
        try:
            fd = os.open(reserved, os.O_WRONLY)
            os.write(fd, f"{rc:<16}\n".encode())
            os.close(fd)
            os.replace(reserved, f"{d}/{EXIT_CODE}")
        except OSError:
            pass
    if wake and _is_fifo(wake):
        try:
            fd = os.open(wake, os.O_RDWR | os.O_NONBLOCK)  # read-write: never blocks
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
        except OSError:
            pass
    try:
        os.unlink(reserved)
    except OSError:
        pass


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _now() -> str:
    return f"{time.time():.6f}\n"


def _write(path: str, text: str) -> None:
    _write_fd(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), text)


def _write_fd(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _touch(path: str) -> None:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        pass


if __name__ == "__main__":
    main(sys.argv[1])
