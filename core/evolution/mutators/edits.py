"""Turn a model's answer into new file contents: SEARCH/REPLACE blocks or whole files. Pure.

SEARCH/REPLACE blocks, each preceded by the path of its file (a block without a path line uses
the previous block's file, or the only file in scope)::

    path/to/file.py
    <<<<<<< SEARCH
    old lines
    =======
    new lines
    >>>>>>> REPLACE

Markers may have 5 to 9 characters; code fences and markdown around paths are ignored. Blocks
apply in order, each to the file as the blocks before it left it. A block applies where its
SEARCH lines match exactly; failing that, where they match ignoring trailing whitespace and
indentation, as long as the indentation differs by the same amount on every line (tabs count as
4, 8 or 2 columns, whichever makes it so), and the REPLACE lines are then shifted by that amount.
REPLACE lines are always indented in the file's style: tabs (of 4 columns, unless the match says
otherwise) when most of its indented lines use tabs, else spaces.

A SEARCH that matches in more than one place fails rather than guess which place the model
meant; one that matches nowhere fails. Both failures name the block. An empty SEARCH appends to
the file, or creates a new file at a path not in scope. Paths must stay inside the project (no
absolute paths, no ``..``, not in .git).

Line endings: a file with CRLF endings keeps them; answers may use either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from evopilot.core.evolution.mutators.base import MutationError

_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
_TAB_WIDTHS = (4, 8, 2)


@dataclass(frozen=True)
class Block:
    number: int  # 1-based, in the answer's order, for error messages
    path: str | None  # None: no path line and no earlier block to inherit one from
    search: list[str]
    replace: list[str]


def has_search_replace(answer: str) -> bool:
    return any(_SEARCH.match(line) for line in answer.splitlines())


def apply_answer(files: dict[str, str], answer: str) -> dict[str, str]:
    """The files an answer changes, whichever of the two forms it uses."""
    if has_search_replace(answer):
        return apply_search_replace(files, answer)
    return parse_full_rewrite(files, answer)


def parse_search_replace(answer: str) -> list[Block]:
    lines = answer.replace("\r\n", "\n").split("\n")
    blocks: list[Block] = []
    path: str | None = None
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        number = len(blocks) + 1
        path = _path_before(lines, i, skip_fences=True) or path
        search, i = _section(lines, i + 1, _DIVIDER, number, "=======")
        replace, i = _section(lines, i + 1, _REPLACE, number, ">>>>>>> REPLACE")
        blocks.append(Block(number, path, search, replace))
        i += 1
    return blocks


def _section(lines: list[str], i: int, end: re.Pattern[str], number: int, marker: str) -> tuple[list[str], int]:
    start = i
    while i < len(lines) and not end.match(lines[i]):
        if _SEARCH.match(lines[i]):
            break
        i += 1
    if i == len(lines) or not end.match(lines[i]):
        raise MutationError(f"SEARCH block {number} is not closed (no {marker} line)")
    return lines[start:i], i


def _path_before(lines: list[str], i: int, skip_fences: bool) -> str | None:
    """The path named on the nearest non-blank line above ``i`` (above the fence that opens
    the block, when ``skip_fences``); a fence closing an earlier block names nothing."""
    for line in reversed(lines[max(0, i - 3):i]):
        if not line.strip():
            continue
        if _FENCE.match(line):
            if skip_fences:
                continue
            return None
        return _clean_path(line)
    return None


def _resolve(name: str, files: dict[str, str]) -> str:
    """``name`` as a path in scope: models often drop the folders (``x.py`` for ``src/x.py``)."""
    if name in files:
        return name
    matches = [p for p in files if p.endswith("/" + name)]
    return matches[0] if len(matches) == 1 else name


def first_prose_line(answer: str) -> str:
    """The model's one-sentence idea: the first line before any code that is not a path."""
    for line in answer.replace("\r\n", "\n").split("\n"):
        if _FENCE.match(line) or _SEARCH.match(line):
            break
        if line.strip() and _clean_path(line) is None:
            return " ".join(line.split())[:120]
    return ""


def _clean_path(line: str) -> str | None:
    """``src/x.py`` from ``**src/x.py**``, ``### File: `src/x.py`:`` and the like; None when
    the line is prose, a marker or code rather than a path."""
    text = line.strip().strip("#*` ")
    text = re.sub(r"^(file|path)\s*:\s*", "", text, flags=re.IGNORECASE).strip("`*: ")
    if not text or " " in text or not re.search(r"[\w]\.\w+$", text) or _REPLACE.match(line):
        return None
    return text


def _check_path(path: str, what: str) -> None:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or "\\" in path:
        raise MutationError(f"{what} names a path outside the project: {path}")
    if p.parts[0] == ".git":  # hooks there would run on the next commit
        raise MutationError(f"{what} names a path inside .git: {path}")


def apply_search_replace(files: dict[str, str], answer: str) -> dict[str, str]:
    """New content of every file the answer's SEARCH/REPLACE blocks change (only those)."""
    blocks = parse_search_replace(answer)
    if not blocks:
        raise MutationError("the answer has no SEARCH/REPLACE block")
    current = dict(files)
    for block in blocks:
        path = _target(block, files)
        if path not in current:  # a new file: only an empty SEARCH can create one
            if any(line.strip() for line in block.search):
                raise MutationError(f"SEARCH block {block.number} names {path}, which is not in scope")
            current[path] = _join(block.replace, "\n", True)
            continue
        current[path] = _apply_block(current[path], block, path)
    return {p: text for p, text in current.items() if files.get(p) != text}


def _target(block: Block, files: dict[str, str]) -> str:
    if block.path is not None:
        path = _resolve(block.path, files)
        if path in files:
            return path
        _check_path(path, f"SEARCH block {block.number}")
        if len(files) == 1 and any(line.strip() for line in block.search):
            return next(iter(files))  # a mangled name for the only file there is
        return path
    if len(files) == 1:
        return next(iter(files))
    raise MutationError(f"SEARCH block {block.number} names no file ({len(files)} files in scope)")


def _apply_block(text: str, block: Block, path: str) -> str:
    newline = "\r\n" if "\r\n" in text else "\n"
    body = text.replace("\r\n", "\n")
    final_newline = body.endswith("\n") or not body
    lines = body.split("\n")
    if final_newline:
        lines.pop()
    search, n = block.search, len(block.search)
    if not any(line.strip() for line in search):
        if search:  # only blank lines: they would match anywhere
            raise MutationError(f"SEARCH block {block.number} for {path} holds only blank lines")
        start, delta, tab = len(lines), 0, _TAB_WIDTHS[0]  # append
    elif len(exact := [i for i in range(len(lines) - n + 1) if lines[i:i + n] == search]) == 1:
        start, delta, tab = exact[0], 0, _TAB_WIDTHS[0]
    elif exact:
        raise _ambiguous(block, path, exact)
    else:
        loose = [(i, shift) for i in range(len(lines) - n + 1)
                 if (shift := _indent_shift(lines[i:i + n], search)) is not None]
        if len(loose) > 1:
            raise _ambiguous(block, path, [i for i, _ in loose])
        if not loose:
            first = next(line for line in search if line.strip()).strip()
            raise MutationError(f"SEARCH block {block.number} does not match {path} "
                                f"(its first line: {first[:60]!r})")
        start, (delta, tab) = loose[0]
    uses_tabs = sum(line.startswith("\t") for line in lines) > sum(line.startswith(" ") for line in lines)
    replace = [_reindent(line, delta, tab, uses_tabs) for line in block.replace]
    return _join(lines[:start] + replace + lines[start + n:], newline, final_newline)


def _ambiguous(block: Block, path: str, starts: list[int]) -> MutationError:
    where = ", ".join(str(i + 1) for i in starts[:5])
    return MutationError(f"SEARCH block {block.number} matches {len(starts)} places in {path} "
                         f"(lines {where}); it must match one")


def _indent_shift(window: list[str], search: list[str]) -> tuple[int, int] | None:
    """(columns to add to the SEARCH indentation to get the file's, tab width) when the lines are
    equal but for trailing whitespace and one consistent indentation shift; else None."""
    if any(a.strip() != b.strip() for a, b in zip(window, search, strict=True)):
        return None
    pairs = [(a, b) for a, b in zip(window, search, strict=True) if a.strip()]
    for tab in _TAB_WIDTHS:
        shifts = {_columns(a, tab) - _columns(b, tab) for a, b in pairs}
        if len(shifts) == 1:
            return shifts.pop(), tab
    return None


def _columns(line: str, tab: int) -> int:
    indent = line[:len(line) - len(line.lstrip())]
    return len(indent.expandtabs(tab))


def _reindent(line: str, delta: int, tab: int, uses_tabs: bool) -> str:
    if not line.strip():
        return ""
    width = max(0, _columns(line, tab) + delta)
    indent = "\t" * (width // tab) + " " * (width % tab) if uses_tabs else " " * width
    return indent + line.lstrip()


def _join(lines: list[str], newline: str, final_newline: bool) -> str:
    text = newline.join(lines)
    return text + newline if final_newline and lines else text


def parse_full_rewrite(files: dict[str, str], answer: str) -> dict[str, str]:
    """New content of every file the answer rewrites whole, one fenced code block per file.

    A block belongs to the file named on the line above its fence or on its own first line as a
    comment (``# src/x.py``); with one file in scope, a lone block needs no name. Blocks must
    name files in scope; an unnamed block among several fails, as does an answer with no block.
    """
    blocks = _fenced_blocks(answer)
    if not blocks:
        raise MutationError("the answer has no code block")
    only = next(iter(files)) if len(files) == 1 else None
    new: dict[str, str] = {}
    for number, (name, body) in enumerate(blocks, 1):
        if name is None:
            if only is None or len(blocks) > 1:
                raise MutationError(f"code block {number} names no file ({len(files)} files in scope, "
                                    f"{len(blocks)} blocks)")
            name = only
        elif (name := _resolve(name, files)) not in files:
            _check_path(name, f"code block {number}")
            if only is None:
                raise MutationError(f"code block {number} names {name}, which is not in scope")
            if len(blocks) > 1:
                continue  # an example beside the named rewrite of the one file
            name = only
        if name in new:
            raise MutationError(f"code blocks name {name} twice")
        newline = "\r\n" if "\r\n" in files[name] else "\n"
        new[name] = _join(body, newline, True)
    if not new:
        raise MutationError("no code block names a file in scope")
    return {p: text for p, text in new.items() if files[p] != text}


def _fenced_blocks(answer: str) -> list[tuple[str | None, list[str]]]:
    """(file named for it, body lines) of each fenced block; a block closes at a fence of the same
    character at least as long as its opening one."""
    lines = answer.replace("\r\n", "\n").split("\n")
    blocks: list[tuple[str | None, list[str]]] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening.group(1)
        name = _path_before(lines, i, skip_fences=False)
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            j += 1
        body = lines[i + 1:j]
        info = opening.group(2).strip()
        if name is None and info and " " not in info and "." in info:
            name = _clean_path(info)  # ```src/x.py
        if name is None and body and body[0].lstrip().startswith("#"):
            name = _clean_path(body[0].lstrip()[1:])
            if name is not None:
                body = body[1:]
        blocks.append((name, body))
        i = j + 1
    return blocks


def _closes(line: str, fence: str) -> bool:
    text = line.strip()
    return len(text) >= len(fence) and set(text) == {fence[0]}
