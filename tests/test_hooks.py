"""The hook specifications stay documented, and plugins can be registered for one test."""
import inspect
import re
from pathlib import Path

from costr import hookspecs
from costr.hookspecs import hookimpl
from costr.plugins import KINDS, collect, make_plugin_manager
from costr.routing.scoring import Complexity
from costr.testing import registered_plugin

GUIDE = Path(__file__).resolve().parent.parent / "plugins" / "README.md"


def hook_specs() -> dict:
    return {name: fn for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and hasattr(fn, "costr_spec")}


def test_hooks_are_found():
    assert set(hook_specs()) == set(KINDS)


def test_every_hook_has_a_docstring():
    undocumented = [name for name, fn in hook_specs().items()
                    if not (fn.__doc__ or "").strip()]
    assert undocumented == []


def test_every_hook_has_a_section_in_the_plugin_guide():
    headings = re.findall(r"^#{2,4} +`?(\w+)`?\s*$", GUIDE.read_text(), re.M)
    missing = [name for name in hook_specs() if name not in headings]
    assert missing == [], f"plugins/README.md has no section for {missing}"


class ThrowawayScorer:
    def __init__(self, options):
        self.options = options

    def score(self, request):
        return Complexity(0.5, 1.0, {"throwaway": True})


class ThrowawayPlugin:
    @hookimpl
    def register_scorers(self, register):
        register("throwaway", ThrowawayScorer)


def test_registered_plugin_lasts_one_block():
    pm = make_plugin_manager(load_entry_points=False)
    plugin = ThrowawayPlugin()
    with registered_plugin(pm, plugin, name="throwaway-plugin"):
        registry = collect(pm)
        assert registry.scorers["throwaway"] is ThrowawayScorer
        assert registry.origins[("scorer", "throwaway")] == "throwaway-plugin"
        assert registry.scorers["throwaway"]({}).score(None).signals == {"throwaway": True}
    assert "throwaway" not in collect(pm).scorers
    assert pm.get_plugin("throwaway-plugin") is None and not pm.is_registered(plugin)


def test_registered_plugin_unregisters_when_the_test_fails():
    pm = make_plugin_manager(load_entry_points=False)
    try:
        with registered_plugin(pm, ThrowawayPlugin(), name="throwaway-plugin"):
            raise AssertionError("a failing test")
    except AssertionError:
        pass
    assert "throwaway" not in collect(pm).scorers


class GreetCommand:
    help = "say hello"

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("who")

    @staticmethod
    def run(args):
        print(f"hello {args.who}")
        return 7


class CommandPlugin:
    def __init__(self, name):
        self.name = name

    @hookimpl
    def register_commands(self, register):
        register(self.name, GreetCommand)


def _cli_with(monkeypatch, plugin):
    from costr.cli import main as cli
    pm = make_plugin_manager()
    pm.register(plugin, name="command-plugin")
    monkeypatch.setattr(cli, "make_plugin_manager", lambda: pm)
    return cli


def test_a_plugin_adds_a_costr_command(monkeypatch, capsys):
    cli = _cli_with(monkeypatch, CommandPlugin("greet"))
    assert cli.main(["greet", "operator"]) == 7
    assert capsys.readouterr().out == "hello operator\n"


def test_a_plugin_cannot_take_a_built_in_command(monkeypatch, capsys):
    cli = _cli_with(monkeypatch, CommandPlugin("serve"))
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "command-plugin" in err and "'serve'" in err


def test_a_scorer_without_score_is_refused_when_the_configuration_is_built(tmp_path):
    import pytest

    from costr.config.files import load_config
    from costr.errors import ConfigError
    from costr.routing.live import LiveConfig

    class Shapeless:
        @hookimpl
        def register_scorers(self, register):
            register("shapeless", lambda options: object())

    repo = Path(__file__).resolve().parents[1]
    providers = tmp_path / "providers.yaml"
    text = (repo / "providers.yaml").read_text()
    providers.write_text(re.sub(r"(?m)^(\s*)scorer: \w+", r"\1scorer: shapeless", text, count=1))
    pm = make_plugin_manager()
    with registered_plugin(pm, Shapeless()):
        registry = collect(pm)
        config = load_config(providers, repo / "routing_policies", registry, environ={})
        with pytest.raises(ConfigError, match="'shapeless' built a object, which has no score"):
            LiveConfig.build(config, registry, http=None)
