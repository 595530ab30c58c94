"""config.toml as pydantic models, merged from the files listed in ``core.locations``.

Every config file that exists is read and the files are merged, each over the ones of lower
precedence. Top-level tables ([engine], [projects], [hosts], [keys], [tasks], [agents]) and each
host's and agent's table ([hosts.NAME], [agents.NAME]) merge key by key; any other value replaces
the earlier one whole, including lists (``benchmark_globs``) and tables that are one setting (a
host's ``env``, [tasks.projects]).

Unknown keys are errors (a mistyped key must not be silently ignored). Each file is checked on
its own before the merge, so every error is one line naming the file it is in, the key and what
is wrong.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import (
    BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator,
)

from evopilot.core import bindings, locations
from evopilot.core.errors import EvopilotError

M = TypeVar("M", bound=BaseModel)
LOCAL = "local"
HOST_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# A job's timeout has a bound like every duration: inf or nan would mean "never" (and Slurm's
# --time is computed from it); a year is past any job's real need.
MAX_TIMEOUT_S = 365 * 86400.0


def check_timeout(value: float | None, option: str) -> None:
    """Refuse a timeout that is not a positive number of seconds up to ``MAX_TIMEOUT_S``
    (nan fails both comparisons, so it is refused too)."""
    if value is not None and not 0 < value <= MAX_TIMEOUT_S:
        raise EvopilotError(f"{option} must be a positive number of seconds, at most {MAX_TIMEOUT_S:.0f}")


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
    lost_grace: Annotated[float, Field(ge=0, le=86400)] = 5.0
    """A running job with neither a tmux session nor an exit code is lost only after this long."""
    session_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")] = "evp"
    results_max_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 1024 * 1024
    """Largest results.json read; a bigger one fails its job with a message saying so."""
    background_worker: bool = True
    """Start a worker in a tmux session of its own when a command leaves jobs queued and no
    worker is alive (it exits when idle); false: jobs start only while `evopilot worker` or
    the app runs."""


class ProjectsConfig(_Strict):
    benchmark_globs: list[str] = ["benchmarks/*.py", "benchmark_*.py"]
    default_python: str = ""
    """Python version for new projects; empty means the version running evopilot."""


def _env_names(v: dict[str, str]) -> dict[str, str]:
    for k in v:
        if not k.replace("_", "a").isalnum() or k[0].isdigit():
            raise ValueError(f"{k!r} is not a valid environment variable name")
    return v


SLURM_KEYS = ("local", "partition", "account", "time_limit", "cpus_per_job", "mem", "gres",
              "sbatch_options", "max_queued")
SSH_KEYS = ("hostname", "port", "user", "identity_file", "known_hosts", "ssh_config")


class HostConfig(_Strict):
    """One place jobs run. ``local`` always exists; others are reached over SSH, or are Slurm
    clusters (``kind = "slurm"``: reached over SSH through a login node, or with ``local = true``
    on this machine, where Slurm's commands are)."""

    kind: Literal["ssh", "slurm"] = "ssh"

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
    keepalive_interval: Annotated[float, Field(ge=0, le=3600)] = 15.0
    connect_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    uv_path: str = "uv"
    python: str = "python3"
    env: dict[str, str] = {}
    """Extra environment for every job on the host (e.g. GUROBI_HOME, GRB_LICENSE_FILE)."""

    # ---- kind = "slurm" (see core.hosts.slurm) ----
    local: bool = False
    """Slurm's commands (sbatch, squeue, scancel) run on this machine, not over SSH."""
    partition: str | None = None
    account: str | None = None
    time_limit: Annotated[str, Field(pattern=r"^(\d+-)?\d+(:\d+){0,2}$")] | None = None
    """Slurm's ``--time`` for jobs without a timeout of their own (``30``, ``2:00:00``, ``1-0``)."""
    cpus_per_job: Annotated[int, Field(ge=1)] | None = None
    mem: Annotated[str, Field(pattern=r"^\d+[KMGT]?$")] | None = None
    """Memory per job (``--mem``): ``4G``, ``500M``."""
    gres: str | None = None
    """Generic resources per job (``--gres``): ``gpu:1``."""
    sbatch_options: list[str] = []
    """Further ``sbatch`` options, one word each: ``["--qos=short", "--exclusive"]``."""
    max_queued: Annotated[int, Field(ge=1, le=100000)] = 100
    """Jobs evopilot keeps in Slurm's queue (pending or running) at once."""

    @model_validator(mode="after")
    def _kind_keys(self) -> "HostConfig":
        # a value equal to its default may be written out (`config show` prints every value)
        def set_(key: str) -> bool:
            return getattr(self, key) != type(self).model_fields[key].default

        if self.kind != "slurm":
            for key in SLURM_KEYS:
                if set_(key):
                    raise ValueError(f'{key} is only for Slurm hosts (kind = "slurm")')
        elif self.local:
            for key in SSH_KEYS:
                if set_(key):
                    raise ValueError(f"{key} is for a login node reached over SSH, not with local = true")
        return self

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        return _env_names(v)

    def slots(self, is_local: bool) -> int:
        if self.kind == "slurm":  # Slurm runs what it can; evopilot bounds its queue there
            return self.max_queued
        if self.max_parallel:
            return self.max_parallel
        return (os.cpu_count() or 1) if is_local else 4


class AgentConfig(_Strict):
    """A coding agent ([agents.NAME]): any CLI, run as a job in an attempt's worktree."""

    command: str
    """Shell command with {prompt} (the prompt's text) or {prompt_file} (a file holding it), each
    replaced by a quoted word: do not quote them. {workdir} is the worktree; a sweep's
    --param NAME=... fills {NAME}. e.g. `claude -p {prompt} --output-format json`."""
    followup: str | None = None
    """The command of a follow-up session when the agent is not live to type into (default:
    ``command``), e.g. `claude -c -p {prompt} --output-format json`."""
    tty: bool = False
    """Run it on a terminal (CLIs that need one); a follow-up is then typed into it while it runs."""
    env: dict[str, str] = {}
    """Extra environment for its sessions. Not for secrets: it is part of the job's command
    line; put keys in the host's env."""
    usage: Literal["json", "none"] = "none"
    """"json": its output's last JSON object with usage.input_tokens, usage.output_tokens and
    total_cost_usd (Claude Code's --output-format json) is the session's usage."""
    usage_command: str | None = None
    """A command run in the worktree after each session that prints such a JSON object
    (for agents that keep their usage elsewhere); implies usage = "json"."""

    @field_validator("command", "followup")
    @classmethod
    def _has_prompt(cls, v: str | None) -> str | None:
        if v is not None and "{prompt}" not in v and "{prompt_file}" not in v:
            raise ValueError("must contain {prompt} or {prompt_file}")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        return _env_names(v)


class TaskProjectConfig(_Strict):
    """[tasks.projects.NAME]: one project's overrides of the [tasks] defaults."""

    setup_script: str | None = None
    cleanup_script: str | None = None
    test_command: str | None = None
    target_branch: str | None = None


class TasksConfig(_Strict):
    worktree_dir: str | None = None
    """Where attempts' worktrees go (<dir>/<project>/<attempt>); default <data home>/worktrees."""
    setup_script: str = ""
    """Shell run in a new worktree before the agent (a job of its own; empty: none)."""
    cleanup_script: str = ""
    """Shell run in a worktree before `task archive` removes it."""
    test_command: str = ""
    """Shell run in the worktree after each agent session; exit 0 means the tests passed."""
    target_branch: str = ""
    """The branch attempts start from and merge into; empty: the project's current branch."""
    max_dollars: Annotated[float, Field(gt=0)] | None = None
    """Budgets of each attempt (None: no cap): past one its agent is stopped, the reason kept."""
    max_requests: Annotated[int, Field(gt=0)] | None = None
    max_minutes: Annotated[float, Field(gt=0)] | None = None
    projects: dict[str, TaskProjectConfig] = {}

    def for_project(self, name: str) -> TaskProjectConfig:
        """The project's settings: its overrides over these defaults."""
        own = self.projects.get(name, TaskProjectConfig())
        return TaskProjectConfig(**{k: v if (v := getattr(own, k)) is not None else getattr(self, k)
                                    for k in TaskProjectConfig.model_fields})


class Config(_Strict):
    engine: EngineConfig = EngineConfig()
    projects: ProjectsConfig = ProjectsConfig()
    hosts: dict[Annotated[str, Field(pattern=HOST_NAME_PATTERN)], HostConfig] = {}
    tasks: TasksConfig = TasksConfig()
    agents: dict[Annotated[str, Field(pattern=HOST_NAME_PATTERN)], AgentConfig] = {}
    keys: dict[str, str] = {}
    """Key binding overrides: binding id -> key (see `?` in the app)."""

    @field_validator("keys")
    @classmethod
    def _bindings(cls, v: dict[str, str]) -> dict[str, str]:
        problem = bindings.keys_problem(v)
        if problem:
            raise BindingError(*problem)
        return v
    # Private, so a config file cannot set them.
    _sources: tuple[Path, ...] = PrivateAttr(default=())
    _origins: dict[tuple[str, ...], Path | None] = PrivateAttr(default_factory=dict)

    @property
    def sources(self) -> tuple[Path, ...]:
        """The files merged into this config, lowest precedence first."""
        return self._sources

    def settings(self) -> list["Setting"]:
        """Every value in effect with the file it came from; the local host is always listed."""
        shown = self.model_copy(update={"hosts": {n: self.host(n) for n in self.host_names()}})
        return [s for s in _settings(shown, Config, (), self._origins)
                if not (s.path[0] == "hosts" and s.path[2] in SLURM_KEYS
                        and self.host(s.path[1]).kind != "slurm")]  # not a Slurm host's keys

    @model_validator(mode="after")
    def _local_is_local(self) -> "Config":
        if self.hosts.get(LOCAL, HostConfig()).kind != "ssh":
            raise ValueError("the local host cannot be a Slurm host: give the cluster a name of its own")
        return self

    def host(self, name: str) -> HostConfig:
        if name == LOCAL:
            return self.hosts.get(LOCAL) or _default_host()
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.host_names())
            raise EvopilotError(f"unknown host {name!r} (configured: {known})") from None

    def agent(self, name: str) -> AgentConfig:
        try:
            return self.agents[name]
        except KeyError:
            known = ", ".join(sorted(self.agents)) or "none; add an [agents.NAME] table"
            raise EvopilotError(f"unknown agent {name!r} (configured: {known})") from None

    def host_names(self) -> list[str]:
        return [LOCAL] + sorted(n for n in self.hosts if n != LOCAL)


@functools.cache
def _default_host() -> HostConfig:
    """The local host's settings when none are configured (models are frozen: one serves all;
    asked on every job's start)."""
    return HostConfig()


class BindingError(ValueError):
    """A ``[keys]`` entry that is wrong; ``name`` is its binding id (the error names the key)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _binding_error(e: ValidationError) -> BindingError | None:
    for err in e.errors():
        if isinstance(err.get("ctx", {}).get("error"), BindingError):
            return err["ctx"]["error"]
    return None


@dataclass(frozen=True)
class Setting:
    """One value in effect: its key path, the value, and the file it came from (None: default)."""

    path: tuple[str, ...]
    value: Any
    source: Path | None

    @property
    def key(self) -> str:
        return dotted_key(self.path)


def dotted_key(path: tuple) -> str:
    """``hosts."gpu.lab".port``: a TOML dotted key, quoting the parts that are not bare keys (a JSON
    string with ASCII escapes is a valid TOML basic string)."""
    bare = [str(p).replace("_", "a").replace("-", "a").isalnum() and str(p).isascii() for p in path]
    return ".".join(str(p) if ok else json.dumps(str(p)) for p, ok in zip(path, bare))


def _child_type(tp: Any, key: str) -> Any:
    """The schema of ``key`` inside a value of schema ``tp`` (None when the key is unknown)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(key)
        return field.annotation if field else None
    if get_origin(tp) is dict:
        return get_args(tp)[1]
    return None


def _is_table(path: tuple[str, ...], tp: Any) -> bool:
    """Whether the value at ``path`` (of schema ``tp``) merges key by key: a section (a model, such
    as [engine] or a host) or a top-level table of entries ([hosts], [keys]).

    Anything else is one setting, replaced whole by a later file even when it is a table (env).
    """
    is_model = isinstance(tp, type) and issubclass(tp, BaseModel)
    return is_model or (len(path) == 1 and get_origin(tp) is dict)


def _merge(into: dict, data: dict, tp: Any, path: tuple[str, ...], source: Path | None,
           origins: dict[tuple[str, ...], Path | None]) -> None:
    """Merge one file's ``data`` over ``into``, recording in ``origins`` the file each value came from."""
    for key, value in data.items():
        p, child = (*path, key), _child_type(tp, key)
        if isinstance(value, dict) and _is_table(p, child):
            _merge(into.setdefault(key, {}), value, child, p, source, origins)
        else:
            into[key] = value
            origins[p] = source


def _settings(obj: Any, tp: Any, path: tuple[str, ...], origins: dict) -> Iterator[Setting]:
    items = obj.items() if isinstance(obj, dict) else ((k, getattr(obj, k)) for k in type(obj).model_fields)
    for key, value in items:
        p, child = (*path, key), _child_type(tp, key)
        if _is_table(p, child):
            yield from _settings(value, child, p, origins)
        else:
            yield Setting(p, value, origins.get(p))


def _format_loc(loc: tuple) -> str:
    return dotted_key(tuple(p for p in loc if p not in ("function-after",))) or "(top level)"


def _did_you_mean(model: type[BaseModel], loc: tuple) -> str:
    """" (did you mean 'port'?)" for an unknown key close to a known one at its place."""
    tp: Any = model
    for part in loc[:-1]:
        tp = _child_type(tp, str(part))
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(tp.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check(text: str, source: Path | None) -> dict:
    """One file's TOML, validated on its own so that an error names the file it is in, even when a
    later file overrides the bad value (it would break where that file is not read)."""
    data, _ = validate_toml(text, source, Config)
    return data


def validate_toml(text: str, source: Path | None, model: type[M]) -> tuple[dict, M]:
    """TOML text validated by ``model``; any problem is one line naming the file and the key."""
    where = str(source) if source else "config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise EvopilotError(f"{where}: not valid TOML: {e}") from None
    try:
        return data, model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc, msg = err["loc"], err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(model, loc)
        elif (binding := _binding_error(e)) is not None:
            loc, msg = ("keys", binding.name), str(binding)
        else:
            msg = msg.removeprefix("Value error, ")
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise EvopilotError(f"{where}: {_format_loc(loc)}: {msg}{more}") from None


def _merged(layers: list[tuple[Path | None, dict]]) -> Config:
    """The checked files merged, lowest precedence first. Each is valid alone and they merge table
    by table, so the result is valid too, but for keys that two files give to two bindings."""
    data: dict = {}
    origins: dict[tuple[str, ...], Path | None] = {}
    for source, layer in layers:
        _merge(data, layer, Config, (), source, origins)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        binding = _binding_error(e)
        if binding is None:
            raise
        where = origins.get(("keys", binding.name)) or "config"
        raise EvopilotError(f"{where}: {dotted_key(('keys', binding.name))}: {binding}") from None
    cfg._sources = tuple(source for source, _ in layers if source)
    cfg._origins = origins
    return cfg


def parse_config(text: str, source: Path | None = None) -> Config:
    """One config text on its own, not merged with any file; errors name ``source``."""
    return _merged([(source, _check(text, source))])


def load_config(cli_config: str | None = None) -> Config:
    """Every config file that exists, merged in the order of ``locations.config_candidates``."""
    layers: list[tuple[Path, dict]] = []
    seen: set[Path] = set()
    for path, explicit in locations.config_candidates(cli_config):  # highest precedence first
        if not path.is_file():
            if explicit:
                raise EvopilotError(f"{path}: config file not found")
            continue
        if path.resolve() in seen:  # the same file named twice counts once, at its higher place
            continue
        seen.add(path.resolve())
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise EvopilotError(f"{path}: cannot read config: {e}") from None
        layers.append((path, _check(text, path)))
    return _merged(layers[::-1])
