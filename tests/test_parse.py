"""Progress, results and error parsing: pure functions, checked with hypothesis."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evopilot.core.jobs.parse import ResultsError, error_summary, parse_progress, parse_results

# text: no control characters (a line with them is binary output, see the test below)
noise = st.text(alphabet=st.characters(blacklist_characters="0123456789%/[]\r\n",
                                        blacklist_categories=("Cs", "Cc")), max_size=40)
counts = st.integers(min_value=0, max_value=10**9).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n)))


@given(counts, noise, noise)
def test_bracket_marker_anywhere_in_a_line(ct, before, after):
    i, n = ct
    line = f"{before}[{i}/{n}]{after}".encode()
    assert parse_progress(line) == (i, n)


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_no_progress_from_binary_garbage(before, after):
    """Random bytes around "[5/100]" (a core dump, a binary written to stdout) are not
    progress; the last line of text that has a marker is."""
    one = bytes.maketrans(b"\r\n", b"  ")  # one line
    line = b"\xff\x00" + before.translate(one) + b"[5/100]" + after.translate(one)
    assert parse_progress(line) is None
    assert parse_progress(b"[2/9] real\n" + line) == (2, 9)


def test_progress_from_text_with_colours_and_tabs():
    assert parse_progress(b"\x1b[32m[4/7]\x1b[0m\tok \xc3\xa9t\xc3\xa9") == (4, 7)


@given(counts.filter(lambda c: c[1] > 0))
def test_tqdm_bar(ct):
    i, n = ct
    pct = i * 100 // n
    bar = f"{pct:3d}%|{'#' * (pct // 10):10s}| {i}/{n} [00:01<00:02, 3.1it/s]"
    assert parse_progress(("\r" + bar).encode()) == (i, n)


@given(st.integers(min_value=0, max_value=100), noise)
def test_percent(p, before):
    assert parse_progress(f"{before} {p}%".encode()) == (p, 100)


@given(st.lists(counts, min_size=1, max_size=20), noise)
def test_the_last_marker_wins(markers, filler):
    text = "\n".join(f"[{i}/{n}] {filler}" for i, n in markers)
    assert parse_progress(text.encode()) == markers[-1]


@given(noise)
def test_no_marker_no_progress(text):
    assert parse_progress(text.encode()) is None


@pytest.mark.parametrize("text", ["on 2024/11/21", "see a/b/c.py", "12/5 is not a bar", "ratio 3/0"])
def test_not_progress(text):
    assert parse_progress(text.encode()) is None


def test_within_a_line_brackets_beat_percent():
    assert parse_progress(b"[3/16] gap 0.833%") == (3, 16)


def test_a_10mb_line_is_cheap_and_safe():
    assert parse_progress(b"[1/4]\n" + b"\xff" * (10 * 1024 * 1024)) is None
    assert parse_progress(b"x" * (10 * 1024 * 1024) + b"\n[3/4]\n") == (3, 4)


def test_results_flat_and_detailed():
    ms = parse_results(json.dumps({"a": 1, "b": {"value": 2.5, "unit": "s", "higher_is_better": False}}))
    assert [(m.name, m.value, m.unit, m.higher_is_better) for m in ms] == [
        ("a", 1.0, None, None), ("b", 2.5, "s", False)]


@pytest.mark.parametrize("text,msg", [
    ("{oops", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"a": "fast"}', "'a' is not a finite number"),
    ('{"a": true}', "'a' is not a finite number"),
    ('{"a": {"unit": "s"}}', "must have 'value'"),
    ('{"a": NaN}', "not a finite number"),
])
def test_results_errors(text, msg):
    with pytest.raises(ResultsError, match=msg):
        parse_results(text)


def test_error_summary_takes_the_last_traceback():
    log = (b"noise\nTraceback (most recent call last):\n  File \"a.py\"\nKeyError: 1\n"
           b"more\nTraceback (most recent call last):\n  File \"b.py\", line 3\nValueError: bad \xff\n")
    s = error_summary(log)
    assert s.startswith("Traceback") and "b.py" in s and "ValueError: bad" in s and "KeyError" not in s
    assert error_summary(b"one\ntwo\nthree\n", max_lines=2) == "two\nthree"
