"""Config layers, `config show`, and errors: one line naming the file, the key and what is wrong; exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evopilot.core.config import EngineConfig, HostConfig, load_config, parse_config
from evopilot.core.errors import EvopilotError
from evopilot.core.evolution.experiment import load_experiment
from tests.conftest import REPO


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


DURATIONS = [("engine", k) for k, f in EngineConfig.model_fields.items() if f.annotation is float] + [
    ("hosts.gpu", k) for k, f in HostConfig.model_fields.items() if f.annotation is float]


@pytest.mark.parametrize("table,key", DURATIONS)
def test_every_duration_is_bounded(cli, tmp_path, table, key):
    """`lost_grace = inf` would make a lost job run forever: no duration is unbounded."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[{table}]\n{key} = inf\n")
    code, _, err = cli("jobs", "--config", cfg)
    assert code == 2 and err.count("\n") == 1 and f"{table}.{key}" in err, err
    assert "less than or equal" in err, err


@pytest.mark.parametrize("value", ["inf", "nan", "1e12"])
def test_a_jobs_timeout_is_bounded_too(cli, make_project, tmp_path, value):
    """A job's timeout is a duration as well: `--timeout inf` (or nan) would mean none at all,
    and on a Slurm host its --time is computed from it. Refused in one line, from the command
    line and from an experiment file (its evaluations' and mutators' timeouts)."""
    cli("project", "add", make_project({"benchmarks/a.py": "print(1)\n"}))
    code, _, err = cli("run", "proj", "a.py", "--timeout", value)
    assert code == 2 and err.count("\n") == 1 and "--timeout must be a positive number" in err, err
    assert json.loads(cli("jobs", "--json")[1]) == []
    text = (REPO / "examples" / "evolve" / "experiment.toml").read_text()
    params = '[[mutators]]\nkind = "params"\nchanges = 2\nscale = 0.3\n'
    assert "timeout_s = 60\n" in text and params in text
    command = f'[[mutators]]\nkind = "command"\ntemplate = "true {{prompt_file}}"\ntimeout_s = {value}\n'
    for where, bad in (("evaluation", text.replace("timeout_s = 60\n", f"timeout_s = {value}\n", 1)),
                       ("mutators", text.replace(params, command, 1))):
        exp = tmp_path / f"{where}.toml"
        exp.write_text(bad)
        with pytest.raises(EvopilotError, match=rf"{where}.*timeout_s.*less than or equal"):
            load_experiment(exp)


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

    from evopilot.core.config import AgentConfig, Config, HostConfig, TaskProjectConfig, parse_config

    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    text = example.read_text()
    parse_config(text, example)
    for section, model in [("engine", Config.model_fields["engine"].annotation),
                           ("projects", Config.model_fields["projects"].annotation),
                           ("hosts.NAME", HostConfig), ("tasks", Config.model_fields["tasks"].annotation),
                           ("tasks.projects.NAME", TaskProjectConfig), ("agents.NAME", AgentConfig)]:
        for key in model.model_fields:
            # a key, or a table of its own ([tasks.projects.NAME])
            assert f"{key} =" in text or f"[{section}.{key}." in text, \
                f"{section}.{key} is not documented in config.example.toml"


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


# ---- layers: every file that exists is merged, table by table ----------------------------------


@pytest.fixture
def layers(tmp_path, monkeypatch):
    """Write the user config and ./evopilot.toml of a project directory (the current directory)."""
    user = tmp_path / "xdg-config" / "evopilot" / "config.toml"
    project = tmp_path / "work" / "evopilot.toml"
    user.parent.mkdir(parents=True)
    project.parent.mkdir()
    monkeypatch.chdir(project.parent)

    def write(user_text: str, project_text: str | None = None) -> tuple[Path, Path]:
        user.write_text(user_text)
        if project_text is not None:
            project.write_text(project_text)
        return user, project

    return write


def _show(cli, *args) -> dict:
    code, out, err = cli("config", "show", "--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_user_config_and_project_file_both_contribute_hosts(cli, layers):
    layers('[hosts.gpu1]\nhostname = "gpu1.example.org"\n',
           '[hosts.gpu2]\nhostname = "gpu2.example.org"\n')
    code, out, err = cli("hosts", "--json")
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)] == ["local", "gpu1", "gpu2"]


def test_later_file_overrides_one_key_and_keeps_the_rest_of_the_table(cli, layers):
    user, project = layers(
        '[engine]\npoll_interval = 0.25\nkill_grace = 1\n'
        '[projects]\nbenchmark_globs = ["a/*.py", "b/*.py"]\n'
        '[hosts.gpu1]\nhostname = "gpu1.example.org"\nport = 2222\nenv = { A = "1", B = "2" }\n'
        '[keys]\n"jobs.kill" = "K"\n',
        '[engine]\nkill_grace = 2\n'
        '[projects]\nbenchmark_globs = ["c/*.py"]\n'
        '[hosts.gpu1]\nport = 22\nenv = { C = "3" }\n'
        '[keys]\n"jobs.stop" = "X"\n')
    shown = _show(cli)
    assert shown["sources"] == [str(user), str(project)]
    values = shown["values"]

    def check(key, value, source):
        assert values[key] == {"value": value, "source": source}, key

    check("engine.poll_interval", 0.25, str(user))
    check("engine.kill_grace", 2.0, str(project))
    check("engine.lost_grace", 5.0, "default")
    check("hosts.gpu1.hostname", "gpu1.example.org", str(user))
    check("hosts.gpu1.port", 22, str(project))
    check("hosts.gpu1.max_sessions", 6, "default")
    check('keys."jobs.kill"', "K", str(user))
    check('keys."jobs.stop"', "X", str(project))
    # lists and a host's env are one value each: the later file's replaces the earlier one whole
    check("projects.benchmark_globs", ["c/*.py"], str(project))
    check("hosts.gpu1.env", {"C": "3"}, str(project))
    # the engine and the jobs use the merged values
    cfg = load_config()
    assert (cfg.engine.poll_interval, cfg.engine.kill_grace) == (0.25, 2)
    assert cfg.host("gpu1").hostname == "gpu1.example.org" and cfg.host("gpu1").env == {"C": "3"}


def test_env_and_cli_config_go_on_top_in_the_documented_order(cli, layers, tmp_path, monkeypatch):
    user, project = layers('[engine]\nkill_grace = 1\npoll_interval = 0.1\n[hosts.gpu1]\nport = 2201\n',
                           '[engine]\nkill_grace = 2\nlost_grace = 7\n[hosts.gpu2]\nport = 2202\n')
    env = tmp_path / "env.toml"
    env.write_text('[engine]\nkill_grace = 3\nremote_poll_interval = 3\n')
    monkeypatch.setenv("EVOPILOT_CONFIG", str(env))
    top = tmp_path / "cli.toml"
    top.write_text('[engine]\nkill_grace = 4\n[hosts.local]\nmax_parallel = 3\n')
    shown = _show(cli, "--config", top)
    assert shown["sources"] == [str(user), str(project), str(env), str(top)]
    sources = {k: v["source"] for k, v in shown["values"].items()}
    assert shown["values"]["engine.kill_grace"]["value"] == 4.0
    assert [sources[k] for k in ["engine.poll_interval", "engine.lost_grace", "engine.remote_poll_interval",
                                 "engine.kill_grace", "hosts.local.max_parallel"]] == \
        [str(user), str(project), str(env), str(top), str(top)]
    # a real command sees all four: both hosts, and the local slots from --config
    code, out, err = cli("hosts", "--json", "--config", top)
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert sorted(rows) == ["gpu1", "gpu2", "local"] and rows["local"]["slots"] == 3


def test_a_file_named_twice_is_read_once_at_its_higher_place(cli, layers):
    user, project = layers("[engine]\nkill_grace = 1\n", "[engine]\nkill_grace = 2\n")
    shown = _show(cli, "--config", user)
    assert shown["sources"] == [str(project), str(user)]
    assert shown["values"]["engine.kill_grace"] == {"value": 1.0, "source": str(user)}


@pytest.mark.parametrize("bad_in,text,expect", [
    ("user", "[hosts.gpu1]\nport = 'twenty-two'\n", "hosts.gpu1.port: Input should be a valid integer"),
    ("project", "[hosts.gpu1]\nprot = 22\n", "hosts.gpu1.prot: unknown key"),
    ("project", "[engine]\nkill_grace = -1\n", "engine.kill_grace: Input should be greater than or equal to 0"),
    ("user", "[engine\n", "not valid TOML"),
])
def test_error_names_the_file_the_bad_value_is_in(cli, layers, bad_in, text, expect):
    good = '[hosts.gpu1]\nhostname = "gpu1.example.org"\nport = 22\n[engine]\nkill_grace = 2\n'
    user, project = layers(text, good) if bad_in == "user" else layers(good, text)
    bad, other = (user, project) if bad_in == "user" else (project, user)
    for argv in (["jobs"], ["config", "show"]):
        code, out, err = cli(*argv)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
        # named even where another file sets the same key: a bad file must not lurk until the
        # directory that hides it is left
        assert err.startswith(f"evopilot: error: {bad}: ") and str(other) not in err and expect in err


def test_missing_env_config_is_an_error(cli, layers, tmp_path, monkeypatch):
    layers("[engine]\nkill_grace = 1\n")
    monkeypatch.setenv("EVOPILOT_CONFIG", str(tmp_path / "nope.toml"))
    code, _, err = cli("config", "show")
    assert code == 2 and f"{tmp_path / 'nope.toml'}: config file not found" in err


def test_config_show_text_is_toml_with_each_value_source(cli, layers, home):
    user, project = layers('[hosts."gpu.lab"]\nhostname = "gpu1"\nenv = { GRB_LICENSE_FILE = "/opt/g \\"x\\".lic" }\n'
                           '[keys]\n"jobs.kill" = "K"\n',
                           "[engine]\nkill_grace = 2.5\n[projects]\nbenchmark_globs = []\n")
    code, out, err = cli("config", "show")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:3] == ["# files merged, each over the ones before it:", f"#   {user}", f"#   {project}"]

    def line(section, start):
        """The line of ``section`` that starts with ``start``."""
        body = lines[lines.index(section) + 1:]
        body = body[:body.index("")] if "" in body else body
        [found] = [ln for ln in body if ln.startswith(start)]
        return found

    assert line("[engine]", "kill_grace = 2.5").endswith(f"# {project}")
    assert line("[engine]", "poll_interval = 0.5").endswith("# default")
    assert line("[projects]", "benchmark_globs = []").endswith(f"# {project}")
    gpu = '[hosts."gpu.lab"]'
    assert line(gpu, 'env = { GRB_LICENSE_FILE = "/opt/g \\"x\\".lic" }').endswith(f"# {user}")
    assert line(gpu, 'hostname = "gpu1"').endswith(f"# {user}")
    assert line(gpu, "# port is not set").endswith("# default")
    assert line("[hosts.local]", "max_parallel = 0").endswith("# default")
    assert line("[keys]", '"jobs.kill" = "K"').endswith(f"# {user}")
    # the text is a config that loads to the same values: `config show > merged.toml` works
    merged = parse_config(out)
    assert merged.model_dump() == {**load_config().model_dump(), "hosts": {
        "local": HostConfig().model_dump(), "gpu.lab": load_config().host("gpu.lab").model_dump()}}
    assert not home.exists()  # showing the config opens no database


def test_config_show_without_any_file(cli, home):
    code, out, err = cli("config", "show", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["sources"] == []
    assert shown["values"]["engine.poll_interval"] == {"value": 0.5, "source": "default"}
    assert shown["values"]["hosts.local.hostname"] == {"value": None, "source": "default"}
    assert all(v["source"] == "default" for v in shown["values"].values())
    code, out, _ = cli("config", "show")
    assert out.startswith("# no config file: defaults only\n")


@pytest.mark.parametrize("text,expect", [
    ('[keys]\n"jobs.kill" = "q"\n', "keys.\"jobs.kill\": 'q' is already bound to app.quit (Quit)"),
    ('[keys]\n"jobs.kill" = "s"\n', "keys.\"jobs.kill\": 's' is already bound to jobs.stop"),
    ('[keys]\n"jobs.kil" = "K"\n', "keys.\"jobs.kil\": no such binding (did you mean 'jobs.kill'?)"),
    ('[keys]\n"log.follow" = "escape"\n', "keys.\"log.follow\": 'escape' is already bound to "),
    ('[keys]\n"jobs.kill" = " "\n', 'keys."jobs.kill": empty key'),
    ("[engine]\npoll_intervl = 1\n", "engine.poll_intervl: unknown key (did you mean 'poll_interval'?)"),
    ("[hosts.gpu]\nprot = 22\n", "hosts.gpu.prot: unknown key (did you mean 'port'?)"),
    ("[enigne]\n", "enigne: unknown key (did you mean 'engine'?)"),
    ("[engine]\nzzz = 1\n", "engine.zzz: unknown key"),
])
@pytest.mark.parametrize("argv", [["jobs"], []], ids=["cli", "app"])
def test_bad_keys_and_misspelt_keys_are_config_errors(cli, tmp_path, text, expect, argv):
    """A key bound twice (kill on q replaced quit) or a binding id that does not exist is an
    error naming the file and the key, before the CLI runs a command or the app opens."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code, out, err = cli(*argv, "--config", cfg)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"evopilot: error: {cfg}: ") and expect in err, err
    if "zzz" in text:
        assert "did you mean" not in err


def test_keys_that_move_out_of_the_way_together_are_fine(tmp_path):
    """Swapping two keys is not a clash, nor is a key of another tab (r: run and retry)."""
    cfg = parse_config('[keys]\n"jobs.kill" = "s"\n"jobs.stop" = "k"\n"projects.run" = "R"\n'
                       '"jobs.detail" = "r, enter"\n"jobs.retry" = "R"\n')
    assert cfg.keys["jobs.kill"] == "s"
    with pytest.raises(Exception, match="already bound"):
        parse_config('[keys]\n"jobs.detail" = "x, r"\n')


def test_keys_of_two_files_that_clash_name_the_file_of_the_key(cli, layers):
    """Each file is fine alone; merged, two bindings want K: the error names the key's file."""
    user, project = layers('[keys]\n"jobs.kill" = "K"\n', '[keys]\n"jobs.stop" = "K"\n')
    code, _, err = cli("jobs")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("evopilot: error: ") and "keys.\"jobs." in err and "'K' is already bound" in err
    assert str(user) in err or str(project) in err


def test_binding_table_is_known_without_textual():
    """core never imports textual: the config knows the binding ids from core.bindings."""
    import subprocess
    import sys

    code = ("import sys; from evopilot.core.config import parse_config; "
            "parse_config('[keys]\\n\"jobs.kill\" = \"K\"\\n'); "
            "assert 'textual' not in sys.modules, 'textual imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
