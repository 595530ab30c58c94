"""``evopilot doctor``: what a host has and lacks, each with a fix.

For an SSH host, in order: reachable (TCP), host key known, authentication, base_dir; then, in
one round trip, tmux, uv, rsync, python, free disk under base_dir and the configured env paths.
A failed fatal check (the first four) marks every later one as not run. The local host gets
the same list without the first three. A Slurm host (no tmux check) then gets Slurm's: its
partition in ``sinfo``, and a tiny test job submitted and awaited end to end, reporting from its
compute node whether ``base_dir`` is shared there and uv is there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass

from evopilot.core.config import HostConfig
from evopilot.core.errors import EvopilotError
from evopilot.core.hosts.base import Host
from evopilot.core.quoting import quote

MIN_FREE_BYTES = 1 << 30
"""Less free space than this under base_dir fails the disk check."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    ran: bool = True
    """False when an earlier fatal check failed and this one was skipped (``ok`` is False)."""


HostFactory = Callable[[str, HostConfig], Host]


def _not_run(names: list[str], because: str) -> list[Check]:
    return [Check(n, False, f"not run: {because}", None, ran=False) for n in names]


def _env_paths(config: HostConfig) -> list[tuple[str, str]]:
    """(variable, path) for env values that are absolute paths (PATH-like lists split)."""
    out = []
    for key, value in config.env.items():
        parts = value.split(":")
        if value.startswith("/") and all(p.startswith("/") for p in parts):
            out += [(key, p) for p in parts]
    return out


def _word(path: str) -> str:
    """A command or path for the probe script: ``~/`` is the host's $HOME."""
    if path.startswith("~/"):
        return '"$HOME"/' + quote(path[2:])
    return quote(path)


def probe_script(config: HostConfig, base_dir: str) -> str:
    """One script printing ``key<TAB>status<TAB>first line of output`` per probe."""
    b = quote(base_dir)
    py = "import sys; print('Python %d.%d.%d' % sys.version_info[:3])"
    write = ': > "$1/.evp-doctor" && rm -f "$1/.evp-doctor"'
    free = 'df -Pk -- "$1" | awk "NR==2 {print \\$4}"'
    lines = [
        "probe() { k=$1; shift; o=$(\"$@\" 2>&1 </dev/null); r=$?; "
        "printf '%s\\t%s\\t%s\\n' \"$k\" \"$r\" "
        "\"$(printf '%s\\n' \"$o\" | head -n1 | tr '\\t' ' ')\"; }",
        "probe tmux tmux -V",
        f"probe uv {_word(config.uv_path)} --version",
        "probe rsync rsync --version",
        f"probe python {_word(config.python)} -c {quote(py)}",
        f"probe write sh -c {quote(write)} sh {b}",
        f"probe disk sh -c {quote(free)} sh {b}",
    ]
    for i, (_key, path) in enumerate(_env_paths(config)):
        lines.append(f"probe env{i} test -e {_word(path)}")
    return "\n".join(lines) + "\ntrue\n"


def parse_probe(out: bytes) -> dict[str, tuple[int, str]]:
    result = {}
    for line in out.decode("utf-8", "replace").splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3 and parts[1].isdigit():
            result[parts[0]] = (int(parts[1]), parts[2].strip())
    return result


async def _tcp_check(host: str, port: int, timeout: float) -> str | None:
    """None when ``host``:``port`` accepts a TCP connection, else why not."""
    try:
        async with asyncio.timeout(timeout):
            _r, w = await asyncio.open_connection(host, port)
    except socket.gaierror as e:
        return f"cannot resolve {host!r}: {e.strerror}"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:g}s"
    except OSError as e:
        why = os.strerror(e.errno).lower() if e.errno else str(e)
        return f"cannot connect to {host}:{port}: {why}"
    w.close()
    try:
        await w.wait_closed()
    except OSError:
        pass
    return None


async def doctor(name: str, config: HostConfig, host_factory: HostFactory) -> list[Check]:
    """Check host ``name``; ``host_factory(name, config)`` makes the (unconnected) host."""
    host = host_factory(name, config)
    try:
        checks = await _tools(name, config, host, []) if host.is_local else await _ssh(name, config, host)
        if config.kind == "slurm":
            checks += await _slurm(name, config, host, checks)
        return checks
    finally:
        try:
            await host.close()
        except Exception:  # noqa: BLE001 - closing a half-open host must not hide the report
            pass


async def _ssh(name: str, config: HostConfig, host: Host) -> list[Check]:
    from evopilot.core.hosts.ssh import (
        HostConnectError,
        check_host_key,
        key_fix,
        key_status,
        resolve_target,
    )

    ssh_config = getattr(host, "ssh_config", None)
    checks: list[Check] = []
    later = ["host key", "authentication", "base_dir", *_tool_names(config)]
    try:
        target = resolve_target(name, config, ssh_config=ssh_config)
    except EvopilotError as e:
        return [Check("reachable", False, e.message, f"fix hosts.{name}.hostname / user")] + (
            _not_run(later, "the host address is not valid")
        )
    where = f"{target.host}:{target.port}"

    # 1. reachable
    if target.proxy:
        checks.append(Check("reachable", True, f"through {target.proxy} (not checked directly)"))
    else:
        why = await _tcp_check(target.host, target.port, config.connect_timeout)
        if why is not None:
            checks.append(
                Check(
                    "reachable", False, why,
                    f"check hosts.{name}.hostname/port (or ~/.ssh/config), that sshd runs on "
                    f"{where} and that no firewall blocks it",
                )
            )
            return checks + _not_run(later, "the host is not reachable")
        checks.append(Check("reachable", True, f"{where} accepts connections"))
    later.pop(0)

    # 2. host key
    if target.proxy:
        checks.append(Check("host key", True, "checked when connecting (through a proxy)"))
    else:
        hk = await check_host_key(name, config, ssh_config=ssh_config)
        if hk.status in ("known", "ca"):
            detail = f"{hk.seen} is in known_hosts" if hk.status == "known" else (
                f"{hk.seen}: a certificate authority is trusted"
            )
            checks.append(Check("host key", True, detail))
        else:
            words = {"unknown": "not in known_hosts", "changed": "CHANGED: it does not match "
                     "known_hosts (possible attack)"}
            # an unavailable key's ``seen`` already says why
            detail = hk.seen if hk.status == "unavailable" else f"{hk.seen}: {words[hk.status]}"
            checks.append(Check("host key", False, detail, hk.fix))
            return checks + _not_run(later, "the host key is not trusted")
    later.pop(0)

    # 3. authentication (and 4. base_dir: connect does both)
    status = await key_status(name, config, ssh_config=ssh_config)
    try:
        await host.connect()
    except HostConnectError as e:
        if e.kind == "base_dir":
            checks.append(Check("authentication", True, f"logged in as {target.user}; "
                                f"{status.describe()}"))
            checks.append(Check("base_dir", False, e.message,
                                f"set hosts.{name}.base_dir to a writable directory"))
            return checks + _not_run(later[1:], "base_dir is not usable")
        if e.kind in ("host_key_unknown", "host_key_changed"):
            checks.append(Check("authentication", False, e.message, None))
        else:
            fix = key_fix(status, name, config) if e.kind in ("auth", "key") else None
            checks.append(Check("authentication", False, e.message, fix))
        return checks + _not_run(later, "authentication failed")
    except EvopilotError as e:
        checks.append(Check("authentication", False, e.message, None))
        return checks + _not_run(later, "authentication failed")
    checks.append(Check("authentication", True, f"logged in as {target.user}; {status.describe()}"))
    return await _tools(name, config, host, checks)


def _tool_names(config: HostConfig) -> list[str]:
    names = ["uv", "rsync", "python", "disk"]
    if config.kind != "slurm":  # Slurm jobs run without tmux
        names.insert(0, "tmux")
    names += [f"env {key}={path}" for key, path in _env_paths(config)]
    return names


async def _tools(name: str, config: HostConfig, host: Host, checks: list[Check]) -> list[Check]:
    names = _tool_names(config)
    if host.is_local:  # an SSH host is connected by the authentication check
        try:
            await host.connect()
        except EvopilotError as e:
            checks.append(Check("base_dir", False, e.message,
                                f"set hosts.{name}.base_dir to a writable directory"))
            return checks + _not_run(names, "base_dir is not usable")
    try:
        res = await host.run(probe_script(config, host.base_dir), timeout=60)
    except EvopilotError as e:
        return checks + [Check("base_dir", False, e.message, None)] + _not_run(
            names, "the host stopped answering"
        )
    p = parse_probe(res.stdout)
    w_code, w_out = p.get("write", (1, "no answer"))
    if w_code != 0:
        checks.append(Check("base_dir", False, f"{host.base_dir} is not writable: {w_out}",
                            f"set hosts.{name}.base_dir to a writable directory"))
        return checks + _not_run(names, "base_dir is not writable")
    checks.append(Check("base_dir", True, host.base_dir))
    where = "locally" if host.is_local else "on the host"

    def tool(key: str, label: str, fix: str) -> Check:
        code, out = p.get(key, (127, "no answer"))
        if code == 0:
            return Check(label, True, out)
        return Check(label, False, out or f"exit status {code}", fix)

    if config.kind != "slurm":
        checks.append(tool("tmux", "tmux", f"install tmux {where} (e.g. apt-get install tmux)"))
    checks.append(tool(
        "uv", "uv",
        f"install uv {where} (e.g. pip install --user uv) or set hosts.{name}.uv_path "
        "to its full path",
    ))
    rs = tool("rsync", "rsync", f"install rsync {where} (e.g. apt-get install rsync); "
              "until then code is sent over SFTP")
    if not host.is_local and rs.ok and shutil.which("rsync") is None:
        rs = Check("rsync", False, f"{rs.detail} on the host, but not installed locally",
                   "install rsync locally; until then code is sent over SFTP")
    checks.append(rs)
    checks.append(tool(
        "python", "python",
        f"install Python {where} or set hosts.{name}.python to an interpreter that exists",
    ))
    code, out = p.get("disk", (1, ""))
    if code != 0 or not out.isdigit():
        checks.append(Check("disk", False, f"cannot tell free space: {out}", None))
    else:
        free = int(out) * 1024
        detail = f"{free / (1 << 30):.1f} GiB free under {host.base_dir}"
        checks.append(Check("disk", free >= MIN_FREE_BYTES, detail,
                            None if free >= MIN_FREE_BYTES else
                            f"free space there or set hosts.{name}.base_dir elsewhere"))
    for i, (key, path) in enumerate(_env_paths(config)):
        code, _out = p.get(f"env{i}", (1, ""))
        label = f"env {key}={path}"
        if code == 0:
            checks.append(Check(label, True, f"{path} exists"))
        else:
            checks.append(Check(label, False, f"{path} does not exist {where}",
                                f"create it or fix hosts.{name}.env.{key}"))
    return checks


SLURM_CHECKS = ["slurm", "test job", "base_dir on a compute node", "uv on a compute node"]


async def _slurm(name: str, config: HostConfig, host: Host, checks: list[Check]) -> list[Check]:
    """Slurm's partitions, then a tiny test job end to end: where it ran, whether it sees
    ``base_dir`` and uv there."""
    import secrets

    from evopilot.core.hosts import slurm

    if not any(c.name == "base_dir" and c.ok for c in checks):
        return _not_run(SLURM_CHECKS, "base_dir is not usable")
    script = slurm.doctor_script(config, host.base_dir, secrets.token_hex(4), _word(config.uv_path))
    try:
        res = await host.slurm(script, timeout=slurm.DOCTOR_WAIT + 30)  # type: ignore[attr-defined]
    except EvopilotError as e:
        return [Check("slurm", False, e.message, None)] + _not_run(SLURM_CHECKS[1:], "the host stopped answering")
    p = parse_probe(res.stdout)
    code, out = p.get("sinfo", (127, "no answer"))
    if code != 0:
        return [Check("slurm", False, f"sinfo: {out or f'exit status {code}'}",
                      f"install Slurm's commands {'here' if host.is_local else 'on the login node'}, "
                      f"or set hosts.{name}.env (SLURM_CONF, PATH) so that they reach the cluster")
                ] + _not_run(SLURM_CHECKS[1:], "Slurm cannot be asked")
    where = f"partition {config.partition}" if config.partition else "the default partition"
    if not out:
        return [Check("slurm", False, f"sinfo lists no {where}",
                      f"set hosts.{name}.partition to one that `sinfo` lists")
                ] + _not_run(SLURM_CHECKS[1:], f"there is no {where}")
    out_checks = [Check("slurm", True, f"{where}: {out}")]
    code, out = p.get("job", (127, "no answer"))
    if code != 0:
        fix = (f"check hosts.{name}.partition, account and resources against `sinfo`"
               if code == 2 else f"check hosts.{name} sbatch settings and the job's log")
        return out_checks + [Check("test job", False, out, fix)] + _not_run(
            SLURM_CHECKS[2:], "the test job did not run")
    node = p.get("node", (1, "?"))[1]
    out_checks.append(Check("test job", True, f"{out} on node {node}"))
    code, out = p.get("shared", (1, "no answer"))
    out_checks.append(Check("base_dir on a compute node", code == 0, out,
                            None if code == 0 else f"set hosts.{name}.base_dir to a directory the "
                            "compute nodes share with the login node"))
    code, out = p.get("uv", (127, "no answer"))
    out_checks.append(Check("uv on a compute node", code == 0, out,
                            None if code == 0 else f"install uv where the compute nodes see it, or "
                            f"set hosts.{name}.uv_path to its full path"))
    return out_checks
