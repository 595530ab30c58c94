"""A real single-node Slurm cluster for tests: fixtures ``slurm`` (one per test session) and
``slurm_factory`` (a private one, for tests that restart or break it).

Each ``SlurmCluster`` is munged, slurmctld and slurmd from the Debian packages, each run in the
foreground (``-D``/``-F``) as a child of this process, so it is stopped by its PID. Everything is
private: its own munge key and socket, its own ports, state and spool directories, all under a
short temporary directory (munged's and slurmstepd's AF_UNIX sockets are limited to 108 bytes).
Client commands (sbatch, squeue, scancel) need ``SLURM_CONF``: ``env()`` gives it, and
``host_config()`` puts it in the host's ``env``, which evopilot exports to Slurm's commands.

The node advertises 16 CPUs on this 2-CPU machine (``SlurmdParameters=config_overrides``), and
the scheduler runs on slurmctld's 1-second tick (``batch_sched_delay=0``): see
``/work/shared/notes-slurm.md`` for the facts behind each line of ``slurm.conf``.

If the cluster cannot start, the fixture fails (``pytest.fail`` with the daemons' logs); it
never skips.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evopilot.core.config import HostConfig

__all__ = ["SlurmCluster", "slurm", "slurm_factory"]

NODE = "node1"
PARTITION = "debug"
CPUS = 16


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _conf(d: Path, ctld_port: int, slurmd_port: int) -> str:
    return f"""ClusterName=evp
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.sock
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={d}/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={d}/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SlurmdParameters=config_overrides
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=3600
KillWait=2
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={NODE} CPUs={CPUS} RealMemory=4000 State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


class SlurmCluster:
    """One private cluster. Attributes: dir, conf (the slurm.conf path), node, partition."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        self.conf = root / "slurm.conf"
        self.node, self.partition = NODE, PARTITION
        self.procs: dict[str, subprocess.Popen] = {}
        ctld_port, slurmd_port = _free_ports(2)
        for sub, mode in (("munge", 0o755), ("state", 0o700), ("spool", 0o700), ("log", 0o755),
                          ("run", 0o755)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(root / sub, mode)
        for parent in (root.parent, root):  # munged: every directory above its socket a+x
            os.chmod(parent, 0o755)
        self.conf.write_text(_conf(root, ctld_port, slurmd_port))
        (root / "plugstack.conf").write_text("")
        self._run(["mungekey", "-c", "-k", str(root / "munge" / "munge.key")])

    # -- what tests need -------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for running Slurm's client commands against this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def host_config(self, **overrides) -> HostConfig:
        """A Slurm host on this machine (the Slurm commands run here), jobs in ``base_dir``."""
        values: dict = dict(kind="slurm", local=True, partition=self.partition,
                            env={"SLURM_CONF": str(self.conf)})
        values.update(overrides)
        return HostConfig(**values)

    def cmd(self, *args: str, check: bool = True) -> str:
        """Run a Slurm client command (``squeue``, ``scancel``...) against this cluster."""
        res = subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def state(self, slurm_id: str) -> str:
        """The job's state as squeue shows it (finished jobs included)."""
        return self.cmd("squeue", "-h", "--states=all", "-j", slurm_id, "-o", "%T").strip()

    def log(self, name: str = "slurmctld") -> str:
        """A daemon's log file (``NAME.out``: what it printed)."""
        try:
            return (self.dir / "log" / (name if "." in name else f"{name}.log")).read_text(errors="replace")
        except OSError:
            return ""

    # -- lifecycle -------------------------------------------------------------------------

    def _run(self, argv: list[str]) -> None:
        res = subprocess.run(argv, capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed: {res.stderr.strip()}", pytrace=False)

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.dir / "log" / f"{name}.out", "ab") as out:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env(),
                start_new_session=True)

    def start(self, timeout: float = 30.0) -> None:
        d = self.dir
        self._spawn("munged", ["munged", "-F", f"--socket={d}/munge/munge.sock",
                               f"--key-file={d}/munge/munge.key", f"--pid-file={d}/run/munged.pid",
                               f"--log-file={d}/log/munged.log", f"--seed-file={d}/munge/munged.seed"])
        self._wait(lambda: (d / "munge" / "munge.sock").exists(), timeout, "munged's socket")
        self.start_slurmctld(timeout)
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", NODE])
        self._wait(lambda: self._node_state() == "idle", timeout, "the node idle")
        # slurmctld's first scheduling pass comes ~3 s after its start: wait for it, so that a
        # test's first job does not wait for it (and its timings mean something)
        self._wait(lambda: "SchedulerParameters=" in self.log(), timeout, "the first scheduling pass")

    def start_slurmctld(self, timeout: float = 30.0, *, clear: bool = False) -> None:
        """Start slurmctld (again, after ``kill_slurmctld``: it recovers its saved state, or
        with ``clear`` forgets every job, as after the loss of its state directory)."""
        self._spawn("slurmctld", ["slurmctld", "-D", *(["-c"] if clear else []), "-f", str(self.conf)])
        self._wait(lambda: subprocess.run(["scontrol", "ping"], env=self.env(), capture_output=True,
                                          text=True).stdout.count("UP") > 0,
                   timeout, "slurmctld answering")

    def kill_slurmctld(self) -> None:
        """SIGKILL slurmctld (running jobs live on under slurmstepd)."""
        proc = self.procs.pop("slurmctld")
        proc.kill()
        proc.wait()

    def _node_state(self) -> str:
        res = subprocess.run(["sinfo", "-h", "-n", NODE, "-o", "%T"], env=self.env(),
                             capture_output=True, text=True)
        return res.stdout.strip()

    def _wait(self, cond, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > end:
                why = f"{', '.join(dead)} exited" if dead else f"not within {timeout:g}s"
                logs = "\n".join(f"--- {n}:\n{self._tail(n)}" for n in ("munged", "slurmctld", "slurmd"))
                self.stop()
                pytest.fail(f"Slurm test cluster: waiting for {what}: {why}\n{logs}", pytrace=False)
            time.sleep(0.05)

    def _tail(self, name: str) -> str:
        text = self.log(name) + self.log(f"{name}.out")
        return "\n".join(text.splitlines()[-15:])

    def stop(self) -> None:
        """Cancel every job (slurmstepd outlives slurmd), then stop the daemons by PID."""
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            me = getpass.getuser()
            for argv in (["scancel", "--full", "--signal=KILL", "--state=RUNNING", "-u", me],
                         ["scancel", "-u", me]):
                try:  # scancel retries a job in transition for ~90 s: the daemons go anyway
                    subprocess.run(argv, env=self.env(), capture_output=True, timeout=15)
                except subprocess.TimeoutExpired:
                    pass
            end = time.monotonic() + 10
            while time.monotonic() < end and self.cmd("squeue", "-h", "-t", "running,completing",
                                                      check=False).strip():
                time.sleep(0.1)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in self._steps():  # left by a test that stopped slurmctld: they wait for it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _steps(self) -> list[int]:
        """slurmstepd processes of this cluster (they carry its SLURM_CONF; orphans of PID 1)."""
        mine = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/comm", "rb") as f:
                    if f.read().strip() != b"slurmstepd":
                        continue
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if mine in f.read().split(b"\0"):
                        pids.append(int(entry))
            except (OSError, ValueError):
                continue
        return pids


def _make(tmp: Path, n: int) -> SlurmCluster:
    cluster = SlurmCluster(tmp / f"c{n}")
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """One cluster for the whole test session: tests share it (each has its own evopilot
    database, so its own job names); a test that breaks the cluster uses ``slurm_factory``."""
    tmp = Path(tempfile.mkdtemp(prefix="evs-"))  # short: AF_UNIX paths
    cluster = None
    try:
        cluster = _make(tmp, 0)
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def slurm_factory() -> Iterator:
    """Call it to get a private running cluster (stopped when the test ends)."""
    tmp = Path(tempfile.mkdtemp(prefix="evs-"))
    clusters: list[SlurmCluster] = []

    def make() -> SlurmCluster:
        clusters.append(_make(tmp, len(clusters)))
        return clusters[-1]

    try:
        yield make
    finally:
        for c in clusters:
            c.stop()
        shutil.rmtree(tmp, ignore_errors=True)
