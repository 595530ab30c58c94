"""Import statements of one Python source file, found with tree-sitter.

Pure and per file: no file system, no resolution. The result is plain tuples so the
dependency cache can store it as JSON and rebuild it without re-parsing.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import tree_sitter_python
from tree_sitter import Language, Node, Parser

# One language and parser per process: building them costs more than parsing a small file.
# Threads may share them: py-tree-sitter holds the GIL while it parses.
_LANGUAGE = Language(tree_sitter_python.language())
_PARSER = Parser(_LANGUAGE)


def _kind(name: str) -> int:
    kind = _LANGUAGE.id_for_node_kind(name, True)
    if kind is None:
        raise RuntimeError(f"tree-sitter-python has no node kind {name!r}: unsupported grammar version")
    return kind


# Numeric kinds and fields: comparing ints spares a string per node visited.
_IMPORT_STATEMENT = _kind("import_statement")
_IMPORTS = frozenset({_IMPORT_STATEMENT, _kind("import_from_statement")})  # not `from __future__`
_ALIASED_IMPORT = _kind("aliased_import")
_DOTTED_NAME = _kind("dotted_name")
_RELATIVE_IMPORT = _kind("relative_import")
_TRY = _kind("try_statement")
_IF = _kind("if_statement")
_ELIF = _kind("elif_clause")
_FUNCTION = _kind("function_definition")
_BLOCK = _kind("block")
# Nodes that hold statements. Imports are statements, so the walk never enters an expression;
# ERROR is here so that imports tree-sitter recovered around a syntax error are still found.
_CONTAINERS = frozenset(
    _kind(name)
    for name in (
        "block", "if_statement", "elif_clause", "else_clause", "for_statement", "while_statement",
        "try_statement", "except_clause", "finally_clause", "with_statement", "function_definition",
        "class_definition", "decorated_definition", "match_statement", "case_clause", "ERROR",
    )
)
_NAME = _LANGUAGE.field_id_for_name("name")
_MODULE_NAME = _LANGUAGE.field_id_for_name("module_name")
_CONDITION = _LANGUAGE.field_id_for_name("condition")

# Exceptions whose handler makes an import in the `try` body optional; a bare `except:` too.
_CATCHES_IMPORT_ERROR = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
# PEP 263 coding declaration: a file that declares another encoding may legitimately not be UTF-8.
_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")


class Import(NamedTuple):
    """One imported module: ``import a.b`` is (0, "a.b", ()); ``from ..p import x, y`` is
    (2, "p", ("x", "y")); a wildcard import has no names."""

    level: int
    module: str
    names: tuple[str, ...]
    line: int
    optional: bool
    lazy: bool = False
    """Inside a function body: it runs only when the function is called (often behind a
    runtime check, like httpx's ``trio`` import), not when the module is imported."""


class SyntaxProblem(NamedTuple):
    line: int
    message: str


class FileImports(NamedTuple):
    imports: list[Import]
    errors: list[SyntaxProblem]


def extract(source: bytes) -> FileImports:
    """Every runtime import in ``source``, with whether a ``try/except ImportError`` guards it.

    Imports under ``if TYPE_CHECKING:`` are left out (they never run). Syntax errors are
    reported by line and the imports tree-sitter recovered around them are still returned.
    """
    tree = _PARSER.parse(source)
    imports: list[Import] = []
    for node, optional, lazy in _import_statements(tree.root_node):
        imports.extend(_imports_of(node, node.start_point[0] + 1, optional, lazy))
    imports.sort(key=lambda i: i.line)
    errors = _syntax_errors(tree.root_node) if tree.root_node.has_error else []
    bad_lines = _undecodable_lines(source)
    if bad_lines:
        # tree-sitter cuts a name at a bad byte (`caf\xe9` -> `caf`): drop such guesses
        imports = [i for i in imports if i.line not in bad_lines]
        errors.append(SyntaxProblem(min(bad_lines), "not valid UTF-8 (and no coding declaration)"))
        errors.sort()
    return FileImports(imports, errors)


def _import_statements(root: Node) -> list[tuple[Node, bool, bool]]:
    """Every import statement that runs, with whether it is optional and whether it is lazy
    (in a function body), in one walk down the statements (a walk up from each import would
    cost more: tree-sitter finds a node's parent by searching down from the root)."""
    found: list[tuple[Node, bool, bool]] = []
    stack = [(root, False, False)]
    while stack:
        node, optional, lazy = stack.pop()
        kind = node.kind_id
        # what the node's own block (a try's body, an if's consequence) is: guarded, skipped, as is
        block_optional: bool | None = optional
        if kind == _TRY:
            block_optional = optional or _guards_import(node)
        elif kind == _IF or kind == _ELIF:
            if _is_type_checking(node.child_by_field_id(_CONDITION)):
                block_optional = None  # never runs
        elif kind == _FUNCTION:  # its body runs when called: a try around the def guards nothing
            optional = block_optional = False
            lazy = True
        for child in node.named_children:
            child_kind = child.kind_id
            if child_kind in _IMPORTS:
                found.append((child, optional, lazy))
            elif child_kind == _BLOCK:
                if block_optional is not None:
                    stack.append((child, block_optional, lazy))
            elif child_kind in _CONTAINERS:
                stack.append((child, optional, lazy))
    return found


def _guards_import(try_node: Node) -> bool:
    for clause in try_node.named_children:
        if clause.type != "except_clause":
            continue
        values = clause.children_by_field_name("value")
        if not values:
            return True  # bare `except:`
        if _CATCHES_IMPORT_ERROR.intersection(_exception_names(values)):
            return True
    return False


def _exception_names(nodes: list[Node]) -> list[str]:
    names: list[str] = []
    for node in nodes:
        if node.type == "as_pattern":  # `except X as e`: only X matters
            names.extend(_exception_names(node.named_children[:1]))
        elif node.type == "identifier":
            names.append(_text(node))
        elif node.type == "attribute":  # `builtins.ImportError`
            names.append(_text(node.child_by_field_name("attribute")))
        else:  # tuple, parenthesized expression
            names.extend(_exception_names(node.named_children))
    return names


def _is_type_checking(condition: Node | None) -> bool:
    if condition is None:
        return False
    if condition.type == "identifier":
        return _text(condition) == "TYPE_CHECKING"
    if condition.type == "attribute":
        return _text(condition.child_by_field_name("attribute")) == "TYPE_CHECKING"
    return False


def is_dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _imports_of(node: Node, line: int, optional: bool, lazy: bool) -> list[Import]:
    if node.kind_id == _IMPORT_STATEMENT:
        modules = [_dotted(n) for n in node.children_by_field_id(_NAME)]
        return [Import(0, m, (), line, optional, lazy) for m in modules if m is not None]
    module_node = node.child_by_field_id(_MODULE_NAME)
    if module_node is None:  # recovered from a syntax error without its module
        return []
    level = 0
    if module_node.kind_id == _RELATIVE_IMPORT:
        prefix, *inner = module_node.named_children
        level = _text(prefix).count(".")  # `from . . import x` is legal: count dots, not bytes
        module = _dotted(inner[0]) if inner else ""
    else:
        module = _dotted(module_node)
    if module is None:
        return []
    names = tuple(name for name in map(_dotted, node.children_by_field_id(_NAME)) if name is not None)
    return [Import(level, module, names, line, optional, lazy)]


def _dotted(node: Node | None) -> str | None:
    """``a.b.c`` (of ``a.b.c as d`` too) as text, or None when it is not a valid module path."""
    if node is not None and node.kind_id == _ALIASED_IMPORT:
        node = node.child_by_field_id(_NAME)
    if node is None or node.kind_id != _DOTTED_NAME:
        return None
    text = _text(node)
    if is_dotted(text):  # the usual case: no spaces or comments inside
        return text
    parts = [_text(c) for c in node.named_children]
    if not parts or not all(p.isidentifier() for p in parts):
        return None  # e.g. a name cut short by invalid UTF-8
    return ".".join(parts)


def _text(node: Node | None) -> str:
    return (node.text or b"").decode("utf-8", "replace") if node is not None else ""


def _syntax_errors(root: Node) -> list[SyntaxProblem]:
    """The outermost ERROR and MISSING nodes; only subtrees that contain an error are walked."""
    problems: list[SyntaxProblem] = []
    stack = [root]
    while stack:
        node = stack.pop()
        line = node.start_point[0] + 1
        if node.is_error:
            text = _text(node).strip()
            snippet = text.splitlines()[0][:40] if text else ""
            message = f"invalid syntax near {snippet!r}" if snippet else "invalid syntax"
            problems.append(SyntaxProblem(line, message))
        elif node.is_missing:
            problems.append(SyntaxProblem(line, f"missing {node.type!r}"))
        else:
            stack.extend(reversed([c for c in node.children if c.has_error or c.is_missing]))
    return problems


def _undecodable_lines(source: bytes) -> set[int]:
    """Lines that are not UTF-8, in a file that does not declare another encoding in line 1
    or 2 (Python refuses such a file); empty for a well-formed file."""
    try:
        source.decode("utf-8")
        return set()
    except UnicodeDecodeError:
        pass
    lines = source.split(b"\n")
    declared = [m.group(1).lower() for line in lines[:2] if (m := _CODING.match(line))]
    if declared and declared[0] not in (b"utf-8", b"utf8"):
        return set()
    bad = set()
    for number, line in enumerate(lines, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(number)
    return bad
