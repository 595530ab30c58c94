"""Read-only helpers the app needs around ``Engine`` (no database access of their own).

Everything here calls public Engine methods or optional colleague modules, imported lazily so
that a missing module only hides a feature.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core import locations
from core.config import LOCAL, Config, HostConfig
from core.engine import Engine
from core.models import JobStatus


async def running_by_host(engine: Engine, hosts: list[str]) -> dict[str, int]:
    return {h: await engine.count_jobs(status=[JobStatus.RUNNING.value], host=h) for h in hosts}


def deps_available() -> bool:
    try:
        from core.analysis.deps import analyze, render_tree  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means "no analysis panel"
        return False
    return True


def dependency_lines(home: Path, project_root: str, bench_path: str) -> list[str] | None:
    """The dependency tree of a benchmark as text lines (blocking: run it in a thread).

    None when the analysis module is not available.
    """
    try:
        from core.analysis.deps import analyze, render_tree
    except Exception:  # noqa: BLE001
        return None
    analysis = analyze(Path(project_root), Path(bench_path), cache_dir=locations.deps_cache_dir(home))
    return render_tree(analysis)


def doctor_available() -> bool:
    try:
        from core.hosts.doctor import doctor  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def host_factory(home: Path) -> Callable[[str, HostConfig], object]:
    """Make an unconnected host for ``core.hosts.doctor.doctor`` (as ``Engine.host`` would)."""

    def make(name: str, cfg: HostConfig):
        if name == LOCAL:
            from core.hosts.local import LocalHost

            return LocalHost(name, cfg, locations.local_base(home))
        from core.hosts.ssh import SshHost

        return SshHost(name, cfg)

    return make


async def run_doctor(config: Config, home: Path, name: str) -> list[str] | None:
    """Doctor's checks for host ``name`` as text lines; None when doctor is not available."""
    try:
        from core.hosts.doctor import doctor
    except Exception:  # noqa: BLE001
        return None
    checks = await doctor(name, config.host(name), host_factory(home))
    lines = []
    for c in checks:
        word = "ok  " if c.ok else ("skip" if not getattr(c, "ran", True) else "FAIL")
        lines.append(f"{word}  {c.name}: {c.detail}")
        if c.fix and not c.ok:
            lines.append(f"      fix: {c.fix}")
    return lines
