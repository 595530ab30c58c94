"""Config discovery and errors: one line naming the file, the key and what is wrong; exit 2."""

from __future__ import annotations

import pytest

from evopilot.core.config import load_config


@pytest.mark.parametrize("text,expect", [
    ("[engine\n", "not valid TOML"),
    ("[engine]\npoll_intervl = 1\n", "engine.poll_intervl: unknown key"),
    ("[hosts.gpu]\nport = 'twenty-two'\n", "hosts.gpu.port: Input should be a valid integer"),
    ("[hosts.gpu]\nport = 70000\n", "hosts.gpu.port: Input should be less than or equal to 65535"),
    ("[hosts.gpu]\nenv = { '1BAD' = 'x' }\n", "hosts.gpu.env"),
])
def test_bad_config_is_one_line_and_exit_2(cli, tmp_path, text, expect):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code, out, err = cli("jobs", "--config", cfg)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(cfg) in err and expect in err


def test_missing_explicit_config(cli, tmp_path):
    code, _, err = cli("jobs", "--config", tmp_path / "nope.toml")
    assert code == 2 and "config file not found" in err


def test_discovery_order(tmp_path, monkeypatch):
    user = tmp_path / "xdg-config" / "evopilot" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[engine]\nkill_grace = 1\n")
    assert load_config().engine.kill_grace == 1
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evopilot.toml").write_text("[engine]\nkill_grace = 2\n")
    assert load_config().engine.kill_grace == 2
    env = tmp_path / "env.toml"
    env.write_text("[engine]\nkill_grace = 3\n")
    monkeypatch.setenv("EVOPILOT_CONFIG", str(env))
    assert load_config().engine.kill_grace == 3
    cli_file = tmp_path / "cli.toml"
    cli_file.write_text("[engine]\nkill_grace = 4\n")
    assert load_config(str(cli_file)).engine.kill_grace == 4


def test_example_config_is_valid_and_documents_every_key():
    from pathlib import Path

    from evopilot.core.config import Config, HostConfig, parse_config

    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    text = example.read_text()
    parse_config(text, example)
    for section, model in [("engine", Config.model_fields["engine"].annotation),
                           ("projects", Config.model_fields["projects"].annotation),
                           ("hosts.NAME", HostConfig)]:
        for key in model.model_fields:
            assert f"{key} =" in text, f"{section}.{key} is not documented in config.example.toml"


def test_unknown_host_is_a_clear_error(cli, make_project):
    root = make_project({"benchmarks/a.py": "print(1)\n"})
    cli("project", "add", root)
    code, _, err = cli("run", "proj", "a.py", "--host", "nowhere")
    assert code == 2 and "unknown host 'nowhere'" in err


def test_init_writes_config_and_database(cli, tmp_path, home):
    code, out, err = cli("init")
    assert code == 0, err
    cfg = tmp_path / "xdg-config" / "evopilot" / "config.toml"
    assert cfg.exists() and cfg.stat().st_mode & 0o077 == 0
    assert (home / "evopilot.db").exists()
    load_config()  # what init wrote loads
