"""Which imports are the standard library, which distribution provides an import, what a
project's pyproject declares, and ``uv add`` for what is missing."""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from evopilot.core.errors import EvopilotError

if TYPE_CHECKING:
    from evopilot.core.analysis.models import DependencyAnalysis

_STDLIB = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)

# Import names whose distribution is named differently; the first entry is what `fix` adds, the
# others are accepted as declaring it. Names equal after PEP 503 normalisation need no entry.
KNOWN_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "yaml": ("PyYAML",),
    "sklearn": ("scikit-learn",),
    "skimage": ("scikit-image",),
    "PIL": ("Pillow",),
    "cv2": (
        "opencv-python",
        "opencv-python-headless",
        "opencv-contrib-python",
        "opencv-contrib-python-headless",
    ),
    "bs4": ("beautifulsoup4",),
    "dateutil": ("python-dateutil",),
    "attr": ("attrs",),
    "google.protobuf": ("protobuf",),
    "google.cloud.storage": ("google-cloud-storage",),
    "google.generativeai": ("google-generativeai",),
    "googleapiclient": ("google-api-python-client",),
    "grpc": ("grpcio",),
    "absl": ("absl-py",),
    "Crypto": ("pycryptodome",),
    "OpenSSL": ("pyOpenSSL",),
    "jwt": ("PyJWT",),
    "dotenv": ("python-dotenv",),
    "serial": ("pyserial",),
    "usb": ("pyusb",),
    "zmq": ("pyzmq",),
    "git": ("GitPython",),
    "github": ("PyGithub",),
    "gi": ("PyGObject",),
    "cairo": ("pycairo",),
    "wx": ("wxPython",),
    "OpenGL": ("PyOpenGL",),
    "magic": ("python-magic",),
    "docx": ("python-docx",),
    "pptx": ("python-pptx",),
    "fitz": ("PyMuPDF",),
    "MySQLdb": ("mysqlclient",),
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "bson": ("pymongo",),
    "kafka": ("kafka-python",),
    "ldap": ("python-ldap",),
    "snappy": ("python-snappy",),
    "dns": ("dnspython",),
    "nacl": ("PyNaCl",),
    "socks": ("PySocks",),
    "jose": ("python-jose",),
    "multipart": ("python-multipart",),
    "slugify": ("python-slugify",),
    "websocket": ("websocket-client",),
    "telegram": ("python-telegram-bot",),
    "Bio": ("biopython",),
    "umap": ("umap-learn",),
    "community": ("python-louvain",),
    "faiss": ("faiss-cpu", "faiss-gpu"),
    "haiku": ("dm-haiku",),
    "tree": ("dm-tree",),
    "hydra": ("hydra-core",),
    "mpl_toolkits": ("matplotlib",),
    "pkg_resources": ("setuptools",),
    "_pytest": ("pytest",),
    "win32api": ("pywin32",),
    "Xlib": ("python-xlib",),
}

# How uv marks its error line and the causes below it (plain and fancy report styles).
_UV_ERROR = ("error:", "×")
_UV_CAUSE = ("cause:", "Caused by:", "╰─▶")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def normalize(name: str) -> str:
    """PEP 503: names that differ only in case and runs of ``-_.`` are the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_stdlib(top_level: str) -> bool:
    return top_level in _STDLIB


def is_builtin(top_level: str) -> bool:
    """Compiled into the interpreter: wins over any file of the same name on sys.path."""
    return top_level in sys.builtin_module_names


def known_distribution(module: str) -> tuple[str, tuple[str, ...]] | None:
    """The longest dotted prefix of ``module`` in the table, and its distributions."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in KNOWN_DISTRIBUTIONS:
            return prefix, KNOWN_DISTRIBUTIONS[prefix]
    return None


# --- installed distributions -------------------------------------------------------------------


def installed_top_levels(dirs: list[str]) -> dict[str, list[str]]:
    """Top-level import name -> distributions installed in ``dirs`` that provide it.

    Like ``importlib.metadata.packages_distributions()`` but over chosen directories, and
    reading only the ``Name`` header and the top-level names of each distribution (importlib's
    e-mail parsing of every metadata file was most of a cold `deps`); callers cache it by the
    directories' stat.
    """
    mapping: dict[str, list[str]] = {}
    for dist in _distributions(dirs):
        name = dist.name()
        if not name:
            continue
        for top in _top_levels(dist):
            if name not in mapping.setdefault(top, []):
                mapping[top].append(name)
    return mapping


def _distributions(dirs: list[str]) -> list[_Installed]:
    """The ``*.dist-info`` and ``*.egg-info`` directories of ``dirs``, as importlib.metadata
    finds them."""
    found = []
    for d in dirs:
        try:
            with os.scandir(d) as it:
                found += [_Installed(e.path) for e in it if e.name.lower().endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
    return found


class _Installed:
    """One installed distribution's metadata directory (importlib.metadata's PathDistribution,
    reading only what ``installed_top_levels`` needs)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read_text(self, filename: str) -> str | None:
        try:
            with open(os.path.join(self.path, filename), encoding="utf-8") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            return None

    def name(self) -> str | None:
        """The ``Name`` header of METADATA (PKG-INFO for an egg), the first one as e-mail
        parsing finds it; headers end at the first empty line."""
        text = self.read_text("METADATA") or self.read_text("PKG-INFO") or ""
        for line in text.splitlines():
            if not line.strip():
                break
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == "name":
                return value.strip() or None
        return None

    @property
    def files(self) -> list:
        """Its files as importlib.metadata lists them without a RECORD (an egg's
        installed-files.txt or SOURCES.txt)."""
        import importlib.metadata  # rare: most distributions have a RECORD or top_level.txt

        return importlib.metadata.PathDistribution(Path(self.path)).files or []


def _top_levels(dist: _Installed) -> set[str]:
    declared = dist.read_text("top_level.txt")
    if declared:
        return {line.strip() for line in declared.split() if line.strip()}
    record = dist.read_text("RECORD")
    # RECORD's paths read as text: ``dist.files`` builds a path object per line
    paths = ([_quoted_path(line) if line.startswith('"') else line.partition(",")[0]
              for line in record.splitlines() if line]
             if record is not None else [str(f) for f in dist.files])
    tops: set[str] = set()
    for path in paths:
        first, sep, _ = path.partition("/")
        if sep:
            top = first  # a package directory (or *.dist-info, which is no identifier)
        elif first.endswith((".py", ".so", ".pyd")):
            top = first.partition(".")[0]  # a single-file module
        else:
            continue
        if top.isidentifier() and top != "__pycache__":
            tops.add(top)
    return tops


def _quoted_path(line: str) -> str:
    """The path of a RECORD line that CSV-quotes it (a comma in the name: rare)."""
    import csv

    return next(csv.reader([line]))[0]


# --- pyproject -------------------------------------------------------------------------------


def declared_distributions(project_root: Path) -> set[str] | None:
    """Normalised names of every dependency pyproject.toml lists (main, optional extras,
    dependency groups, uv dev-dependencies), or None when the project has no pyproject.toml."""
    path = project_root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise EvopilotError(f"{path}: cannot read: {e}") from None
    project = _table(data.get("project"))
    requirements = _array(project.get("dependencies"))
    for extra in _table(project.get("optional-dependencies")).values():
        requirements += _array(extra)
    for group in _table(data.get("dependency-groups")).values():
        requirements += _array(group)
    requirements += _array(_table(_table(data.get("tool")).get("uv")).get("dev-dependencies"))
    names: set[str] = set()
    for req in requirements:
        # dependency groups may hold {include-group = "..."} tables; they name no distribution
        if isinstance(req, str) and (m := _REQUIREMENT_NAME.match(req)):
            names.add(normalize(m.group(1)))
    return names


def _table(value: object) -> dict:
    """A TOML table, or empty when the key is missing or not a table (uv reports that itself)."""
    return value if isinstance(value, dict) else {}


def _array(value: object) -> list:
    return list(value) if isinstance(value, list) else []


# --- fix -------------------------------------------------------------------------------------


def fix(project_root: Path, analysis: DependencyAnalysis, uv_path: str = "uv") -> list[str]:
    """Add every undeclared, non-optional distribution with ``uv add``; return what was added.

    Runs synchronously (uv resolves, locks and syncs); call it from a thread in async code.
    """
    import subprocess  # only here: `deps` without --fix starts without it

    dists = [p.distribution for p in analysis.undeclared()]
    if not dists:
        return []
    try:
        done = subprocess.run(
            [uv_path, "add", *dists],
            cwd=project_root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except FileNotFoundError:
        raise EvopilotError(f"cannot run uv: {uv_path!r} not found") from None
    except subprocess.TimeoutExpired:
        raise EvopilotError(f"uv add {' '.join(dists)} timed out after 600 s") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        reason = _uv_reason(lines)
        raise EvopilotError(f"uv add {' '.join(dists)} failed (exit {done.returncode}): {reason}")
    return dists


def _uv_reason(lines: list[str]) -> str:
    """One line from uv's report: its error line, and the innermost cause when it gives one."""
    error = next((_after_prefix(ln, _UV_ERROR) for ln in lines if ln.startswith(_UV_ERROR)), None)
    causes = [_after_prefix(ln, _UV_CAUSE) for ln in lines if ln.startswith(_UV_CAUSE)]
    if error is None:
        return lines[-1] if lines else "no output"
    return f"{error.rstrip(':')}: {causes[-1]}" if causes else error


def _after_prefix(line: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return line
