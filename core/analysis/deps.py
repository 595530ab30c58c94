"""What a benchmark needs to run on another machine: the local modules it imports (followed
through the project), the external packages, and whether pyproject declares them.

``analyze`` follows imports the way a job finds them: the benchmark's own directory first
(sys.path[0] of a script), then the project's import roots (``core.importroots``: the root and
``src/``), which jobs get first on ``PYTHONPATH``, ahead of the standard library.

Two caches, both JSON files written atomically in ``cache_dir``: the parsed imports of each
file keyed by content hash (a changed project re-parses only changed files), and each finished
analysis with the stat of every input it read (an unchanged project costs those stats and one
read). A stat stands for content only once it is older than ``_RACY_NS``; a newer file is
re-hashed, so a change is detected even when it keeps size and mtime.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import tree_sitter
import tree_sitter_python

from evopilot.core.analysis import packages, stored
from evopilot.core.analysis.stored import digest as _digest, fingerprint as _fingerprint, stat as _stat
from evopilot.core.analysis.imports import FileImports, Import, SyntaxProblem, extract, is_dotted
from evopilot.core.analysis.models import DependencyAnalysis, ExternalPackage, LocalDependency, SyntaxIssue
from evopilot.core.importroots import has_src, import_roots
from evopilot.core.locations import ensure_private_dir

# Nested models much deeper than this break a JSON round trip (recursion): a module at this
# depth is shown in the tree without its own imports (every module is still in the flat list).
MAX_TREE_DEPTH = 50


# How an import is needed; along a path of imports the weakest link counts, and of two paths
# (or an edge imported both ways) the strongest.
REQUIRED, LAZY, OPTIONAL = 0, 1, 2
"""required: at import time; lazy: in a function body (only if it is called); optional:
guarded by ``try/except ImportError``."""


def _need(imp: Import) -> int:
    return OPTIONAL if imp.optional else LAZY if imp.lazy else REQUIRED


# --- analysis --------------------------------------------------------------------------------


def analyze(project_root: Path, bench_file: Path, *, cache_dir: Path | None = None) -> DependencyAnalysis:
    """Analyse ``bench_file`` (absolute, or relative to the project, else to the cwd).

    With ``cache_dir``, an unchanged project costs a stat of each input and one JSON read, and a
    changed one re-parses only the files whose content changed. Raises ``EvopilotError`` when
    the project or the benchmark does not exist, the benchmark lies outside the project, or
    pyproject.toml cannot be read.
    """
    root, bench_key = stored.locate(project_root, bench_file)
    if cache_dir is None:
        return _compute(root, bench_key, {}, None, None)
    cache_dir = Path(cache_dir)
    result_file = stored.result_file(cache_dir, root, bench_key)
    cached = _load_result(result_file, root)
    if cached is not None:
        return cached
    inputs: dict[str, os.stat_result | None] = {}
    parse_cache = _ParseCache(cache_dir, root, inputs)
    result = _compute(root, bench_key, inputs, parse_cache, cache_dir)
    parse_cache.save()
    _save_result(result_file, root, inputs, result)
    return result


def _compute(
    root: Path,
    bench_key: str,
    inputs: dict[str, os.stat_result | None],
    parse_cache: _ParseCache | None,
    cache_dir: Path | None,
) -> DependencyAnalysis:
    """The analysis itself; ``inputs`` collects the stat of everything it read, taken before reading."""
    bench_dir = (root / bench_key).parent
    for directory in (root, bench_dir):  # a new src/ or .venv shows in the root's listing
        inputs[str(directory)] = _stat(str(directory))
    roots = list(dict.fromkeys([str(bench_dir), *import_roots(str(root), has_src(root))]))
    finder = _Finder(roots, inputs)
    if parse_cache is not None:
        def parse(keys: list[str], meanwhile: Callable[[], None] | None = None) -> dict[str, FileImports]:
            return parse_cache.imports_all(keys, str(root), meanwhile)
    else:
        def parse(keys: list[str], meanwhile: Callable[[], None] | None = None) -> dict[str, FileImports]:
            return _parse_files(str(root), keys, meanwhile)
    # The files the benchmark probably reaches (their imports guessed by a regex, or stored) are
    # parsed in one batch, which a forked child shares (_extract_all); parsed level by level as
    # the graph is built, most batches are too small to share. A guessed file the benchmark does
    # not reach only adds its stat to the inputs (a needless recompute later).
    def guess(keys: list[str]) -> dict[str, FileImports]:
        known = parse_cache.known if parse_cache is not None else lambda path: None
        return {k: known(f"{root}/{k}") or _guess_imports(f"{root}/{k}") for k in keys}

    scout = _Graph(str(root), finder, guess)
    scout.build(bench_key)
    pyproject = str(root / "pyproject.toml")
    declared: list[set[str] | None] = []

    def meanwhile() -> None:
        """What needs no parse, done while the child parses: pyproject, and the installed
        distributions if the guess has an undeclared import (``_externals`` needs them then)."""
        inputs[pyproject] = _stat(pyproject)
        declared.append(packages.declared_distributions(root))
        if not all(_is_declared(name, declared[0] or set()) for name in scout.externals):
            _installed(root, cache_dir, inputs)

    graph = _Graph(str(root), finder, parse)
    graph.build(bench_key, parse([k for k, n in scout.nodes.items() if n.exists], meanwhile))
    needs = graph.needs()
    return DependencyAnalysis(
        benchmark=bench_key,
        root=_tree(graph),
        local=[_dependency(n, needs.get(key, OPTIONAL)) for key, n in graph.nodes.items() if key != graph.root_key],
        external=_externals(graph, needs, declared[0], root, cache_dir, inputs),
        syntax_errors=graph.syntax_errors,
    )


# Paths below are plain strings joined with "/": pathlib costs several times more per call, and
# a cached analysis is mostly such calls. evopilot runs on POSIX systems only (tmux).


class _Module(NamedTuple):
    """Where an importable name lives: a file, or (namespace package) only directories."""

    name: str
    file: str | None
    search: list[str]
    """Directories its submodules are looked up in; empty for a plain module."""


class _Missing(NamedTuple):
    """A module an import needs that is not there."""

    name: str
    path: str | None
    problem: str


class _Node:
    __slots__ = ("name", "path", "exists", "problem", "edges")

    def __init__(self, name: str, path: str | None, exists: bool, problem: str | None = None) -> None:
        self.name = name
        self.path = path
        self.exists = exists
        self.problem = problem
        self.edges: dict[str, int] = {}
        """Target node key -> how it is needed (``REQUIRED``, ``LAZY``, ``OPTIONAL``); an edge
        imported two ways counts as the stronger."""


class _Finder:
    """Resolves module names to files in the project, listing each directory once per run."""

    def __init__(self, roots: list[str], inputs: dict[str, os.stat_result | None]) -> None:
        self.roots = roots
        self.inputs = inputs
        self._listings: dict[str, dict[str, bool]] = {}
        self._top: dict[str, _Module | None] = {}

    def entries(self, directory: str) -> dict[str, bool]:
        """Name -> is a directory, for everything in ``directory``."""
        listing = self._listings.get(directory)
        if listing is None:
            listing = {}
            # adding or removing an entry changes a directory's mtime: its stat stands for the listing
            self.inputs[directory] = _stat(directory)
            try:
                with os.scandir(directory) as it:
                    for entry in it:
                        listing[entry.name] = entry.is_dir()
            except OSError:
                pass  # a missing directory has no modules
            self._listings[directory] = listing
        return listing

    def find(self, dirs: list[str], name: str, part: str) -> _Module | None:
        """The module ``part`` in ``dirs`` in import-system order: a package with ``__init__.py``,
        then ``part.py``, each directory in turn; a namespace package only if neither exists."""
        portions: list[str] = []
        for d in dirs:
            listing = self.entries(d)
            if listing.get(part) is True:
                sub = f"{d}/{part}"
                if self.entries(sub).get("__init__.py") is False:
                    return _Module(name, f"{sub}/__init__.py", [sub])
                portions.append(sub)
            if listing.get(part + ".py") is False:
                return _Module(name, f"{d}/{part}.py", [])
        return _Module(name, None, portions) if portions else None

    def top_level(self, top: str) -> _Module | None:
        """A top-level module in the project, or None for the standard library or an external
        package. The script's directory and the import roots (PYTHONPATH) precede the standard
        library on sys.path, but a namespace portion there yields to a module found later."""
        if top not in self._top:
            self._top[top] = self._find_top(top)
        return self._top[top]

    def _find_top(self, top: str) -> _Module | None:
        if packages.is_builtin(top):
            return None
        found = self.find(self.roots, top, top)
        if found is not None and found.file is not None:
            return found
        if packages.is_stdlib(top):
            return None
        return found


class _Graph:
    """The local import graph from the benchmark, built breadth first, each file parsed once.

    Nodes are keyed by project-relative path (a missing module by ``missing:<name>``), so a
    module reached under two names or through a cycle is visited once."""

    def __init__(self, root: str, finder: _Finder, parse: Callable[[list[str]], dict[str, FileImports]]) -> None:
        self.root = root
        self.finder = finder
        self.parse = parse
        """The imports of each file (by node key) of a list, as ``_parse_files`` gives them."""
        self.nodes: dict[str, _Node] = {}
        self.root_key = ""
        self.externals: dict[str, list[tuple[str, int]]] = {}
        """Import name -> (importing node key, how it is needed) for each import of it."""
        self.syntax_errors: list[SyntaxIssue] = []

    def build(self, bench_key: str, ready: dict[str, FileImports] | None = None) -> None:
        """The graph from ``bench_key``; ``ready`` holds files already parsed (others are parsed
        as they are reached)."""
        self.root_key = bench_key
        self.nodes[bench_key] = _Node(bench_key.rpartition("/")[2].removesuffix(".py"), bench_key, True)
        queue: deque[tuple[str, _Module | None]] = deque([(bench_key, None)])
        prefix = len(self.root) + 1
        ready = dict(ready or {})
        while queue:
            key, module = queue.popleft()
            if key not in ready:  # the files queued so far, parsed together (see _extract_all)
                ready.update(self.parse([key, *(k for k, _ in queue if k not in ready)]))
            parsed = ready.pop(key)
            for problem in parsed.errors:
                self.syntax_errors.append(SyntaxIssue(path=key, line=problem.line, message=problem.message))
            for imp in parsed.imports:
                for target in self._resolve(key, module, imp):
                    if isinstance(target, _Missing):
                        target_key = f"missing:{target.name}"
                        inside = target.path is not None and target.path.startswith(self.root + "/")
                        rel = target.path[prefix:] if inside else None
                        self.nodes.setdefault(target_key, _Node(target.name, rel, False, target.problem))
                    elif target.file is not None:  # namespace packages have no code to follow
                        target_key = target.file[prefix:]
                        if target_key not in self.nodes:
                            self.nodes[target_key] = _Node(target.name, target_key, True)
                            queue.append((target_key, target))
                    else:
                        continue
                    edges = self.nodes[key].edges
                    if target_key != key:  # an edge imported two ways counts as the stronger
                        edges[target_key] = min(edges.get(target_key, OPTIONAL), _need(imp))

    def _resolve(self, key: str, importer: _Module | None, imp: Import) -> list[_Module | _Missing]:
        """The project modules one import statement loads, in order; records externals."""
        if imp.level:
            base = self._relative_base(key, importer, imp)
            if isinstance(base, _Missing):
                return [base]
            package = base
            parts = imp.module.split(".") if imp.module else []
        else:
            top, _, rest = imp.module.partition(".")
            found = self.finder.top_level(top)
            if found is None:
                if not packages.is_stdlib(top):
                    self._external(key, imp)
                return []
            package = found
            parts = rest.split(".") if rest else []
        chain: list[_Module | _Missing] = [package]
        for part in parts:
            name = f"{package.name}.{part}"
            if not package.search:
                chain.append(_Missing(name, None, f"{package.name!r} is not a package"))
                break
            found = self.finder.find(package.search, name, part)
            if found is None:
                chain.append(_Missing(name, f"{package.search[0]}/{part}.py", "no such file"))
                break
            chain.append(package := found)
        else:
            if package.search:  # `from pkg import name`: a submodule if such a file exists
                for attr in imp.names:
                    sub = self.finder.find(package.search, f"{package.name}.{attr}", attr)
                    if sub is not None:
                        chain.append(sub)
        # the package a relative import starts from is already loaded: its importer lives in it
        return chain[1:] if imp.level else chain

    def _relative_base(self, key: str, importer: _Module | None, imp: Import) -> _Module | _Missing:
        """The package ``from .`` (level 1), ``from ..`` (level 2) ... names, as Python finds it."""
        display = "." * imp.level + (imp.module or ", ".join(imp.names))
        if importer is None:  # the benchmark runs as a script: it has no package
            return _Missing(display, None, "relative import in a script run directly")
        package = importer.name if key.endswith("__init__.py") else importer.name.rpartition(".")[0]
        parts = package.split(".") if package else []
        if len(parts) < imp.level:
            return _Missing(display, None, "relative import beyond the top-level package")
        directory = f"{self.root}/{key}".rsplit("/", imp.level)[0]
        return _Module(".".join(parts[: len(parts) - imp.level + 1]), None, [directory])

    def _external(self, key: str, imp: Import) -> None:
        known = packages.known_distribution(imp.module)
        name = known[0] if known else imp.module.partition(".")[0]
        self.externals.setdefault(name, []).append((key, _need(imp)))

    def needs(self) -> dict[str, int]:
        """How each node is needed: ``REQUIRED`` if reachable from the benchmark through
        required imports, else ``LAZY`` if through required or lazy ones; the others are
        optional (absent from the result)."""
        need: dict[str, int] = {}
        for level in (REQUIRED, LAZY):
            seen = {self.root_key}
            queue = deque([self.root_key])
            while queue:
                for target, edge in self.nodes[queue.popleft()].edges.items():
                    if edge <= level and target not in seen:
                        seen.add(target)
                        queue.append(target)
            for key in seen:
                need.setdefault(key, level)
        return need


def _parse_files(root: str, keys: list[str], meanwhile: Callable[[], None] | None = None) -> dict[str, FileImports]:
    """The imports of each file (by key under ``root``); the same as parsing them one by one.
    ``meanwhile`` runs while they are parsed (``_extract_all``)."""
    sources: dict[str, bytes] = {}
    out: dict[str, FileImports] = {}
    for key in keys:
        try:
            with open(f"{root}/{key}", "rb") as f:
                sources[key] = f.read()
        except OSError as e:
            out[key] = FileImports([], [SyntaxProblem(1, f"cannot read: {e.strerror}")])
    out.update(zip(sources, _extract_all(list(sources.values()), meanwhile)))
    return out


# A line that starts an import statement, wherever it is (a string, a TYPE_CHECKING block):
# a guess that only decides which files are parsed early, never the analysis's result. It
# starts with the newline before the line (a literal: twice as fast as ``^`` in MULTILINE).
_GUESS = re.compile(
    r"\n[ \t]*(?:from[ \t]+(\.*)[ \t]*([\w.]*)[ \t]+import[ \t]*(\([^)]*\)|[^\n#;]*)|import[ \t]+([^\n#;]*))"
)


def _guess_imports(path: str) -> FileImports:
    """The imports a regex finds in the file at ``path``, without parsing it."""
    try:
        with open(path, "rb") as f:
            source = "\n" + f.read().decode("utf-8", "replace")
    except OSError:
        return FileImports([], [])
    found: list[Import] = []
    for dots, module, names, modules in _GUESS.findall(source):
        if modules:
            found.extend(Import(0, m, (), 0, False) for m in _names(modules) if is_dotted(m))
        elif (dots or module) and (not module or is_dotted(module)):
            found.append(Import(len(dots), module, tuple(n for n in _names(names) if n.isidentifier()), 0, False))
    return FileImports(found, [])


def _names(listed: str) -> list[str]:
    """``a as b, c`` (parenthesised, continued with backslashes, with comments) as ``[a, c]``."""
    listed = re.sub("#.*", "", listed)
    return [part.split(" as ")[0].strip(" \t\n\\()") for part in listed.split(",")]


# --- results ---------------------------------------------------------------------------------


def _tree(graph: _Graph) -> LocalDependency:
    """The import tree: a module appears under every module that imports it, but its own imports
    are expanded only once, under its nearest required importer (so a module the benchmark needs
    is never shown expanded only as optional)."""
    parent_of: dict[str, str] = {}
    depth = {graph.root_key: 0}
    for only_required in (True, False):
        queue = deque(depth)
        while queue:
            key = queue.popleft()
            if depth[key] >= MAX_TREE_DEPTH:
                continue
            for target, edge in graph.nodes[key].edges.items():
                if target in depth or (only_required and edge != REQUIRED):
                    continue
                depth[target] = depth[key] + 1
                parent_of[target] = key
                queue.append(target)

    def build(key: str, need: int) -> LocalDependency:
        node = graph.nodes[key]
        children = [
            build(target, max(need, edge))
            if parent_of.get(target) == key
            else _dependency(graph.nodes[target], max(need, edge))
            for target, edge in node.edges.items()
        ]
        return _dependency(node, need, children)

    return build(graph.root_key, REQUIRED)


def _dependency(node: _Node, need: int, children: list[LocalDependency] | None = None) -> LocalDependency:
    return LocalDependency(
        module_name=node.name,
        file_path=node.path,
        exists=node.exists,
        optional=need != REQUIRED,
        lazy=need == LAZY,
        problem=node.problem,
        children=children or [],
    )


def _is_declared(name: str, declared: set[str]) -> bool:
    """Whether pyproject declares a distribution the import ``name`` may come from."""
    return any(packages.normalize(c) in declared for c in packages.KNOWN_DISTRIBUTIONS.get(name) or [name])


def _externals(
    graph: _Graph,
    needs: dict[str, int],
    declared: set[str] | None,
    root: Path,
    cache_dir: Path | None,
    inputs: dict[str, os.stat_result | None],
) -> list[ExternalPackage]:
    declared = declared or set()
    installed: dict[str, list[str]] | None = None  # read only if some import is not declared
    out: list[ExternalPackage] = []
    for name, uses in sorted(graph.externals.items(), key=lambda kv: kv[0].lower()):
        known = packages.KNOWN_DISTRIBUTIONS.get(name)
        candidates = list(known) if known else [name]
        if not _is_declared(name, declared):
            if installed is None:
                installed = _installed(root, cache_dir, inputs)
            provided = installed.get(name.partition(".")[0], [])
            # a distribution named like the import comes first; otherwise a stable order
            wanted = packages.normalize(name)
            provided = sorted(provided, key=lambda d: (packages.normalize(d) != wanted, d.lower()))
            candidates = (list(known) + provided) if known else (provided or [name])
        in_pyproject = [c for c in candidates if packages.normalize(c) in declared]
        need = min(max(needs.get(k, OPTIONAL), use) for k, use in uses)
        out.append(
            ExternalPackage(
                import_name=name,
                distribution=(in_pyproject or candidates)[0],
                declared=bool(in_pyproject),
                optional=need != REQUIRED,
                lazy=need == LAZY,
                imported_by=list(dict.fromkeys(k for k, _ in uses)),
            )
        )
    return out


def render_tree(analysis: DependencyAnalysis) -> list[str]:
    """Plain-text lines: the local tree (missing files, optional imports and repeats marked),
    then external packages with their pyproject status, then syntax errors."""
    expanded = {n.file_path for n in _walk(analysis.root) if n.children}
    lines = [analysis.root.file_path or analysis.benchmark]

    def emit(node: LocalDependency, prefix: str, last: bool) -> None:
        label = f"{node.module_name} ({node.file_path})" if node.file_path else node.module_name
        if not node.exists:
            label += f"  MISSING: {node.problem or 'no such file'}"
        if node.optional:
            label += "  [lazy]" if node.lazy else "  [optional]"
        if not node.children and node.file_path in expanded:
            label += "  (expanded elsewhere)"
        lines.append(prefix + ("└── " if last else "├── ") + label)
        for i, child in enumerate(node.children):
            emit(child, prefix + ("    " if last else "│   "), i == len(node.children) - 1)

    for i, child in enumerate(analysis.root.children):
        emit(child, "", i == len(analysis.root.children) - 1)
    if analysis.external:
        lines.append("external packages:")
        for p in analysis.external:
            name = p.import_name
            if packages.normalize(name) != packages.normalize(p.distribution):
                name += f" -> {p.distribution}"
            status = "declared" if p.declared else "NOT DECLARED in pyproject.toml"
            extra = "  [lazy]" if p.lazy else "  [optional]" if p.optional else ""
            lines.append(f"  {name}  {status}{extra}  (imported by {', '.join(p.imported_by)})")
    if analysis.syntax_errors:
        lines.append("syntax errors:")
        lines.extend(f"  {e.path}:{e.line}: {e.message}" for e in analysis.syntax_errors)
    command = analysis.fix_command()
    if command:
        lines.append(f"fix: {command}")
    return lines


def _walk(node: LocalDependency):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(n.children)


# --- cache ---------------------------------------------------------------------------------

_CACHE_VERSION = stored.CACHE_VERSION
# A file changed within this many ns before its stat was recorded could change again without a
# new mtime or ctime (coarse file-system clocks): such a stat is not trusted to stand for content.
_RACY_NS = 2_000_000_000
_INSTALLED: dict[str, tuple[list, dict[str, list[str]]]] = {}
"""In-process memo of the installed mapping: site dirs key -> (fingerprint, mapping)."""
_RESULTS: dict[Path, tuple[dict, DependencyAnalysis]] = {}
"""In-process memo of stored analyses: result file -> (its input record, the analysis). Safe to
share because the models are frozen."""
_CODE = [
    *(str(Path(__file__).resolve().with_name(name))
      for name in ("deps.py", "imports.py", "models.py", "packages.py", "stored.py")),
    *(str(Path(module.__file__ or "").parent) for module in (tree_sitter, tree_sitter_python)),
]
"""The analysis's own sources and the parser's package directories: editing or upgrading any of
them invalidates both caches."""


def _code() -> list[list[int] | None]:
    return [_fingerprint(_stat(path)) for path in _CODE]


def _settled(st: os.stat_result | None, now: int) -> bool:
    return st is None or now - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS


def _load_result(result_file: Path, root: Path) -> DependencyAnalysis | None:
    """A stored analysis whose every input (files, directory listings, pyproject, site
    directories, this code, the interpreter) has the stat it had when it was stored. The last
    one per file is also kept in memory: a long-lived process skips re-reading it."""
    memo = _RESULTS.get(result_file)
    if memo is not None and stored.still_valid(memo[0], root):
        return memo[1]
    found = stored.load(result_file, root)
    if found is None:
        return None  # absent, stale or of another format: analyse afresh
    record, body = found
    try:
        result = DependencyAnalysis.model_validate_json(body)
    except (ValueError, KeyError, TypeError):
        return None  # corrupt
    _RESULTS[result_file] = (record, result)
    return result


def _save_result(
    result_file: Path, root: Path, inputs: dict[str, os.stat_result | None], result: DependencyAnalysis
) -> None:
    """Store the analysis with the stats of its inputs, unless one changed too recently for its
    stat to be trusted (then the next run recomputes, from the per-file cache)."""
    sites = stored.site_dirs(root)
    # stats taken before reading win over later ones: a change in between must not be hidden
    stats = {**{p: _stat(p) for p in (*sites, *_CODE)}, **inputs}
    now = time.time_ns()
    if not all(_settled(st, now) for st in stats.values()):
        return
    record = {
        "version": _CACHE_VERSION,
        "python": sys.version,
        "sites": sites,
        "paths": {path: _fingerprint(st) for path, st in stats.items()},
        "ok": result.ok,  # what `deps --json` prints besides the analysis (stored.printed)
        "fix_command": result.fix_command(),
    }
    body = result.model_dump_json()
    _write(result_file.parent, result_file, json.dumps(record).encode() + b"\n" + body.encode())
    _RESULTS[result_file] = (record, result)


class _ParseCache:
    """Per-project cache: path -> stat fingerprint and content hash; content hash -> imports.

    A file is re-read when its stat changed or was recent when recorded, and re-parsed only when
    its content hash is new. Written once per analysis, atomically.
    """

    def __init__(self, cache_dir: Path, root: Path, inputs: dict[str, os.stat_result | None]) -> None:
        self.dir = cache_dir
        self.root = str(root)
        self.file = cache_dir / f"imports-{_digest(self.root.encode())}.json"
        self.inputs = inputs
        self.dirty = False
        self.stats: dict[str, list] = {}
        self.parsed: dict[str, list] = {}
        try:
            data = json.loads(self.file.read_bytes())
            header = (data.get("version"), data.get("root"), data.get("code"))
            if header == (_CACHE_VERSION, self.root, _code()):
                self.stats, self.parsed = data["stats"], data["parsed"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # absent or corrupt: start empty

    def known(self, path: str) -> FileImports | None:
        """The stored imports of the file at ``path`` if its stat says it did not change."""
        return self._stored(path, _fingerprint(_stat(path)))

    def _stored(self, path: str, fingerprint: list[int] | None) -> FileImports | None:
        entry = self.stats.get(path)  # [fingerprint, content hash, whether settled when recorded]
        if entry is not None and entry[2] and entry[0] == fingerprint and entry[1] in self.parsed:
            return _from_json(self.parsed[entry[1]])
        return None

    def imports_all(
        self, keys: list[str], root: str, meanwhile: Callable[[], None] | None = None
    ) -> dict[str, FileImports]:
        """The imports of each file (by node key under ``root``); the new contents among them
        are parsed together, ``meanwhile`` running while they are (``_extract_all``)."""
        out: dict[str, FileImports] = {}
        new: dict[bytes, str] = {}  # content -> its hash, to parse
        read: list[tuple[str, str]] = []  # key and content hash of the files read
        for key in keys:
            path = f"{root}/{key}"
            st = self.inputs[path] = _stat(path)
            if st is None:
                out[key] = FileImports([], [SyntaxProblem(1, "cannot read: no such file")])
                continue
            fingerprint = _fingerprint(st)
            stored = self._stored(path, fingerprint)
            if stored is not None:
                out[key] = stored
                continue
            try:
                with open(path, "rb") as f:
                    source = f.read()
            except OSError as e:
                out[key] = FileImports([], [SyntaxProblem(1, f"cannot read: {e.strerror}")])
                continue
            digest = _digest(source)
            if digest not in self.parsed:
                new[source] = digest
            read.append((key, digest))
            new_entry = [fingerprint, digest, _settled(st, time.time_ns())]
            if new_entry != self.stats.get(path):  # unchanged and still racy: nothing worth a write
                self.stats[path] = new_entry
                self.dirty = True
        for digest, result in zip(new.values(), _extract_all(list(new), meanwhile)):
            self.parsed[digest] = _to_json(result)
        for key, digest in read:
            out[key] = _from_json(self.parsed[digest])
        return out

    def save(self) -> None:
        if not self.dirty:
            return
        used = {entry[1] for entry in self.stats.values()}
        data = {
            "version": _CACHE_VERSION,
            "code": _code(),
            "root": self.root,
            "stats": self.stats,
            "parsed": {h: v for h, v in self.parsed.items() if h in used},
        }
        _write(self.dir, self.file, json.dumps(data, separators=(",", ":")).encode())


_FORK_BYTES = 200_000
"""Below this much source to parse, a second process costs more than it saves."""


def _extract_all(sources: list[bytes], meanwhile: Callable[[], None] | None = None) -> list[FileImports]:
    """``extract`` of each source, after calling ``meanwhile`` (work that needs no parse).

    tree-sitter holds the GIL while it parses, so with enough to parse a forked child shares
    the work (grimp, which bench/cli.py compares with, parses on several threads): the child
    takes files from the largest down while this process runs ``meanwhile`` and then takes them
    from the smallest up, each claiming a file in a shared byte map, until they meet; so the one
    that gets more CPU parses more. Not in a process with other threads (the engine's), where a
    fork is unsafe."""
    total = sum(map(len, sources))
    threading = sys.modules.get("threading")
    if total < _FORK_BYTES or not hasattr(os, "fork") or (threading and threading.active_count() > 1):
        if meanwhile is not None:
            meanwhile()
        return [extract(s) for s in sources]
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]), reverse=True)
    claimed = mmap.mmap(-1, len(order))  # shared with the child; position k claims order[k]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse from the largest, send the results as JSON, leave without cleaning up
        code = 1
        try:
            os.close(read_fd)
            parsed = []
            for k, i in enumerate(order):
                if claimed[k]:
                    break  # this process's part ends where the parent's begins
                claimed[k] = 1
                parsed.append([i, _to_json(extract(sources[i]))])
            with os.fdopen(write_fd, "wb") as f:
                f.write(json.dumps(parsed).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    results: list[FileImports | None] = [None] * len(sources)
    reader = os.fdopen(read_fd, "rb")
    try:
        if meanwhile is not None:
            meanwhile()
        for k in range(len(order) - 1, -1, -1):
            if claimed[k]:
                break  # both may take the file where they meet: parsed twice, no harm
            claimed[k] = 1
            results[order[k]] = extract(sources[order[k]])
        data = reader.read()
    except BaseException:
        claimed[:] = b"\1" * len(order)  # the child stops at its next file
        raise
    finally:
        reader.close()  # before waiting: a child still writing gets a broken pipe, not a hang
        _, status = os.waitpid(pid, 0)
    try:
        if status != 0:
            raise ValueError("the parsing child failed")
        for i, found in json.loads(data):
            if results[i] is None:
                results[i] = _from_json(found)
    except (ValueError, TypeError):
        pass
    # what the child did not send (it failed) is parsed here after all
    return [extract(sources[i]) if r is None else r for i, r in enumerate(results)]


def _to_json(result: FileImports) -> list:
    imports = [[i.level, i.module, list(i.names), i.line, i.optional, i.lazy] for i in result.imports]
    return [imports, [list(e) for e in result.errors]]


def _from_json(data: list) -> FileImports:
    imports = [Import(level, module, tuple(names), line, opt, lazy) for level, module, names, line, opt, lazy in data[0]]
    return FileImports(imports, [SyntaxProblem(line, message) for line, message in data[1]])


def _installed(
    root: Path, cache_dir: Path | None, inputs: dict[str, os.stat_result | None]
) -> dict[str, list[str]]:
    """Import name -> installed distributions, recomputed only when a site directory changed
    (installing or removing a distribution adds or removes an entry there)."""
    dirs = stored.site_dirs(root)
    stats = {d: _stat(d) for d in dirs}
    inputs.update(stats)
    fingerprint = [[d, _fingerprint(st)] for d, st in stats.items()]
    key = _digest("\0".join(dirs).encode())
    memo = _INSTALLED.get(key)
    if memo is not None and memo[0] == fingerprint:
        return memo[1]
    cache_file = cache_dir / f"installed-{key}.json" if cache_dir is not None else None
    mapping: dict[str, list[str]] | None = None
    if cache_file is not None:
        try:
            data = json.loads(cache_file.read_bytes())
            if data["fingerprint"] == fingerprint:
                mapping = data["mapping"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # absent or corrupt: recompute
    if mapping is None:
        mapping = packages.installed_top_levels(dirs)
        if cache_file is not None:
            data = {"fingerprint": fingerprint, "mapping": mapping}
            _write(cache_dir, cache_file, json.dumps(data).encode())
    _INSTALLED[key] = (fingerprint, mapping)
    return mapping


def _write(directory: Path, target: Path, data: bytes) -> None:
    """Write owner-only via a unique temp file and rename, so concurrent writers never leave a
    torn file: the last complete write wins. A cache that cannot be written is not an error."""
    try:
        ensure_private_dir(directory)
        # unique and owner-only, as tempfile.mkstemp makes it (without importing tempfile)
        tmp = str(directory / f".tmp-{os.getpid()}-{time.monotonic_ns()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
