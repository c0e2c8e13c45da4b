"""Options the plugins read: a provider type's (for itself and its models) and the scorer's.
A mistake there is reported like any other in providers.yaml, `file:line: key.path: reason`,
by `costr check`, at start and on reload, instead of being ignored or failing once serving;
and each provider's own `check_settings()` is heard."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from costr.cli.main import main
from costr.config.files import load_config
from costr.hookspecs import hookimpl
from costr.routing.live import ConfigHolder, LiveConfig
from costr.plugins import collect, make_plugin_manager
from costr.wire.providers import Provider
from costr.testing import registered_plugin

from test_config import PROVIDERS, assert_reported, line_of, problems_of, write

import costr_learned_scorer.scorer as learned

# A pool with one provider of each built-in type and of the example plugin's.
POOL = """\
tiers: [budget, standard, premium]
baseline: big
routing:
  scorer: heuristic
providers:
  local:
    type: openai
    base_url: http://127.0.0.1:9/v1
    options: {}
  claude:
    type: anthropic
    api_key_env: COSTR_TEST_ANTHROPIC_KEY
    options: {version: "2023-06-01"}
  google:
    type: gemini
    api_key_env: COSTR_TEST_GEMINI_KEY
  llama:
    type: ollama
    base_url: http://127.0.0.1:11434
    options: {num_ctx: 8192, keep_alive: 10m}
models:
  - id: small
    provider: llama
    tier: budget
    price: {input: 0, output: 0}
    context_window: 8192
  - id: middle
    provider: local
    tier: standard
    price: {input: 1.0, output: 4.0}
    context_window: 64000
    options: {max_tokens_field: max_tokens, unsupported_params: [seed]}
  - id: big
    provider: claude
    tier: premium
    price: {input: 3.0, output: 15.0}
    context_window: 200000
    options: {thinking: adaptive}
  - id: flash
    provider: google
    tier: budget
    price: {input: 0.1, output: 0.4}
    context_window: 1000000
    options: {requires_thought_signatures: true}
"""


@pytest.fixture(scope="module")
def registry():
    return collect(make_plugin_manager())


def check(providers_path: Path, policies_dir: Path, capsys) -> tuple[int, str, str]:
    """`costr check` run in this process: exit status, stdout, stderr."""
    status = main(["check", "--providers", str(providers_path), "--policies", str(policies_dir)])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_options_each_built_in_type_reads_are_accepted(tmp_path, registry):
    config = load_config(*write(tmp_path, POOL), registry, environ={})
    assert config.models["middle"].options["unsupported_params"] == ["seed"]
    assert config.providers["llama"].options == {"num_ctx": 8192, "keep_alive": "10m"}


# ---- provider types' options ----------------------------------------------------------------

def test_an_unknown_provider_option_names_the_known_ones(tmp_path, registry):
    text = (POOL.replace('options: {version: "2023-06-01"}', 'options: {verison: "2023-06-01"}')
            .replace("    options: {}\n", "    options: {organization: acme}\n"))
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry, environ={})
    assert_reported(problems, path, line_of(text, "verison"), "providers.claude.options.verison",
                    "unknown option for provider type 'anthropic' (known: version)")
    assert_reported(problems, path, line_of(text, "organization"),
                    "providers.local.options.organization",
                    "unknown option for provider type 'openai' (it takes no options)")
    assert len(problems) == 2


def test_an_unknown_model_option_on_an_openai_model(tmp_path, registry):
    text = POOL.replace("{max_tokens_field: max_tokens,", "{max_token_field: max_tokens,")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry, environ={})
    assert problems == [f"{path}:{line_of(text, 'max_token_field')}: "
                        "models[1].options.max_token_field: unknown option for models of "
                        "provider type 'openai' (known: max_tokens_field, unsupported_params)"]


@pytest.mark.parametrize("written,key,reason", [
    ("{requires_thought_signatures: \"yes\"}", "models[3].options.requires_thought_signatures",
     "Input should be a valid boolean"),
    ("{thinking: adaptiv}", "models[2].options.thinking", "'adaptive' or 'enabled'"),
    ("{max_tokens_field: max_tokens, unsupported_params: seed}",
     "models[1].options.unsupported_params", "valid list"),
], ids=["gemini-bool", "anthropic-literal", "openai-list"])
def test_a_wrongly_typed_model_option(tmp_path, registry, written, key, reason):
    originals = {"models[3]": "{requires_thought_signatures: true}",
                 "models[2]": "{thinking: adaptive}",
                 "models[1]": "{max_tokens_field: max_tokens, unsupported_params: [seed]}"}
    text = POOL.replace(originals[key.split(".")[0]], written)
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry, environ={})
    assert_reported(problems, path, line_of(text, written), key, reason)
    assert len(problems) == 1


def test_a_type_that_takes_no_model_options_refuses_them(tmp_path, registry):
    text = POOL.replace("    context_window: 8192\n", "    context_window: 8192\n"
                        "    options: {num_ctx: 8192}\n")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry, environ={})
    assert_reported(problems, path, line_of(text, "options: {num_ctx", 2),
                    "models[0].options.num_ctx",
                    "unknown option for models of provider type 'ollama' (it takes no options)")


class UndeclaredProvider(Provider):
    """A third party's provider type written before types declared their options."""


def refusing_factory(settings, http):
    raise ValueError("this type needs a base_url")


class ThirdPartyPlugin:
    @hookimpl
    def register_provider_types(self, register):
        register("homegrown", UndeclaredProvider)
        register("picky", refusing_factory)


def test_a_third_party_type_that_declares_nothing_accepts_any_option(tmp_path):
    text = PROVIDERS.replace("  keyed:\n    type: openai", "  keyed:\n    type: homegrown\n"
                             "    options: {anything: [1, 2], at_all: {nested: true}}")
    text = text.replace("    context_window: 64000\n", "    context_window: 64000\n"
                        "    options: {whatever: 3}\n")
    pm = make_plugin_manager()
    with registered_plugin(pm, ThirdPartyPlugin(), name="third-party"):
        registry = collect(pm)
        config = load_config(*write(tmp_path, text), registry, environ={})
        assert config.providers["keyed"].options == {"anything": [1, 2],
                                                     "at_all": {"nested": True}}
        assert config.models["middle"].options == {"whatever": 3}

        # a factory that refuses its settings is reported against the provider, too
        picky = text.replace("type: homegrown", "type: picky")
        path, policies = write(tmp_path, picky)
        assert_reported(problems_of(path, policies, registry, environ={}), path,
                        line_of(picky, "  keyed:"), "providers.keyed", "needs a base_url")


# ---- check_settings() ------------------------------------------------------------------------

def test_costr_check_rejects_an_ollama_url_for_the_openai_compatible_api(tmp_path, capsys):
    text = POOL.replace("base_url: http://127.0.0.1:11434", "base_url: http://127.0.0.1:11434/v1")
    path, policies = write(tmp_path, text)
    status, out, err = check(path, policies, capsys)
    assert status == 2 and out == "" and "Traceback" not in err
    assert (f"  {path}:{line_of(text, '  llama:')}: providers.llama: base_url "
            "'http://127.0.0.1:11434/v1' looks like Ollama's OpenAI-compatible API; type ollama "
            "speaks the native API: drop the /v1") in err.splitlines()


def test_a_missing_api_key_is_a_note_not_a_problem(tmp_path, capsys):
    status, out, err = check(*write(tmp_path, POOL), capsys)
    assert status == 0, err
    assert "note: provider claude is left out of routing until COSTR_TEST_ANTHROPIC_KEY is set." in out
    assert "note: provider google is left out of routing until COSTR_TEST_GEMINI_KEY is set." in out


# ---- the scorer's options --------------------------------------------------------------------

@pytest.mark.parametrize("scorer,typo,known", [
    ("learned", "modle: /x.json.gz", "model"),
    ("heuristic", "bais: -1.0", "bias"),
])
def test_a_scorer_option_typo_is_reported(tmp_path, registry, scorer, typo, known):
    text = PROVIDERS.replace("  scorer: heuristic\n",
                             f"  scorer: {scorer}\n  scorer_options: {{{typo}}}\n")
    path, policies = write(tmp_path, text)
    key = typo.split(":")[0]
    problems = problems_of(path, policies, registry)
    assert problems == [f"{path}:{line_of(text, key)}: routing.scorer_options.{key}: unknown "
                        f"option for scorer '{scorer}' (known: {known})"]


def test_a_bias_that_is_not_a_number_is_reported(tmp_path, registry):
    text = PROVIDERS.replace("  scorer: heuristic\n",
                             "  scorer: heuristic\n  scorer_options:\n    bias: high\n")
    path, policies = write(tmp_path, text)
    assert_reported(problems_of(path, policies, registry), path, line_of(text, "bias: high"),
                    "routing.scorer_options.bias", "valid number")


def test_costr_check_names_an_unreadable_scorer_model_without_a_traceback(tmp_path, capsys):
    text = PROVIDERS.replace("  scorer: heuristic\n",
                             "  scorer: learned\n  scorer_options: {model: /nope.json.gz}\n")
    path, policies = write(tmp_path, text)
    status, out, err = check(path, policies, capsys)
    assert status == 2 and out == "" and "Traceback" not in err
    assert err.splitlines()[1:] == [
        f"  {path}:{line_of(text, 'nope')}: routing.scorer_options.model: cannot read "
        "/nope.json.gz: No such file or directory"]


def test_a_scorer_model_that_is_not_a_model_file_is_reported(tmp_path, registry):
    junk = tmp_path / "notes.json.gz"
    junk.write_text("not gzip at all")
    text = PROVIDERS.replace("  scorer: heuristic\n",
                             f"  scorer: learned\n  scorer_options: {{model: {junk}}}\n")
    path, policies = write(tmp_path, text)
    assert_reported(problems_of(path, policies, registry), path, line_of(text, "notes"),
                    "routing.scorer_options.model", f"cannot read {junk}: not a gzipped file")


def test_the_scorer_model_is_read_once_for_checking_and_serving(tmp_path, registry, monkeypatch):
    model = tmp_path / "mine.json.gz"
    shutil.copy(learned.DEFAULT_MODEL, model)
    reads = []
    real_load = learned.LinearModel.load
    monkeypatch.setattr(learned.LinearModel, "load",
                        classmethod(lambda cls, p: reads.append(p) or real_load(p)))
    text = PROVIDERS.replace("  scorer: heuristic\n",
                             f"  scorer: learned\n  scorer_options: {{model: {model}}}\n")
    config = load_config(*write(tmp_path, text), registry, environ={})
    live = LiveConfig.build(config, registry, http=None)
    assert reads == [str(model)]
    assert live.scorer.model is learned.LearnedScorer({"model": str(model)}).model


# ---- reloads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mistake", [
    ("  scorer: heuristic\n", "  scorer: learned\n  scorer_options: {model: /nope.json.gz}\n"),
    ("{max_tokens_field: max_tokens,", "{max_token_field: max_tokens,"),
    ("base_url: http://127.0.0.1:11434", "base_url: http://127.0.0.1:11434/v1"),
], ids=["scorer-model", "model-option", "check-settings"])
def test_a_reload_with_a_bad_option_keeps_the_last_good_config(tmp_path, registry, mistake):
    path, policies = write(tmp_path, POOL)
    holder = ConfigHolder(path, policies, registry, http=None, poll_seconds=60)
    good = holder.current
    path.write_text(POOL.replace(*mistake))
    assert holder.reload() is False and holder.current is good
    path.write_text(POOL.replace("id: small", "id: tiny"))
    assert holder.reload() is True and "tiny" in holder.current.chat_models
