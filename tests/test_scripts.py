"""The shell scripts sent to hosts, run with real bash: byte-exact log reads, probe parsing."""

from __future__ import annotations

import subprocess

import pytest

from evopilot.core.hosts import probe


@pytest.mark.parametrize("variant", ["python3", "shell-fallback", "few-shell"])
def test_read_ranges_is_byte_exact(tmp_path, variant):
    data = b"ab\xff\xfe\n" + b"y" * (3 * 1024 * 1024) + b"\r\nend"
    log = tmp_path / "it's a log"
    log.write_bytes(data)
    reqs = [(str(log), 2, 5), (str(tmp_path / "missing"), 0, 5), (str(log), 0, 10**8),
            (str(log), len(data), 10), (str(log), 10, 0)]
    want = [data[2:7], b"", data, b"", b""]
    if variant == "few-shell":
        reqs, want = reqs[:probe.FEW_RANGES], want[:probe.FEW_RANGES]
    script = probe.read_ranges(reqs)
    assert ("python3" in script) == (variant != "few-shell")
    if variant == "shell-fallback":
        script = script.replace("command -v python3", "command -v no-such-python3")
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert probe.parse_read_ranges(out, len(reqs)) == want


def test_probe_reports_files_and_sessions(tmp_path):
    d = tmp_path / "job dir"
    d.mkdir()
    (d / "log").write_bytes(b"x" * 123)
    (d / "pid").write_text("4242\n")
    (d / "exit_code").write_text("3\n")
    (d / "hangup").write_text("")
    other = tmp_path / "not started"
    jobs = [(1, str(d), "s1"), (2, str(other), "s2")]
    out = subprocess.run(["bash", "-c", probe.probe(jobs)], capture_output=True).stdout
    got = probe.parse_probe(out, jobs)
    assert got[1] == probe.Probe(exit_code=3, pgid=4242, log_size=123, session_alive=False, hangup=True)
    assert got[2] == probe.Probe(exit_code=None, pgid=None, log_size=0, session_alive=False)
