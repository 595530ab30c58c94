"""The built-in, offline mutator: perturb a few numeric literals, found with tree-sitter.

Scope: the literals between ``# EVOLVE-BLOCK-START`` and ``# EVOLVE-BLOCK-END`` comments; when
no file in scope has such a comment, every literal of the files. Markers are comments as
tree-sitter sees them (a marker inside a string does not count); an unbalanced or nested marker
is a MutationError naming its line.

Which literals are parameters. A literal is a candidate unless it is structure rather than a
setting:
- ints 0 and 1 (counters, loop starts, increments, flags) and float 0.0 (scaling cannot move it);
- hex, octal, binary (bit masks) and imaginary literals;
- anything inside a subscript's brackets (``x[0]``, ``a[1:]``: indices, not settings);
- an operand of ``**`` (``x ** 2``, ``10 ** -3``: the shape of a formula);
- anything inside a string (f-string interpolations) or a type annotation.
``range(...)`` gets no special rule: its start and step are almost always 0 or 1, left alone by
the first rule, and a stop of 2 or more is a count (steps, restarts) worth tuning.

How they move. Only the magnitude changes, so a sign never flips and a positive int never becomes
0: a float is multiplied by a factor drawn from [1-scale, 1+scale] and written with as many
significant digits as it had (at least 2), nudged by one unit in the last digit when rounding
would give it back unchanged; an int moves up or down by a step of 1 to scale*|value|, and never
below 1. Edits are made at tree-sitter's byte offsets, so nothing else in the file changes.

Deterministic: the same files, config and seed give the same mutation, in any process.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

import tree_sitter_python
from tree_sitter import Language, Node, Parser

from evopilot.core.evolution.mutators.base import (
    Mutation,
    MutationError,
    MutationRequest,
    ParamsMutatorConfig,
)

_LANGUAGE = Language(tree_sitter_python.language())
_PARSER = Parser(_LANGUAGE)

START, END = "EVOLVE-BLOCK-START", "EVOLVE-BLOCK-END"
_DECIMAL_INT = re.compile(r"[0-9][0-9_]*")
# where a literal's name is found for the summary (`lr` in `lr=0.1`), and where the search stops
_NAMED = {"assignment": "left", "augmented_assignment": "left", "keyword_argument": "name",
          "default_parameter": "name", "typed_default_parameter": "name"}
_STOP = {"module", "block", "expression_statement", "function_definition", "class_definition"}


@dataclass(frozen=True)
class Candidate:
    path: str
    start: int  # byte offsets in the file's UTF-8 encoding
    end: int
    text: str
    is_int: bool
    line: int
    negative: bool  # written as `-x`: the summary shows the sign, the edit keeps it
    node: Node


async def mutate(req: MutationRequest, cfg: ParamsMutatorConfig) -> Mutation:
    """The mutator's interface; the work is pure and fast (a few ms per file), done inline."""
    return perturb(req.files, cfg, req.seed)


def perturb(files: dict[str, str], cfg: ParamsMutatorConfig, seed: int) -> Mutation:
    paths = _paths_in_scope(files, cfg.files)
    sources = {p: files[p].encode("utf-8") for p in paths}
    trees = {p: _PARSER.parse(sources[p]) for p in paths}
    regions = {p: _regions(p, trees[p].root_node) for p in paths}
    marked = any(regions.values())
    candidates: list[Candidate] = []
    for p in paths:
        spans = regions[p] if marked else [(0, len(sources[p]))]
        candidates.extend(lit for lit in _literals(p, trees[p].root_node)
                          if any(a <= lit.start and lit.end <= b for a, b in spans))
    if not candidates:
        where = "the EVOLVE-BLOCK regions of " if marked else ""
        raise MutationError(f"no numeric literal to perturb in {where}{', '.join(paths)}")
    rng = random.Random(seed)
    chosen = sorted(rng.sample(candidates, min(cfg.changes, len(candidates))),
                    key=lambda lit: (lit.path, lit.start))
    edits: dict[str, list[tuple[int, int, str]]] = {}
    changes: list[str] = []
    for lit in chosen:
        new = _perturbed(lit.text, lit.is_int, cfg.scale, rng)
        edits.setdefault(lit.path, []).append((lit.start, lit.end, new))
        sign = "-" if lit.negative else ""
        name = _name_of(lit.node)
        changes.append(f"{name + ': ' if name else ''}{sign}{lit.text} -> {sign}{new} "
                       f"({lit.path} line {lit.line})")
    new_files = {}
    for path, spans in edits.items():
        data = sources[path]
        for start, end, text in sorted(spans, reverse=True):  # from the end: offsets stay valid
            data = data[:start] + text.encode() + data[end:]
        new_files[path] = data.decode("utf-8")
    # its answer, for `evolve show`: the changes, one a line
    return Mutation(files=new_files, summary="; ".join(changes), answer="\n".join(changes), usage=[])


def _paths_in_scope(files: dict[str, str], patterns: list[str]) -> list[str]:
    paths = sorted(p for p in files if p.endswith(".py"))
    if patterns:
        paths = [p for p in paths if any(fnmatchcase(p, pat) for pat in patterns)]
        if not paths:
            raise MutationError(f"no Python file in scope matches files = {patterns}")
    elif not paths:
        raise MutationError("no Python file in scope")
    return paths


def _regions(path: str, root: Node) -> list[tuple[int, int]]:
    """Byte spans between START and END marker comments."""
    regions: list[tuple[int, int]] = []
    opened: Node | None = None
    for comment in _comments(root):
        text = (comment.text or b"").decode("utf-8", "replace")
        line = comment.start_point[0] + 1
        if START in text:
            if opened is not None:
                raise MutationError(f"{path} line {line}: {START} inside the block opened on line "
                                    f"{opened.start_point[0] + 1}")
            opened = comment
        elif END in text:
            if opened is None:
                raise MutationError(f"{path} line {line}: {END} without a {START} before it")
            regions.append((opened.end_byte, comment.start_byte))
            opened = None
    if opened is not None:
        raise MutationError(f"{path} line {opened.start_point[0] + 1}: {START} has no {END}")
    return regions


def _comments(root: Node) -> list[Node]:
    found = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "comment":
            found.append(node)
        elif node.type != "string":
            stack.extend(node.children)
    return sorted(found, key=lambda n: n.start_byte)


def _literals(path: str, root: Node) -> list[Candidate]:
    """Candidate literals in file order (see the module docstring for what is left out)."""
    found: list[Candidate] = []
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, skip = stack.pop()
        kind = node.type
        if kind in ("string", "type"):
            continue
        if kind in ("integer", "float"):
            if not skip and _is_parameter(node):
                parent = node.parent
                negative = (parent is not None and parent.type == "unary_operator"
                            and parent.child_by_field_name("operator").type == "-")
                found.append(Candidate(path, node.start_byte, node.end_byte, node.text.decode(),
                                     kind == "integer", node.start_point[0] + 1, negative, node))
            continue
        power = kind == "binary_operator" and node.child_by_field_name("operator").type == "**"
        for i, child in enumerate(node.children):
            index = kind == "subscript" and node.field_name_for_child(i) == "subscript"
            exponent_or_base = power and child.type in ("integer", "float", "unary_operator")
            stack.append((child, skip or index or exponent_or_base))
    found.sort(key=lambda lit: lit.start)
    return found


def _is_parameter(node: Node) -> bool:
    text = node.text.decode()
    if node.type == "integer":
        return bool(_DECIMAL_INT.fullmatch(text)) and int(text) >= 2
    if text[-1] in "jJ":
        return False
    return float(text) != 0.0


def _perturbed(text: str, is_int: bool, scale: float, rng: random.Random) -> str:
    """The new text of a candidate literal's magnitude (always different from the old)."""
    if is_int:
        old = int(text)
        step = max(1, round(old * scale * rng.random()))
        new = max(1, old + rng.choice((-1, 1)) * step)
        return f"{new:_}" if "_" in text else str(new)
    old_f = float(text)
    factor = 1 + rng.uniform(-scale, scale)
    digits = max(2, min(15, _significant_digits(text)))
    new_f = float(f"{old_f * factor:.{digits}g}")
    if new_f == old_f:
        unit = 10.0 ** (math.floor(math.log10(old_f)) - digits + 1)
        new_f = float(f"{old_f + (unit if factor >= 1 else -unit):.{digits}g}")
    return repr(new_f)  # a float literal: always has a '.' or an exponent


def _significant_digits(text: str) -> int:
    mantissa = re.split("[eE]", text)[0].replace("_", "").replace(".", "")
    return len(mantissa.lstrip("0")) or 1


def _name_of(node: Node) -> str:
    """What the literal sets, for the summary: `lr` in `f(lr=0.1)`, `x` in `x = 2 * 0.5`."""
    current = node.parent
    while current is not None and current.type not in _STOP:
        field = _NAMED.get(current.type)
        if field is not None:
            target = current.child_by_field_name(field)
            if target is not None:
                text = (target.text or b"").decode("utf-8", "replace")
                return text if len(text) <= 40 else text[:37] + "..."
        current = current.parent
    return ""
