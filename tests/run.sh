#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite: bash tests/run.sh [pytest args]
# System packages (tmux, openssh-server, rsync, git, Slurm and munge) come from apt-get when missing and root;
# Python packages go into .venv from pyproject's [test] extra.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v tmux >/dev/null || missing+=(tmux)
command -v git >/dev/null || missing+=(git)
command -v rsync >/dev/null || missing+=(rsync)
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null || missing+=(openssh-server)
# a private single-node Slurm cluster (tests/slurm.py)
[ -x /usr/sbin/slurmctld ] || command -v slurmctld >/dev/null || missing+=(slurmctld)
[ -x /usr/sbin/slurmd ] || command -v slurmd >/dev/null || missing+=(slurmd)
command -v sbatch >/dev/null || missing+=(slurm-client)
[ -x /usr/sbin/munged ] || command -v munged >/dev/null || missing+=(munge)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
  else
    echo "tests/run.sh: missing ${missing[*]}: install them (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 2
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' </dev/null
# tests run real `uv` (and jobs started by tests find it too): put the venv's tools first
export PATH="$PWD/.venv/bin:$PATH"
# the tests mostly wait (on jobs, sshd outages, Slurm's minute-long limits): four workers on
# two cores finish in a fraction of the time (`-n 0` in the arguments runs them in this process)
exec .venv/bin/python -m pytest -n 4 "$@"
