"""`costr connect`: the settings printed for each agent, and --write through the agent's CLI or
into its config file."""
from __future__ import annotations

import json
import sys

import pytest
import yaml

from costr.cli.main import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("COSTR_API_KEY", "COSTR_HOST", "COSTR_PORT", "HERMES_HOME", "OPENCLAW_CONFIG_PATH",
                 "OPENCLAW_STATE_DIR", "OPENCLAW_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no real agent CLI is found unless a test adds one
    monkeypatch.chdir(tmp_path)


def connect(capsys, *args: str) -> str:
    assert main(["connect", *args]) == 0
    return capsys.readouterr().out


def fake_cli(tmp_path, monkeypatch, name: str):
    """An executable `name` on PATH that logs its argv, one JSON list per line."""
    bin_dir, log = tmp_path / "bin", tmp_path / f"{name}.log"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"with open({str(log)!r}, 'a') as f:\n"
                      "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return lambda: [json.loads(line) for line in log.read_text().splitlines()]


# -- printed settings --------------------------------------------------------------------------

def test_claude_code_uses_the_anthropic_base_url_without_v1(capsys):
    out = connect(capsys, "claude-code", "--key", "cr-given")
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:8787\n" in out
    assert "export ANTHROPIC_AUTH_TOKEN=cr-given" in out
    assert "export ANTHROPIC_MODEL=auto" in out
    assert "export ANTHROPIC_CUSTOM_MODEL_OPTION=auto" in out
    assert "export ANTHROPIC_CUSTOM_MODEL_OPTION_NAME='Costr Auto'" in out
    assert "/v1" not in out.replace("no /v1", "")
    settings = json.loads(out.split("--settings '", 1)[1].split("'\n", 1)[0])
    assert settings == {"model": "auto", "env": {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8787", "ANTHROPIC_AUTH_TOKEN": "cr-given",
        "ANTHROPIC_MODEL": "auto", "ANTHROPIC_CUSTOM_MODEL_OPTION": "auto",
        "ANTHROPIC_CUSTOM_MODEL_OPTION_NAME": "Costr Auto"}}
    assert 'claude --setting-sources local -p "Reply exactly: ok"' in out


def test_openclaw_uses_the_openai_base_url_with_v1(capsys):
    out = connect(capsys, "openclaw", "--base-url", "https://costr.example/v1/", "--key", "cr-given")
    provider = json.loads(out.split("models.providers.costrouter '", 1)[1].split("' --strict-json", 1)[0])
    assert provider["baseUrl"] == "https://costr.example/v1"
    assert provider["apiKey"] == "cr-given"
    assert provider["api"] == "openai-completions"
    assert [m["id"] for m in provider["models"]] == ["auto"]
    assert """openclaw config set agents.defaults.model '{"primary": "costrouter/auto"}' --strict-json --merge""" in out
    assert """openclaw config set agents.defaults.models '{"costrouter/auto": {}}' --strict-json --merge""" in out
    assert "openclaw models set costrouter/auto" in out


def test_hermes_uses_the_openai_base_url_and_the_env_key(capsys, monkeypatch):
    monkeypatch.setenv("COSTR_API_KEY", "cr-from-env")
    monkeypatch.setenv("COSTR_PORT", "9000")
    out = connect(capsys, "hermes", "--model", "my-model")
    assert out.splitlines()[1:5] == [
        "hermes config set model.provider custom",
        "hermes config set model.base_url http://127.0.0.1:9000/v1",
        "hermes config set model.api_key cr-from-env",
        "hermes config set model.default my-model"]


def test_without_a_key_only_the_placeholder_is_printed(capsys, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    for agent in ("claude-code", "openclaw", "hermes"):
        out = connect(capsys, agent)
        assert "cr-YOUR-API-KEY" in out
        assert "secret" not in out


# -- --write -----------------------------------------------------------------------------------

def test_claude_code_write_creates_local_settings(capsys, tmp_path):
    connect(capsys, "claude-code", "--key", "cr-given", "--write")
    settings = json.loads((tmp_path / ".claude" / "settings.local.json").read_text())
    assert settings["model"] == "auto"
    assert settings["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8787"
    assert settings["env"]["ANTHROPIC_AUTH_TOKEN"] == "cr-given"


def test_claude_code_write_keeps_existing_settings(capsys, tmp_path):
    path = tmp_path / ".claude" / "settings.local.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"permissions": {"allow": ["Bash(ls:*)"]}, "model": "opus",
                                "env": {"MY_VAR": "1", "ANTHROPIC_MODEL": "old"}}))
    connect(capsys, "claude-code", "--key", "cr-given", "--write")
    settings = json.loads(path.read_text())
    assert settings["permissions"] == {"allow": ["Bash(ls:*)"]}
    assert settings["model"] == "auto"
    assert settings["env"]["MY_VAR"] == "1"
    assert settings["env"]["ANTHROPIC_MODEL"] == "auto"
    assert settings["env"]["ANTHROPIC_AUTH_TOKEN"] == "cr-given"


def test_hermes_write_runs_hermes_config_set(capsys, tmp_path, monkeypatch):
    calls = fake_cli(tmp_path, monkeypatch, "hermes")
    connect(capsys, "hermes", "--key", "cr-given", "--write")
    assert calls() == [
        ["config", "set", "model.provider", "custom"],
        ["config", "set", "model.base_url", "http://127.0.0.1:8787/v1"],
        ["config", "set", "model.api_key", "cr-given"],
        ["config", "set", "model.default", "auto"]]
    assert not (tmp_path / "home" / ".hermes").exists()


def test_openclaw_write_runs_openclaw_config_set(capsys, tmp_path, monkeypatch):
    calls = fake_cli(tmp_path, monkeypatch, "openclaw")
    connect(capsys, "openclaw", "--key", "cr-given", "--write")
    ran = calls()
    assert [c[:3] for c in ran] == [["config", "set", "models.providers.costrouter"],
                                    ["config", "set", "agents.defaults.model"],
                                    ["config", "set", "agents.defaults.models"],
                                    ["models", "set", "costrouter/auto"]]
    assert json.loads(ran[0][3])["baseUrl"] == "http://127.0.0.1:8787/v1"
    assert ran[0][4:] == ["--strict-json", "--merge"]
    assert json.loads(ran[1][3]) == {"primary": "costrouter/auto"}
    assert json.loads(ran[2][3]) == {"costrouter/auto": {}}


def test_write_reports_a_failing_agent_cli(capsys, tmp_path, monkeypatch):
    fake_cli(tmp_path, monkeypatch, "hermes")
    (tmp_path / "bin" / "hermes").write_text(f"#!{sys.executable}\nimport sys\nsys.exit('broken')\n")
    assert main(["connect", "hermes", "--write"]) == 1
    assert "broken" in capsys.readouterr().err


def test_hermes_write_without_the_cli_merges_config_yaml(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "hermes-home"))
    path = tmp_path / "hermes-home" / "config.yaml"
    path.parent.mkdir()
    path.write_text("model:\n  provider: openrouter\n  context_length: 300000\nterminal:\n  backend: local\n")
    connect(capsys, "hermes", "--key", "cr-given", "--write")
    config = yaml.safe_load(path.read_text())
    assert config == {"model": {"provider": "custom", "context_length": 300000,
                                "base_url": "http://127.0.0.1:8787/v1", "api_key": "cr-given",
                                "default": "auto"},
                      "terminal": {"backend": "local"}}


def test_hermes_config_defaults_to_home(capsys, tmp_path):
    connect(capsys, "hermes", "--key", "cr-given", "--write")
    config = yaml.safe_load((tmp_path / "home" / ".hermes" / "config.yaml").read_text())
    assert config["model"]["base_url"] == "http://127.0.0.1:8787/v1"


def test_openclaw_write_without_the_cli_merges_openclaw_json(capsys, tmp_path):
    path = tmp_path / "home" / ".openclaw" / "openclaw.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"gateway": {"port": 18789},
                                "agents": {"defaults": {"models": {"openai/gpt-5": {}}, "workspace": "~/w"}}}))
    connect(capsys, "openclaw", "--key", "cr-given", "--write")
    config = json.loads(path.read_text())
    assert config["gateway"] == {"port": 18789}
    assert config["agents"]["defaults"]["workspace"] == "~/w"
    assert config["agents"]["defaults"]["models"] == {"openai/gpt-5": {}, "costrouter/auto": {}}
    assert config["agents"]["defaults"]["model"] == {"primary": "costrouter/auto"}
    provider = config["models"]["providers"]["costrouter"]
    assert (provider["baseUrl"], provider["apiKey"]) == ("http://127.0.0.1:8787/v1", "cr-given")


def test_openclaw_config_path_is_honoured(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", str(tmp_path / "oc.json"))
    connect(capsys, "openclaw", "--write")
    assert "costrouter" in json.loads((tmp_path / "oc.json").read_text())["models"]["providers"]


def test_a_config_file_that_is_not_json_is_left_alone(capsys, tmp_path, monkeypatch):
    path = tmp_path / "oc.json5"
    path.write_text("{ // JSON5 comments\n  gateway: {port: 1},\n}\n")
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", str(path))
    assert main(["connect", "openclaw", "--write"]) == 1
    assert "edit it by hand" in capsys.readouterr().err
    assert path.read_text().startswith("{ // JSON5")


def test_an_agent_is_one_yaml_description(tmp_path, monkeypatch):
    from costr.cli import connect as module
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "my-agent.yaml").write_text(
        "title: My Agent\nconfig_files: ['$MY_AGENT_HOME/conf.json']\n"
        "settings: {endpoint: '{v1_url}', token: '{key}', models: {'{model}': {}}}\n"
        "instructions: |\n  my-agent login {v1_url} {key}\n")
    agents = module.load_agents(tmp_path / "agents")
    target = module.Target("http://h:1", "cr-k", "auto")
    assert agents["my-agent"].text(target) == "my-agent login http://h:1/v1 cr-k\n"
    monkeypatch.setenv("MY_AGENT_HOME", str(tmp_path / "mine"))
    assert module.write(agents["my-agent"], target) == [f"updated {tmp_path / 'mine' / 'conf.json'}"]
    assert json.loads((tmp_path / "mine" / "conf.json").read_text()) == {
        "endpoint": "http://h:1/v1", "token": "cr-k", "models": {"auto": {}}}
