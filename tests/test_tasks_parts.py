"""The pure parts of tasks: agent commands from templates, branch names, usage, sweeps' matrix
and champion, branch checks, and the [agents]/[tasks] config."""

from __future__ import annotations

import subprocess

import pytest

from evopilot.core.config import AgentConfig, parse_config
from evopilot.core.errors import EvopilotError
from evopilot.core.tasks import agents, sweeps, worktrees


def run(script: str) -> str:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout


def test_render_quotes_each_value_once_and_leaves_other_braces():
    cmd = agents.render("echo {prompt} {workdir} ${HOME:+x} awk '{print}' {unknown}",
                        {"prompt": "it's $(rm -rf /) {workdir}", "workdir": "/tmp/a b"})
    assert cmd == "echo 'it'\"'\"'s $(rm -rf /) {workdir}' '/tmp/a b' ${HOME:+x} awk '{print}' {unknown}"


def test_session_command_is_one_safe_shell_text():
    cfg = AgentConfig(command="printf '%s|' {prompt} {temperature}", env={"MODE": "a b"},
                      usage_command="echo '{\"total_cost_usd\": 1}'")
    text = agents.session_command(cfg, prompt="say \"hi\"; exit 9", prompt_file="/p", workdir="/w",
                                  params={"temperature": "0.7"})
    out = run(text + "\necho \"[$MODE][$EVOPILOT_PARAM_TEMPERATURE]\"")
    assert out.splitlines() == ['say "hi"; exit 9|0.7|{"total_cost_usd": 1}']
    # the agent's exit status survives its usage command
    failing = AgentConfig(command="sh -c 'exit 3' {prompt}", usage_command="true")
    res = subprocess.run(["bash", "-c", agents.session_command(failing, prompt="x", prompt_file="/p",
                                                                workdir="/w", params={})])
    assert res.returncode == 3


def test_session_command_exports_env_and_params():
    cfg = AgentConfig(command="echo {prompt_file}", env={"MODE": "a b"})
    text = agents.session_command(cfg, prompt="x", prompt_file="/tmp/p q.md", workdir="/w", params={"n": "3"})
    assert run(text + '\necho "[$MODE][$EVOPILOT_PARAM_N]"') == "/tmp/p q.md\n[a b][3]\n"


def test_followup_template_is_used_for_followups():
    cfg = AgentConfig(command="new {prompt}", followup="resume {prompt}")
    assert agents.session_command(cfg, prompt="x", prompt_file="", workdir="", params={}, followup=True) == "resume x"
    plain = AgentConfig(command="new {prompt}")
    assert agents.session_command(plain, prompt="x", prompt_file="", workdir="", params={}, followup=True) == "new x"


def test_check_params_refuses_a_parameter_the_command_does_not_use():
    cfg = AgentConfig(command="run --temp {temperature} {prompt}")
    agents.check_params("a", cfg, {"temperature": "0.1"})
    with pytest.raises(EvopilotError, match="has no {seed}"):
        agents.check_params("a", cfg, {"seed": "1"})
    with pytest.raises(EvopilotError, match="not a usable parameter name"):
        agents.check_params("a", cfg, {"prompt": "1"})


@pytest.mark.parametrize("title, branch", [
    ("Fix the thing", "evopilot/7-fix-the-thing"),
    ("Ünïcode & spaces!!  ok", "evopilot/7-unicode-spaces-ok"),
    ("!!!", "evopilot/7-task"),
    ("a" * 30 + " " + "b" * 30, "evopilot/7-" + "a" * 30),
])
def test_branch_names_are_valid_git_branches(title, branch):
    assert agents.branch_name(7, title) == branch
    subprocess.run(["git", "check-ref-format", "--branch", branch], check=True, capture_output=True)
    assert agents.branch_name(7, title, taken=1) == branch + "-2"


def test_agents_hash_prefers_agents_md(tmp_path):
    assert agents.agents_hash(tmp_path) is None
    (tmp_path / "CLAUDE.md").write_text("c")
    claude = agents.agents_hash(tmp_path)
    (tmp_path / "AGENTS.md").write_text("a")
    assert agents.agents_hash(tmp_path) not in (None, claude)


def test_session_usage_reads_the_last_report_only_when_configured():
    log = 'working\n\x1b[2m{"usage": {"input_tokens": 10, "output_tokens": 2}, "total_cost_usd": 0.5}\x1b[0m\n'
    [u] = agents.session_usage(AgentConfig(command="x {prompt}", usage="json"), "claude", log)
    assert (u.provider, u.tokens_in, u.tokens_out, u.dollars) == ("claude", 10, 2, 0.5)
    assert agents.session_usage(AgentConfig(command="x {prompt}"), "claude", log) == []


def test_summary_is_the_last_line_without_escapes():
    assert agents.summary("a\n\x1b[1mdone here\x1b[0m\r\n\n") == "done here"
    assert agents.summary("") == ""


def test_expand_the_matrix():
    cells = sweeps.expand(["a", "b"], {"t": ["0.1", "0.7"], "s": ["1"]})
    assert cells == [("a", {"t": "0.1", "s": "1"}), ("a", {"t": "0.7", "s": "1"}),
                     ("b", {"t": "0.1", "s": "1"}), ("b", {"t": "0.7", "s": "1"})]
    assert sweeps.expand(["a"], {}) == [("a", {})]
    with pytest.raises(EvopilotError):
        sweeps.expand([], {})
    with pytest.raises(EvopilotError, match="named twice"):
        sweeps.expand(["a", "a"], {})
    with pytest.raises(EvopilotError, match="cells"):
        sweeps.expand(["a"], {"x": [str(i) for i in range(300)]})


def test_parse_param():
    assert sweeps.parse_param("temperature=0.1, 0.7") == ("temperature", ["0.1", "0.7"])
    for bad in ("temperature", "=1", "t="):
        with pytest.raises(EvopilotError):
            sweeps.parse_param(bad)


def test_champion_ranks_tests_then_lines_then_cost_then_time():
    R = sweeps.Result
    assert sweeps.champion([R(1, False, 1, 0, 1), R(2, None, 1, 0, 1)]) is None
    assert sweeps.champion([R(1, True, 0, 0, 1)]) is None  # changed nothing
    assert sweeps.champion([R(1, False, 1, 0, 1), R(2, True, 50, 9, 9)]) == 2
    assert sweeps.champion([R(1, True, 10, 0, 1), R(2, True, 5, 9, 9)]) == 2
    assert sweeps.champion([R(1, True, 5, 2.0, 1), R(2, True, 5, 1.0, 9)]) == 2
    assert sweeps.champion([R(1, True, 5, 1.0, 8), R(2, True, 5, 1.0, 3)]) == 2


def test_branch_problem():
    assert worktrees.branch_problem("b", "a" * 40, "a" * 40) is None
    assert "deleted outside evopilot" in worktrees.branch_problem("b", "a" * 40, None)
    assert "moved outside evopilot" in worktrees.branch_problem("b", "a" * 40, "c" * 40)


def test_config_agents_and_tasks():
    cfg = parse_config("""
[agents.claude]
command = "claude -p {prompt} --output-format json"
usage = "json"
env = { FOO = "1" }
[tasks]
test_command = "pytest -q"
max_dollars = 2.5
[tasks.projects.web]
test_command = "npm test"
""")
    assert cfg.agent("claude").usage == "json"
    assert cfg.tasks.for_project("web").test_command == "npm test"
    assert cfg.tasks.for_project("other").test_command == "pytest -q"
    with pytest.raises(EvopilotError, match="unknown agent 'codex'"):
        cfg.agent("codex")
    for bad, msg in [('[agents.a]\ncommand = "run"', "must contain {prompt} or {prompt_file}"),
                     ('[agents.a]\ncommand = "r {prompt}"\nttyy = true', "unknown key"),
                     ('[agents.a]\ncommand = "r {prompt}"\nenv = { "1X" = "y" }', "not a valid environment"),
                     ("[tasks]\nmax_dollars = -1", "greater than 0")]:
        with pytest.raises(EvopilotError, match=msg):
            parse_config(bad)
