"""Submitting jobs to a Slurm host (``core.hosts.slurm``): the ``sbatch`` script for a batch of
jobs, single or as job arrays, and its parser. Pure; quoted with ``core.quoting``."""

from __future__ import annotations

from evopilot.core.config import HostConfig
from evopilot.core.hosts.probe import LOG
from evopilot.core.hosts.slurm import SLURM_ID, TASK_OUT, sbatch_argv
from evopilot.core.jobs import scripts
from evopilot.core.quoting import join, quote

SBATCH_ERR = "sbatch.err"


ARRAY_MIN = 2
"""Jobs of the same shape (the same sbatch options) submitted together go as one job array
from this many on."""


def submit(cfg: HostConfig, specs: list[scripts.StartSpec], arrays_dir: str = "") -> str:
    """Write each job's directory and wrapper and ``sbatch`` it: one script for all, printing
    ``OK <id> <slurm id>`` or ``ERR <id> <sbatch's error>`` per job. Each job's ``env`` file
    comes on stdin after the host's (see ``scripts.start``).

    With ``arrays_dir``, jobs of the same shape (``ARRAY_MIN`` or more) go as one job array
    (``array``); a job array Slurm refuses falls back to one ``sbatch`` per job. Idempotent: a
    job with a ``slurm_id`` is not submitted again."""
    # builtins only per job (a fork costs ~4 ms on a busy login node, x 100 jobs)
    parts = ["umask 077", f"mkdir -p {join(s.job_dir for s in specs)}"]
    for s in specs:
        n = len(s.env.encode())
        parts.append(f"e=; [ {n} -eq 0 ] || LC_ALL=C IFS= read -r -N {n} e")
        d = quote(s.job_dir)
        # the env, wrapper (once) and empty log
        parts.append(f"p_{s.job_id}=; printf '%s' \"$e\" > {d}/{scripts.ENV} "
                     f"&& {scripts.wrapper_once(d, s.wrapper)} && : >> {d}/{LOG} && p_{s.job_id}=1")
    if arrays_dir:
        for group in _shapes(specs):
            if len(group) >= ARRAY_MIN:
                parts.append(array(cfg, group, arrays_dir))
    for s in specs:
        d = quote(s.job_dir)
        sbatch = join(sbatch_argv(cfg, name=s.session, job_dir=s.job_dir, timeout_s=s.timeout_s,
                                  script=f"{s.job_dir}/{scripts.WRAPPER}"))
        parts.append(
            f"id=; read -r id < {d}/{SLURM_ID} 2>/dev/null\n"
            f"if [ -n \"$id\" ]; then echo OK {s.job_id} \"$id\"\n"
            f"elif [ -n \"$p_{s.job_id}\" ] && id=$({sbatch} 2>{d}/{SBATCH_ERR}) && id=${{id%%;*}} && [ -n \"$id\" ] "
            f"&& printf '%s\\n' \"$id\" > {d}/{SLURM_ID}; then echo OK {s.job_id} \"$id\"\n"
            f"else echo ERR {s.job_id} \"$(tail -n 1 {d}/{SBATCH_ERR} 2>/dev/null || echo cannot write {d})\"\nfi"
        )
    return "\n".join(parts) + "\n"


def _shapes(specs: list[scripts.StartSpec]) -> list[list[scripts.StartSpec]]:
    """The jobs grouped by their sbatch options (all but name and paths: the timeout)."""
    groups: dict[float | None, list[scripts.StartSpec]] = {}
    for s in specs:
        groups.setdefault(s.timeout_s, []).append(s)
    return list(groups.values())


def array(cfg: HostConfig, group: list[scripts.StartSpec], arrays_dir: str) -> str:
    """Shell text submitting ``group`` (their directories written) as one job array, unless one
    of them was submitted before (a start sent again). Task ``i`` runs the wrapper of the
    ``i``-th job (its directory is line ``i`` of the array's ``dirs``), and each job's
    ``slurm_id`` is ``<array id>_<i>``. Slurm's own lines for task ``i`` ("CANCELLED ... DUE TO
    TIME LIMIT") go to the array's ``i.out``, which the job's ``task_out`` names: the probe
    appends them to the job's log once it has ended (``core.hosts.slurm.probe``; a link per
    job would cost a process each)."""
    a = f"{arrays_dir}/{group[0].session}"
    qa = quote(a)
    runner = ('#!/usr/bin/env bash\n'
              f'D=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {qa}/dirs)\n'
              'exec bash "$D/run.sh"\n')
    argv = sbatch_argv(cfg, name=group[0].session, job_dir=a, timeout_s=group[0].timeout_s,
                       script=f"{a}/{scripts.WRAPPER}")
    argv = [w.replace(f"{a}/{LOG}", f"{a}/%a.out") for w in argv[:-1]] + [f"--array=0-{len(group) - 1}", argv[-1]]
    ids = join(f"{s.job_dir}/{SLURM_ID}" for s in group)
    ready = " && ".join(f'[ -n "$p_{s.job_id}" ]' for s in group)
    dirs = "".join(f"{s.job_dir}\n" for s in group)
    marks = "\n".join(f"  printf '%s\\n' {quote(f'{a}/{i}.out')} > {quote(s.job_dir + '/' + TASK_OUT)}\n"
                      f"  printf '%s\\n' \"${{id}}_{i}\" > {quote(s.job_dir + '/' + SLURM_ID)}"
                      for i, s in enumerate(group))
    return (
        f'if [ -z "$(cat {ids} 2>/dev/null)" ] && {ready} && mkdir -p {qa} '
        f"&& printf '%s' {quote(dirs)} > {qa}/dirs "
        f"&& printf '%s' {quote(runner)} > {qa}/{scripts.WRAPPER} "
        f'&& id=$({join(argv)} 2>{qa}/{SBATCH_ERR}) && id=${{id%%;*}} && [ -n "$id" ]; then\n'
        f"{marks}\nfi"
    )


def parse_submit(out: bytes) -> dict[int, scripts.Started]:
    result = {}
    for line in out.decode("utf-8", "replace").splitlines():
        word, _, rest = line.partition(" ")
        job_id, _, detail = rest.partition(" ")
        if word in ("OK", "ERR") and job_id.isdigit():
            ok = word == "OK"
            result[int(job_id)] = scripts.Started(ok, detail.strip() or "sbatch failed",
                                                  detail.strip() if ok else None)
    return result
