"""Mutators of code evolution: params on real files, SEARCH/REPLACE and full rewrites, the llm
mutator against a local stand-in for a paid chat API, and the command mutator's pure helpers."""

from __future__ import annotations

import ast
import io
import json
import socket
import subprocess
import sys
import time
import tokenize

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from evopilot.core.errors import EvopilotError
from evopilot.core.evolution.mutators import params
from evopilot.core.evolution.mutators.base import (
    CommandMutatorConfig,
    LlmMutatorConfig,
    MutationError,
    MutationRequest,
    MutatorConfig,
    ParamsMutatorConfig,
)
from evopilot.core.evolution.mutators.command import parse_usage, render_command
from evopilot.core.evolution.mutators.edits import apply_answer, apply_search_replace, parse_full_rewrite
from evopilot.core.evolution.mutators.llm import LlmMutator
from tests.chat_api import FakeChatApi, completion, refusal

SOLVER = '''\
"""A toy annealer."""
import random

SEED = 7  # outside the block: never touched


def helper(xs):
    return xs[0] + xs[-1] * 3


# EVOLVE-BLOCK-START
TEMPERATURE = 0.5
COOLING = 0.95
STEPS = 2_000
OFFSET = -3.5


def solve(points, restarts=4, *, tol: float = 1e-6):
    best = None
    for r in range(1, restarts + 1):
        t = TEMPERATURE * 10 ** -2 + OFFSET
        for i in range(STEPS):
            x = points[i % len(points)] ** 2 + len(f"{i:3d} {i + 17}")
            if best is None or x < best + tol:
                best = x * COOLING
    return best if best is not None else 0.0
# EVOLVE-BLOCK-END

LIMIT = 100
'''

BLOCK_START = SOLVER.index("# EVOLVE-BLOCK-START")
BLOCK_END = SOLVER.index("# EVOLVE-BLOCK-END")


def numbers(source: str) -> list[str]:
    """Every NUMBER token, as Python's own tokenizer sees it (independent of tree-sitter)."""
    return [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type == tokenize.NUMBER]


# --- params -----------------------------------------------------------------------------------


def test_params_changes_only_literals_inside_the_block():
    for seed in range(30):
        m = params.perturb({"solver.py": SOLVER}, ParamsMutatorConfig(changes=3), seed)
        new = m.files["solver.py"]
        ast.parse(new)
        assert new[:BLOCK_START] == SOLVER[:BLOCK_START]
        assert new[new.index("# EVOLVE-BLOCK-END"):] == SOLVER[BLOCK_END:]
        before, after = numbers(SOLVER), numbers(new)
        assert len(before) == len(after)
        changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert len(changed) == 3
        # the tunable literals of the block; structure (0, 1, indices, powers, f-strings) stays
        assert {a for a, _ in changed} <= {"0.5", "0.95", "2_000", "3.5", "4", "1e-6"}
        assert m.summary.count(" -> ") == 3 and m.usage == []


def test_params_is_deterministic_across_processes():
    cfg = ParamsMutatorConfig(changes=2, scale=0.3)
    runs = {params.perturb({"solver.py": SOLVER}, cfg, seed).files["solver.py"] for seed in range(12)}
    assert len(runs) > 6  # different seeds explore
    mine = params.perturb({"solver.py": SOLVER}, cfg, 42)
    code = ("import sys, json; from evopilot.core.evolution.mutators import params; "
            "from evopilot.core.evolution.mutators.base import ParamsMutatorConfig as C; "
            "m = params.perturb({'solver.py': sys.stdin.read()}, C(changes=2, scale=0.3), 42); "
            "print(json.dumps([m.files, m.summary]))")
    for hashseed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], input=SOLVER, capture_output=True, text=True,
                             env={"PYTHONHASHSEED": hashseed, "PATH": "/usr/bin:/bin"}, check=True).stdout
        assert json.loads(out) == [mine.files, mine.summary]


def test_params_summary_names_what_changed():
    m = params.perturb({"solver.py": SOLVER}, ParamsMutatorConfig(changes=10), 3)
    # more changes asked than there are candidates: all six change, in file order
    names = [part.split(":")[0] for part in m.summary.split("; ")]
    assert names == ["TEMPERATURE", "COOLING", "STEPS", "OFFSET", "restarts", "tol"]
    assert "OFFSET: -3.5 -> -" in m.summary and "(solver.py line 15)" in m.summary


def test_params_keeps_signs_and_never_zeroes_a_positive_int():
    src = "a = 2\nb = -2\nc = 0.001\nd = 3_000_000\n"
    for seed in range(200):
        m = params.perturb({"x.py": src}, ParamsMutatorConfig(changes=4, scale=0.9), seed)
        ns: dict = {}
        exec(m.files["x.py"], ns)
        assert ns["a"] >= 1 and ns["a"] != 2
        assert ns["b"] <= -1 and ns["b"] != -2
        assert ns["c"] > 0 and ns["c"] != 0.001 and isinstance(ns["c"], float)
        assert ns["d"] >= 1 and ns["d"] != 3_000_000 and "_" in m.files["x.py"].splitlines()[3]


def test_params_whole_file_without_markers_and_only_marked_files_with_them():
    plain = "RATE = 0.25\n"
    m = params.perturb({"a.py": plain}, ParamsMutatorConfig(changes=1), 0)
    assert m.files["a.py"] != plain and m.summary.startswith("RATE: 0.25 -> ")
    # a marked file in scope: unmarked files are not evolved at all
    for seed in range(20):
        m = params.perturb({"a.py": plain, "solver.py": SOLVER}, ParamsMutatorConfig(changes=2), seed)
        assert set(m.files) == {"solver.py"}


def test_params_leaves_structure_alone():
    src = ('x = 0\ny = 1\nz = a[2] + b[3:5]\nw = x ** 2\nmask = 0x1F\nc = 3j\n'
           's = f"{x + 5}"\nt = 0.0\n"EVOLVE-BLOCK-START in a string is not a marker"\n')
    with pytest.raises(MutationError, match=r"^no numeric literal to perturb in x\.py$"):
        params.perturb({"x.py": src}, ParamsMutatorConfig(), 0)


def test_params_file_patterns_and_errors():
    files = {"src/a.py": "A = 5\n", "src/b.py": "B = 7\n", "README.md": "x = 5\n"}
    m = params.perturb(files, ParamsMutatorConfig(changes=5, files=["src/b*"]), 1)
    assert set(m.files) == {"src/b.py"}
    with pytest.raises(MutationError, match=r"no Python file in scope matches files = \['lib/\*'\]"):
        params.perturb(files, ParamsMutatorConfig(files=["lib/*"]), 1)
    with pytest.raises(MutationError, match=r"^x\.py line 3: EVOLVE-BLOCK-START has no EVOLVE-BLOCK-END$"):
        params.perturb({"x.py": "A = 2\n\n# EVOLVE-BLOCK-START\nB = 3\n"}, ParamsMutatorConfig(), 0)
    with pytest.raises(MutationError, match=r"line 2: EVOLVE-BLOCK-END without"):
        params.perturb({"x.py": "A = 2\n# EVOLVE-BLOCK-END\n"}, ParamsMutatorConfig(), 0)
    with pytest.raises(MutationError, match=r"line 2: EVOLVE-BLOCK-START inside the block opened on line 1"):
        params.perturb({"x.py": "# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-START\n"}, ParamsMutatorConfig(), 0)


async def test_params_mutate_interface():
    m = await params.mutate(MutationRequest(files={"solver.py": SOLVER}, prompt="", seed=5),
                            ParamsMutatorConfig())
    assert m.files == params.perturb({"solver.py": SOLVER}, ParamsMutatorConfig(), 5).files


# --- SEARCH/REPLACE ---------------------------------------------------------------------------

CODE = "def f(x):\n    y = x + 1\n    return y\n\n\ndef g(x):\n    return x * 2\n"


def sr(path: str | None, search: str, replace: str) -> str:
    head = f"{path}\n" if path else ""
    return f"{head}<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def test_search_replace_exact_blocks_in_order():
    answer = ("Double the step.\n" + sr("m.py", "    y = x + 1\n", "    y = x + 2\n")
              + sr(None, "    y = x + 2\n    return y\n", "    return x + 2\n"))  # inherits m.py
    assert apply_search_replace({"m.py": CODE}, answer) == {
        "m.py": "def f(x):\n    return x + 2\n\n\ndef g(x):\n    return x * 2\n"}


def test_search_replace_in_fences_with_markdown_paths_and_two_files():
    answer = ("**src/a.py**\n```python\n" + sr(None, "A = 1\n", "A = 10\n") + "```\n\n"
              "### File: `src/b.py`\n```python\n" + sr(None, "B = 2\n", "B = 20\n") + "```\n")
    files = {"src/a.py": "A = 1\n", "src/b.py": "B = 2\n", "src/c.py": "C = 3\n"}
    assert apply_search_replace(files, answer) == {"src/a.py": "A = 10\n", "src/b.py": "B = 20\n"}
    # a name without its folders, when it is unambiguous
    assert apply_search_replace(files, sr("a.py", "A = 1\n", "A = 5\n")) == {"src/a.py": "A = 5\n"}


def test_search_replace_keeps_crlf_and_missing_final_newline():
    crlf = CODE.replace("\n", "\r\n")
    answer = sr("m.py", "    return x * 2\n", "    return x * 3\n").replace("\n", "\r\n")
    assert apply_search_replace({"m.py": crlf}, answer)["m.py"] == crlf.replace("x * 2", "x * 3")
    bare = "a = 1\nb = 2"
    assert apply_search_replace({"m.py": bare}, sr("m.py", "b = 2\n", "b = 3\n")) == {"m.py": "a = 1\nb = 3"}


def test_search_replace_tolerates_indentation_and_trailing_whitespace():
    cls = "class A:\n    def f(self):\n        return 1   \n\n    def g(self):\n        return 2\n"
    # the model dropped the class's indentation and the trailing spaces
    answer = sr("a.py", "def f(self):\n    return 1\n", "def f(self):\n    if self:\n        return 3\n    return 1\n")
    assert apply_search_replace({"a.py": cls}, answer)["a.py"] == (
        "class A:\n    def f(self):\n        if self:\n            return 3\n        return 1\n\n"
        "    def g(self):\n        return 2\n")
    # a file indented with tabs, an answer with spaces: the replacement comes out in tabs
    tabs = "class A:\n\tdef f(self):\n\t\treturn 1\n"
    answer = sr("a.py", "    def f(self):\n        return 1\n", "    def f(self):\n        return 4\n")
    assert apply_search_replace({"a.py": tabs}, answer)["a.py"] == "class A:\n\tdef f(self):\n\t\treturn 4\n"


def test_search_replace_inconsistent_indentation_does_not_match():
    answer = sr("m.py", "def f(x):\ny = x + 1\n", "def f(x):\n    y = 0\n")
    with pytest.raises(MutationError, match=r"^SEARCH block 1 does not match m\.py \(its first line: 'def f\(x\):'\)$"):
        apply_search_replace({"m.py": CODE}, answer)


def test_search_replace_failures_name_the_block():
    files = {"m.py": CODE, "n.py": "pass\n"}
    two = sr("m.py", "    y = x + 1\n", "    y = x\n") + sr("m.py", "    return z\n", "    return 0\n")
    with pytest.raises(MutationError, match=r"^SEARCH block 2 does not match m\.py"):
        apply_search_replace(files, two)
    with pytest.raises(MutationError, match=r"^SEARCH block 1 names no file \(2 files in scope\)$"):
        apply_search_replace(files, sr(None, "pass\n", "x = 1\n"))
    with pytest.raises(MutationError, match=r"^SEARCH block 1 is not closed \(no >>>>>>> REPLACE line\)$"):
        apply_search_replace(files, "m.py\n<<<<<<< SEARCH\npass\n=======\nx = 1\n")
    with pytest.raises(MutationError, match=r"^SEARCH block 1 names a path outside the project: \.\./evil\.py$"):
        apply_search_replace(files, sr("../evil.py", "", "import os\n"))
    with pytest.raises(MutationError, match=r"^SEARCH block 1 names a path inside \.git: \.git/hooks/x\.py$"):
        apply_search_replace(files, sr(".git/hooks/x.py", "", "rm -rf ~\n"))
    with pytest.raises(MutationError, match=r"^code block 1 names a path outside the project: /etc/x\.py$"):
        parse_full_rewrite(files, "/etc/x.py\n```python\nx = 1\n```\n")
    with pytest.raises(MutationError, match=r"^SEARCH block 1 names other\.py, which is not in scope$"):
        apply_search_replace(files, sr("other.py", "pass\n", "x = 1\n"))
    with pytest.raises(MutationError, match=r"^the answer has no SEARCH/REPLACE block$"):
        apply_search_replace(files, "I would rather not.")


def test_search_replace_ambiguous_block_fails():
    code = "def f(x):\n    return x\n\n\ndef g(x):\n    return x\n"
    with pytest.raises(MutationError, match=r"^SEARCH block 1 matches 2 places in m\.py \(lines 2, 6\); it must"):
        apply_search_replace({"m.py": code}, sr("m.py", "    return x\n", "    return -x\n"))
    # ambiguous only after ignoring indentation: still ambiguous
    code2 = "if a:\n    go()\nif b:\n        go()\n"
    with pytest.raises(MutationError, match=r"matches 2 places in m\.py \(lines 2, 4\)"):
        apply_search_replace({"m.py": code2}, sr("m.py", "go()\n", "stop()\n"))


STATEMENTS = ["a = 1", "b = f(a)", "return b", "pass", "if a:", "x += 2", ""]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_search_replace_shifted_or_retabbed_search_applies_where_it_belongs(data):
    unit = data.draw(st.sampled_from(["    ", "\t"]), label="the file's indent")
    body = data.draw(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(STATEMENTS)), min_size=1, max_size=10))
    lines = [unit * level + text if text else "" for level, text in body]
    i = data.draw(st.integers(0, len(lines) - 1))
    n = data.draw(st.integers(1, len(lines) - i))
    window = lines[i:i + n]
    stripped = [line.strip() for line in window]
    assume(any(stripped))
    assume(sum([line.strip() for line in lines[j:j + n]] == stripped for j in range(len(lines) - n + 1)) == 1)
    base = min(level for (level, text) in body[i:i + n] if text)
    # the model's copy: its own base indentation, four spaces per level
    shift = data.draw(st.integers(0, 6), label="the answer's base indent")
    search = [" " * shift + "    " * (level - base) + text if text else "" for level, text in body[i:i + n]]
    new = data.draw(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(STATEMENTS[:-1])), min_size=0, max_size=3))
    replace = [" " * shift + "    " * level + text for level, text in new]
    out = apply_search_replace({"m.py": "\n".join(lines) + "\n"},
                               sr("m.py", "".join(x + "\n" for x in search), "".join(x + "\n" for x in replace)))
    uses_tabs = sum(x.startswith("\t") for x in lines) > sum(x.startswith(" ") for x in lines)
    indent = "\t" if uses_tabs else "    "
    expected = lines[:i] + [indent * (base + level) + text for level, text in new] + lines[i + n:]
    assert out.get("m.py", "\n".join(lines) + "\n") == "".join(x + "\n" for x in expected)


def test_search_replace_empty_search_appends_or_creates():
    answer = sr("m.py", "", "b = 2\n") + sr("new/util.py", "", "def h():\n    pass\n")
    out = apply_search_replace({"m.py": "a = 1\n"}, answer)
    assert out == {"m.py": "a = 1\nb = 2\n", "new/util.py": "def h():\n    pass\n"}
    # a block that changes nothing gives no file
    assert apply_search_replace({"m.py": "a = 1\n"}, sr("m.py", "a = 1\n", "a = 1\n")) == {}


# --- full rewrites ----------------------------------------------------------------------------


def test_full_rewrite_of_one_file_needs_no_name():
    answer = "Faster:\n```python\ndef f(x):\n    return x\n```\n"
    assert parse_full_rewrite({"m.py": CODE}, answer) == {"m.py": "def f(x):\n    return x\n"}
    assert parse_full_rewrite({"m.py": "x = 1\r\n"}, "```\nx = 2\n```") == {"m.py": "x = 2\r\n"}
    assert parse_full_rewrite({"m.py": "x = 2\n"}, "```python\nx = 2\n```") == {}  # unchanged
    # the named rewrite wins over a snippet that names some other file
    answer = "usage.py\n```python\nf(1)\n```\nm.py\n```python\nx = 3\n```\n"
    assert parse_full_rewrite({"m.py": "x = 1\n"}, answer) == {"m.py": "x = 3\n"}


def test_full_rewrite_of_several_files_by_name():
    files = {"src/a.py": "A = 1\n", "src/b.py": "B = 2\n", "src/c.py": "C = 3\n"}
    answer = ("src/a.py\n```python\nA = 10\n```\n"
              "```python\n# src/b.py\nB = 20\n```\n"
              "```src/c.py\nC = 3\n```\n")
    assert parse_full_rewrite(files, answer) == {"src/a.py": "A = 10\n", "src/b.py": "B = 20\n"}
    with pytest.raises(MutationError, match=r"^code block 2 names no file \(3 files in scope, 2 blocks\)$"):
        parse_full_rewrite(files, "src/a.py\n```python\nA = 5\n```\n```python\nB = 5\n```\n")
    with pytest.raises(MutationError, match=r"^code block 1 names src/d\.py, which is not in scope$"):
        parse_full_rewrite(files, "src/d.py\n```python\nD = 5\n```\n")
    with pytest.raises(MutationError, match=r"^the answer has no code block$"):
        parse_full_rewrite(files, "A = 5")


def test_apply_answer_takes_either_form():
    assert apply_answer({"m.py": "x = 1\n"}, "```python\nx = 9\n```") == {"m.py": "x = 9\n"}
    assert apply_answer({"m.py": "x = 1\n"}, "```\n" + sr("m.py", "x = 1\n", "x = 8\n") + "```") == {"m.py": "x = 8\n"}


# --- llm --------------------------------------------------------------------------------------


@pytest.fixture
def chat_api():
    servers: list[FakeChatApi] = []

    def start(*replies: tuple[int, dict, dict]) -> FakeChatApi:
        servers.append(FakeChatApi(list(replies)))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("EVOPILOT_TEST_LLM_KEY", "sk-test-123")
    return "EVOPILOT_TEST_LLM_KEY"


def llm_config(url: str, key_env: str, **kw) -> LlmMutatorConfig:
    return LlmMutatorConfig(**{"base_url": url, "model": "m1", "api_key_env": key_env,
                               "backoff_s": 0.05, **kw})


GOOD = "Start hotter.\nsolver.py\n" + sr(None, "TEMPERATURE = 0.5\n", "TEMPERATURE = 0.9\n")


async def test_llm_backs_off_on_rate_limits_then_applies_the_diff(chat_api, api_key):
    api = chat_api(refusal(429, "Rate limit reached"), refusal(429, "Rate limit reached"), completion(GOOD))
    cfg = llm_config(api.url, api_key, max_retries=3, temperature=0.7,
                     prices={"m1": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}})
    mutator = LlmMutator(cfg)
    started = time.monotonic()
    try:
        m = await mutator.mutate(MutationRequest(files={"solver.py": SOLVER}, prompt="Improve it.", seed=1))
    finally:
        await mutator.aclose()
    # two waits of backoff_s * 2**n * jitter in [0.5, 1.5)
    assert time.monotonic() - started >= 0.05 * 0.5 + 0.1 * 0.5
    assert m.files == {"solver.py": SOLVER.replace("TEMPERATURE = 0.5", "TEMPERATURE = 0.9")}
    assert m.answer == GOOD and m.summary == "m1: solver.py: Start hotter."
    [usage] = m.usage
    host = api.url.split("/")[2]
    assert (usage.provider, usage.model, usage.tokens_in, usage.tokens_out, usage.requests) == (
        host, "m1", 1200, 300, 1)
    assert usage.dollars == pytest.approx((1200 * 2.0 + 300 * 8.0) / 1e6)
    assert len(api.requests) == 3
    path, headers, body = api.requests[-1]
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == "Bearer sk-test-123"
    assert body["model"] == "m1" and body["temperature"] == 0.7 and body["seed"] == 1 and "n" not in body
    assert [msg["role"] for msg in body["messages"]] == ["system", "user"]
    assert "<<<<<<< SEARCH" in body["messages"][0]["content"] and body["messages"][1]["content"] == "Improve it."


async def test_llm_waits_what_retry_after_says(chat_api, api_key):
    api = chat_api(refusal(429, "slow down", {"Retry-After": "0.4"}), completion(GOOD))
    mutator = LlmMutator(llm_config(api.url, api_key, backoff_s=0))
    started = time.monotonic()
    try:
        await mutator.mutate(MutationRequest(files={"solver.py": SOLVER}, prompt="p", seed=0))
    finally:
        await mutator.aclose()
    assert time.monotonic() - started >= 0.4 and len(api.requests) == 2


async def test_llm_gives_up_after_max_retries(chat_api, api_key):
    api = chat_api(refusal(503, "overloaded\nplease retry"))
    mutator = LlmMutator(llm_config(api.url, api_key, max_retries=2, backoff_s=0.01))
    try:
        with pytest.raises(MutationError) as e:
            await mutator.mutate(MutationRequest(files={"solver.py": SOLVER}, prompt="p", seed=0))
    finally:
        await mutator.aclose()
    assert e.value.reason == f"{api.url.split('/')[2]} answered 503: overloaded please retry (gave up after 3 attempts)"
    assert len(api.requests) == 3


async def test_llm_unreachable_endpoint_fails_the_iteration(api_key):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mutator = LlmMutator(llm_config(f"http://127.0.0.1:{port}/v1", api_key, max_retries=1, backoff_s=0.01))
    try:
        with pytest.raises(MutationError, match=r"unreachable: .*\(gave up after 2 attempts\)$"):
            await mutator.mutate(MutationRequest(files={"solver.py": SOLVER}, prompt="p", seed=0))
    finally:
        await mutator.aclose()


def test_llm_missing_api_key_variable_is_one_line(monkeypatch):
    monkeypatch.delenv("EVOPILOT_NO_SUCH_KEY", raising=False)
    cfg = LlmMutatorConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="EVOPILOT_NO_SUCH_KEY")
    with pytest.raises(EvopilotError) as e:
        LlmMutator(cfg)
    assert str(e.value) == "the llm mutator reads its API key from $EVOPILOT_NO_SUCH_KEY, which is not set"


async def test_llm_refused_key_stops_the_run(chat_api, api_key):
    api = chat_api(refusal(401, "Incorrect API key provided"))
    mutator = LlmMutator(llm_config(api.url, api_key))
    try:
        with pytest.raises(EvopilotError, match=r"refused the API key in \$EVOPILOT_TEST_LLM_KEY "
                                                r"\(401: Incorrect API key provided\)$"):
            await mutator.mutate(MutationRequest(files={"solver.py": SOLVER}, prompt="p", seed=0))
    finally:
        await mutator.aclose()
    assert len(api.requests) == 1  # not retried


async def test_llm_block_that_does_not_apply_fails_with_reason_and_cost(chat_api, api_key):
    bad = "solver.py\n" + sr(None, "TEMPERATURE = 0.7\n", "TEMPERATURE = 0.9\n")
    api = chat_api(completion(bad, 100, 50))
    mutator = LlmMutator(llm_config(api.url, api_key, prices={"m1": {"input_per_mtok": 1, "output_per_mtok": 2}}))
    try:
        with pytest.raises(MutationError) as e:
            await mutator.mutate(MutationRequest(files={"solver.py": SOLVER}, prompt="p", seed=0))
    finally:
        await mutator.aclose()
    assert e.value.reason == "SEARCH block 1 does not match solver.py (its first line: 'TEMPERATURE = 0.7')"
    assert e.value.answer == bad
    assert [(u.tokens_in, u.tokens_out, u.dollars) for u in e.value.usage] == [(100, 50, pytest.approx(200 / 1e6))]


async def test_llm_cut_off_answer_fails(chat_api, api_key):
    api = chat_api(completion(GOOD, finish="length"))
    mutator = LlmMutator(llm_config(api.url, api_key, diff_mode="full"))
    try:
        with pytest.raises(MutationError, match=r"^m1's answer was cut off at its token limit$"):
            await mutator.mutate(MutationRequest(files={"solver.py": SOLVER}, prompt="p", seed=0))
    finally:
        await mutator.aclose()
    assert "fenced code block" in api.requests[0][2]["messages"][0]["content"]


async def test_llm_choices_are_candidates_of_one_request_paid_once(chat_api, api_key):
    """``choices`` asks one request for several answers (the API's ``n``): each choice is a
    candidate or its own failure, and the request's usage is counted once. An endpoint that
    returns fewer choices than asked (one that ignores ``n``) fails the rest with the reason."""
    cooler = "Cool down.\nsolver.py\n" + sr(None, "TEMPERATURE = 0.5\n", "TEMPERATURE = 0.2\n")
    stale = "solver.py\n" + sr(None, "TEMPERATURE = 0.7\n", "TEMPERATURE = 0.9\n")
    api = chat_api(completion([GOOD, stale, cooler], 100, 60), completion(GOOD, 100, 20))
    prices = {"m1": {"input_per_mtok": 1, "output_per_mtok": 2}}
    mutator = LlmMutator(llm_config(api.url, api_key, choices=3, prices=prices))
    try:
        req = MutationRequest(files={"solver.py": SOLVER}, prompt="p", seed=4)
        first, bad, third = await mutator.mutate_choices(req, 3)
        only, *missing = await mutator.mutate_choices(req, 3)
    finally:
        await mutator.aclose()
    assert [body["n"] for _, _, body in api.requests] == [3, 3]
    assert first.files == {"solver.py": SOLVER.replace("TEMPERATURE = 0.5", "TEMPERATURE = 0.9")}
    assert third.files == {"solver.py": SOLVER.replace("TEMPERATURE = 0.5", "TEMPERATURE = 0.2")}
    assert isinstance(bad, MutationError) and bad.answer == stale and "does not match" in bad.reason
    assert [(u.tokens_in, u.tokens_out, u.requests) for u in first.usage] == [(100, 60, 1)]
    assert first.usage[0].dollars == pytest.approx((100 + 2 * 60) / 1e6)
    assert bad.usage == [] and third.usage == [], "the request is paid for once"
    assert only.files == first.files and len(only.usage) == 1
    assert [e.reason for e in missing] == ["m1 answered 1 of the 3 choices asked for "
                                           "(an endpoint that ignores `n`: set choices = 1)"] * 2


def test_choices_at_one_leave_an_experiments_hash_as_it_was():
    """``choices`` came after experiments were stored by their hash: at its default it is left
    out of the canonical form, so the same file is still the same experiment."""
    one = LlmMutatorConfig(model="m", api_key_env="")
    assert "choices" not in one.model_dump(mode="json")
    assert LlmMutatorConfig(model="m", api_key_env="", choices=2).model_dump(mode="json")["choices"] == 2


async def test_llm_draws_models_by_weight_with_the_seed(chat_api, api_key):
    api = chat_api(completion(GOOD))
    cfg = llm_config(api.url, api_key, model=None,
                     models=[{"name": "small", "weight": 3}, {"name": "big", "weight": 1}])
    mutator = LlmMutator(cfg)
    try:
        for seed in [*range(24), 5, 17]:
            await mutator.mutate(MutationRequest(files={"solver.py": SOLVER}, prompt="p", seed=seed))
    finally:
        await mutator.aclose()
    models = [body["model"] for _, _, body in api.requests]
    assert models[24:] == [models[5], models[17]]  # the same seed, the same model
    assert models.count("small") > models.count("big") > 0


def test_mutator_configs():
    adapter = TypeAdapter(MutatorConfig)
    assert isinstance(adapter.validate_python({"kind": "params", "changes": 3}), ParamsMutatorConfig)
    command = adapter.validate_python({"kind": "command", "template": "agent {prompt_file}"})
    assert isinstance(command, CommandMutatorConfig)
    price = {"input_per_mtok": 1, "output_per_mtok": 4}
    llm = adapter.validate_python({"kind": "llm", "model": "gpt-x", "prices": {"gpt-x": price}})
    assert isinstance(llm, LlmMutatorConfig) and llm.api_key_env == "OPENAI_API_KEY"
    bad = [
        ({"kind": "genetic"}, "does not match any of the expected tags"),
        ({"kind": "params", "scale": 2}, "less than 1"),
        ({"kind": "params", "chnages": 3}, "Extra inputs are not permitted"),
        ({"kind": "llm"}, "set either `model` or `models`"),
        ({"kind": "llm", "model": "a", "models": [{"name": "b"}]}, "set either `model` or `models`"),
        ({"kind": "llm", "model": "a", "prices": {"b": price}}, "prices name models that are not used: b"),
        ({"kind": "llm", "model": "a", "api_key_env": "sk-proj-abcdef"}, "not the key itself"),
        ({"kind": "command", "template": "agent --prompt {prompt}"}, "must contain {prompt_file}"),
    ]
    for data, message in bad:
        with pytest.raises(ValidationError) as e:
            adapter.validate_python(data)
        # what a config loader shows (the message, not pydantic's echo of the input)
        shown = " ".join(err["msg"] for err in e.value.errors())
        assert message in shown, (data, shown)
        assert "abcdef" not in shown  # a key pasted by mistake is not repeated


# --- command ----------------------------------------------------------------------------------


def test_render_command_quotes_each_path(tmp_path):
    canary = tmp_path / "canary"
    workdir = tmp_path / f"my work $(touch {canary}) `touch {canary}` {{workdir}}"
    prompt = tmp_path / "it's the prompt.md"
    template = "printf '%s\\n' {prompt_file} {workdir} ${HOME:+home}"
    command = render_command(template, str(prompt), str(workdir))
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True,
                         env={"HOME": "/h", "PATH": "/usr/bin:/bin"}).stdout
    assert out.splitlines() == [str(prompt), str(workdir), "home"]
    assert not canary.exists()


CLAUDE_RESULT = {
    "type": "result", "subtype": "success", "is_error": False, "num_turns": 7,
    "result": "Done: {\"usage\": not this}", "total_cost_usd": 0.4213,
    "usage": {"input_tokens": 12, "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 30000,
              "output_tokens": 1500},
    "modelUsage": {"claude-sonnet-4-5": {"inputTokens": 32012, "outputTokens": 1500, "costUSD": 0.4213}},
}


def test_parse_usage_reads_the_last_json_line_through_noise():
    log = ("\x1b[2Jstarting agent\r\n"
           + json.dumps({"type": "result", "total_cost_usd": 9.0, "usage": {"input_tokens": 1}}) + "\n"
           + "{not json\n"
           + "\x1b[32mresult:\x1b[0m " + json.dumps(CLAUDE_RESULT) + "\r\n"
           + json.dumps({"event": "exit", "code": 0}) + "\nbye\n")
    [usage] = parse_usage(log, provider="claude")
    assert (usage.provider, usage.model, usage.tokens_in, usage.tokens_out, usage.requests) == (
        "claude", "claude-sonnet-4-5", 32012, 1500, 1)
    assert usage.dollars == pytest.approx(0.4213)


def test_parse_usage_without_usage_or_with_odd_values():
    assert parse_usage("") == []
    assert parse_usage("all done\n{\"status\": \"ok\"}\n") == []
    odd = json.dumps({"total_cost_usd": "free", "model": "gpt-x",
                      "usage": {"input_tokens": -5, "output_tokens": True, "cache_read_input_tokens": 1.5}})
    [usage] = parse_usage(odd)
    assert (usage.provider, usage.model, usage.tokens_in, usage.tokens_out, usage.dollars) == (
        "command", "gpt-x", 0, 0, 0.0)
