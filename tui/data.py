"""Read-only helpers the app needs around ``Engine`` (no database access of their own).

Everything here calls public Engine methods or optional colleague modules, imported lazily so
that a missing module only hides a feature.
"""

from __future__ import annotations

from pathlib import Path

from evopilot.core import locations
from evopilot.core.engine import Engine


def deps_available() -> bool:
    try:
        from evopilot.core.analysis.deps import analyze, render_tree  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means "no analysis panel"
        return False
    return True


def dependency_lines(home: Path, project_root: str, bench_path: str) -> list[str] | None:
    """The dependency tree of a benchmark as text lines (blocking: run it in a thread).

    None when the analysis module is not available.
    """
    try:
        from evopilot.core.analysis.deps import analyze, render_tree
    except Exception:  # noqa: BLE001
        return None
    analysis = analyze(Path(project_root), Path(bench_path), cache_dir=locations.deps_cache_dir(home))
    return render_tree(analysis)


def doctor_available(engine: Engine) -> bool:
    if not hasattr(engine, "doctor"):
        return False
    try:
        from evopilot.core.hosts.doctor import doctor  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def doctor_lines(checks: list) -> list[str]:
    """``Engine.doctor``'s checks as text lines: ok / FAIL / skip, the detail, the fix."""
    lines = []
    for c in checks:
        word = "ok  " if c.ok else ("skip" if not getattr(c, "ran", True) else "FAIL")
        lines.append(f"{word}  {c.name}: {c.detail}")
        if c.fix and not c.ok:
            lines.append(f"      fix: {c.fix}")
    return lines or ["no checks"]
