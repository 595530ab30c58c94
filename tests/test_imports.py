"""The core never imports Textual; the headless CLI imports it only to open the app."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, cwd=REPO, check=True).stdout
    return set(out.split())


def test_core_engine_does_not_import_textual():
    mods = _modules_after("import evopilot.core.engine")
    assert "textual" not in mods and not any(m.startswith("evopilot.tui") for m in mods)


def test_cli_does_not_import_textual():
    assert "textual" not in _modules_after("import evopilot.tui.cli")


def test_no_core_module_imports_tui_or_textual():
    offenders = subprocess.run(["git", "grep", "-nE", r"^\s*(from|import) (textual|tui|evopilot\.tui)\b", "--", "core"],
                               capture_output=True, text=True, cwd=REPO).stdout
    assert offenders == ""
