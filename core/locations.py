"""Every path evopilot uses, decided in one place.

Config files, highest precedence first (documented here and in README). Every one that exists
is read and they are merged: a key set in a file overrides the same key of the same table in the
files below it, and the tables merge (``core.config`` says exactly how).
  1. ``--config FILE`` on the command line
  2. ``$EVOPILOT_CONFIG``
  3. ``./evopilot.toml`` in the current directory
  4. ``<user config dir>/config.toml`` (platformdirs, e.g. ``~/.config/evopilot/config.toml``)
The two named explicitly must exist; the others are skipped when missing. Keys no file sets keep
their built-in defaults. `evopilot config show` prints the result and where each value came from.

Data directory (database, logs, local job directories, commit workspaces):
  1. ``--home DIR``   2. ``$EVOPILOT_HOME``   3. the platform's user data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from evopilot.core.errors import EvopilotError

APP = "evopilot"


def user_config_file() -> Path:
    import platformdirs  # not needed when --home or $EVOPILOT_HOME say where (start-up time)

    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def config_candidates(cli_config: str | None = None) -> list[tuple[Path, bool]]:
    """Config files, highest precedence first, each with whether it was asked for explicitly.

    An explicitly named file must exist; the implicit ones are skipped when missing.
    """
    out: list[tuple[Path, bool]] = []
    if cli_config:
        out.append((Path(cli_config).expanduser(), True))
    env = os.environ.get("EVOPILOT_CONFIG")
    if env:
        out.append((Path(env).expanduser(), True))
    out.append((Path.cwd() / "evopilot.toml", False))
    out.append((user_config_file(), False))
    return out


def data_home(cli_home: str | None = None) -> Path:
    if cli_home:
        return Path(cli_home).expanduser().resolve()
    env = os.environ.get("EVOPILOT_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP))


def db_path(home: Path) -> Path:
    return home / "evopilot.db"


def logs_dir(home: Path) -> Path:
    """Local mirrors of remote job logs."""
    return home / "logs"


def local_base(home: Path) -> Path:
    """The local host's base directory: local job directories live in ``<base>/jobs``."""
    return home / "local"


def evolution_dir(home: Path, experiment_id: int) -> Path:
    """An experiment's scratch space: the worktrees its command mutators run in, their prompts."""
    return home / "evolution" / f"exp-{experiment_id}"


def workspaces_dir(home: Path) -> Path:
    """Local trees of the commits jobs run on (``core.workspace``)."""
    return home / "workspaces"


def deps_cache_dir(home: Path) -> Path:
    return home / "cache" / "deps"


# The installed package and a checkout have the same shape here: ``examples/`` and
# ``config.example.toml`` sit beside ``core/`` (pyproject ships them inside the wheel).
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def bundled_example() -> Path:
    """The example project `evopilot demo` runs."""
    return _PACKAGE_ROOT / "examples" / "solver"


def bundled_evolve_example() -> Path:
    """The evolution example `evopilot demo --evolve` copies and runs."""
    return _PACKAGE_ROOT / "examples" / "evolve"


def example_config() -> Path:
    """config.example.toml, which `evopilot init` copies."""
    return _PACKAGE_ROOT / "config.example.toml"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the owner only.

    A directory already private is left alone, so a read-only data directory still serves the
    commands that only read.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as e:
        raise EvopilotError(
            f"cannot create or make private {path}: {e.strerror}; make it writable, or choose "
            "another data directory with --home or EVOPILOT_HOME") from None
    return path
