"""config.toml as pydantic models, found in the order documented in ``core.locations``.

Unknown keys are errors (a mistyped key must not be silently ignored); every error is one line
naming the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evopilot.core import locations
from evopilot.core.errors import EvopilotError

LOCAL = "local"
HOST_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Strict):
    poll_interval: Annotated[float, Field(gt=0, le=60)] = 0.5
    """Seconds between monitor ticks for the local host (progress and logs; a job's end wakes
    the loop at once)."""
    remote_poll_interval: Annotated[float, Field(gt=0, le=600)] = 1.0
    """Seconds between monitor ticks for SSH hosts (one round trip per host per tick)."""
    kill_grace: Annotated[float, Field(ge=0, le=600)] = 5.0
    """Seconds between SIGTERM and SIGKILL when a job is killed."""
    log_chunk_bytes: Annotated[int, Field(ge=4096)] = 16 * 1024 * 1024
    """Most bytes of one job's log fetched per tick; a bigger backlog is fetched by further
    ticks straight away (bench/remote_jobs.py: 16 MiB keeps up with `ssh cat`, 4 MiB did not)."""
    lost_grace: Annotated[float, Field(ge=0)] = 5.0
    """A running job with neither a tmux session nor an exit code is lost only after this long."""
    session_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")] = "evp"


class ProjectsConfig(_Strict):
    benchmark_globs: list[str] = ["benchmarks/*.py", "benchmark_*.py"]
    default_python: str = ""
    """Python version for new projects; empty means the version running evopilot."""


class HostConfig(_Strict):
    """One place jobs run. ``local`` always exists; others are reached over SSH."""

    hostname: str | None = None
    """Address or ~/.ssh/config alias; defaults to the host's name. Unused for ``local``."""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    user: str | None = None
    identity_file: str | None = None
    use_agent: bool = True
    known_hosts: str | None = None
    """known_hosts file; default ~/.ssh/known_hosts. Host keys are always verified."""
    base_dir: str | None = None
    """Where job directories and synced projects live. Local default: <home>/local;
    remote default: ~/evopilot."""
    max_parallel: Annotated[int, Field(ge=0)] = 0
    """Jobs running at once on this host; 0 means the CPU count (local) or 4 (remote)."""
    max_sessions: Annotated[int, Field(ge=1, le=64)] = 6
    """Concurrent SSH channels on the one connection; keep below the server's MaxSessions."""
    ssh_config: str | None = None
    """OpenSSH client config file read for aliases; default ~/.ssh/config, "" for none."""
    keepalive_interval: Annotated[float, Field(ge=0)] = 15.0
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    uv_path: str = "uv"
    python: str = "python3"
    env: dict[str, str] = {}
    """Extra environment for every job on the host (e.g. GUROBI_HOME, GRB_LICENSE_FILE)."""

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not k.replace("_", "a").isalnum() or k[0].isdigit():
                raise ValueError(f"{k!r} is not a valid environment variable name")
        return v

    def slots(self, is_local: bool) -> int:
        if self.max_parallel:
            return self.max_parallel
        return (os.cpu_count() or 1) if is_local else 4


class Config(_Strict):
    engine: EngineConfig = EngineConfig()
    projects: ProjectsConfig = ProjectsConfig()
    hosts: dict[Annotated[str, Field(pattern=HOST_NAME_PATTERN)], HostConfig] = {}
    keys: dict[str, str] = {}
    """Key binding overrides: binding id -> key (see `?` in the app)."""
    source: Path | None = Field(default=None, exclude=True)

    def host(self, name: str) -> HostConfig:
        if name == LOCAL:
            return self.hosts.get(LOCAL, HostConfig())
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.host_names())
            raise EvopilotError(f"unknown host {name!r} (configured: {known})") from None

    def host_names(self) -> list[str]:
        return [LOCAL] + sorted(n for n in self.hosts if n != LOCAL)


def _format_loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after",)) or "(top level)"


def parse_config(text: str, source: Path | None = None) -> Config:
    where = str(source) if source else "config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise EvopilotError(f"{where}: not valid TOML: {e}") from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise EvopilotError(f"{where}: {_format_loc(err['loc'])}: {msg}{more}") from None
    return cfg.model_copy(update={"source": source})


def load_config(cli_config: str | None = None) -> Config:
    for path, explicit in locations.config_candidates(cli_config):
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise EvopilotError(f"{path}: cannot read config: {e}") from None
            return parse_config(text, path)
        if explicit:
            raise EvopilotError(f"{path}: config file not found")
    return Config()
