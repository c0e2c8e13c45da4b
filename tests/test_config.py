"""Loading and validating providers.yaml and routing_policies/: every mistake is reported as
`file:line: key.path: reason`, all at once, and `costr check` says so without a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from costr.config.files import load_config
from costr.errors import ConfigError
from costr.routing.live import LiveConfig
from costr.plugins import collect, make_plugin_manager

REPO = Path(__file__).resolve().parents[1]

PROVIDERS = """\
tiers: [budget, standard, premium]
baseline: big
routing:
  scorer: heuristic
  default_policy: balanced
providers:
  local:
    type: openai
    base_url: http://127.0.0.1:9/v1
  keyed:
    type: openai
    base_url: http://127.0.0.1:9/v1
    api_key_env: COSTR_TEST_KEYED_KEY
models:
  - id: small
    provider: local
    tier: budget
    price: {input: 0.1, output: 0.4}
    context_window: 16000
  - id: middle
    provider: keyed
    tier: standard
    price: {input: 1.0, output: 4.0}
    context_window: 64000
  - id: big
    provider: local
    tier: premium
    price: {input: 3.0, output: 15.0}
    context_window: 200000
"""

BALANCED = """\
type: thresholds
description: Balance cost and quality.
thresholds:
  standard: 0.35
  premium: 0.7
"""


@pytest.fixture(scope="module")
def registry():
    return collect(make_plugin_manager())


def write(tmp_path: Path, providers: str = PROVIDERS, **policies: str) -> tuple[Path, Path]:
    """providers.yaml from text, and a routing_policies/ with `balanced` plus `policies`."""
    providers_path = tmp_path / "providers.yaml"
    providers_path.write_text(providers)
    policies_dir = tmp_path / "routing_policies"
    policies_dir.mkdir(exist_ok=True)
    for name, text in {"balanced": BALANCED, **policies}.items():
        (policies_dir / f"{name}.yaml").write_text(text)
    return providers_path, policies_dir


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    """The 1-based line of the `occurrence`-th line containing `fragment`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    return hits[occurrence - 1]


def problems_of(providers_path, policies_dir, registry, **kw) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(providers_path, policies_dir, registry, **kw)
    assert "Traceback" not in str(caught.value)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def assert_reported(problems: list[str], path: Path, line: int, key: str, *words: str) -> None:
    prefix = f"{path}:{line}: {key}: "
    matching = [p for p in problems if p.startswith(prefix)]
    assert matching, f"no problem starts with {prefix!r}; got {problems}"
    assert any(all(w.lower() in p.lower() for w in words) for p in matching), (words, matching)


# ---- the shipped configuration -------------------------------------------------------------

def test_shipped_config_validates_with_the_installed_plugins(registry):
    config = load_config(REPO / "providers.yaml", REPO / "routing_policies", registry, environ={})
    assert config.tiers == ["budget", "standard", "premium"]
    assert {"balanced", "low", "quality"} <= set(config.policies)
    assert config.baseline.id in config.models
    assert config.routing.default_policy in config.policies
    for model in config.models.values():
        assert model.mode == "embedding" or model.tier in config.tiers
    embedding = config.models[config.default_embedding_model]
    assert embedding.mode == "embedding"


def test_a_good_temporary_config_loads(tmp_path, registry):
    config = load_config(*write(tmp_path), registry, environ={})
    assert list(config.models) == ["small", "middle", "big"]
    assert config.baseline.id == "big"
    assert config.policies["balanced"] == ("thresholds",
                                           {"thresholds": {"standard": 0.35, "premium": 0.7}})


# ---- each kind of mistake ------------------------------------------------------------------

def test_misspelled_key_is_reported_with_line_and_path(tmp_path, registry):
    text = PROVIDERS.replace("    price: {input: 1.0, output: 4.0}",
                             "    prcie: {input: 1.0, output: 4.0}")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, line_of(text, "prcie"), "models[1].prcie", "unknown key")


def test_prompts_are_not_kept_unless_the_feedback_section_says_so(tmp_path, registry):
    config = load_config(*write(tmp_path), registry, environ={})
    assert (config.feedback.keep_prompts, config.feedback.keep_days) == (False, 30)
    text = PROVIDERS + "feedback:\n  keep_prompts: true\n  keep_days: 7\n"
    config = load_config(*write(tmp_path, text), registry, environ={})
    assert (config.feedback.keep_prompts, config.feedback.keep_days) == (True, 7)


def test_feedback_section_mistakes_are_reported_with_their_lines(tmp_path, registry):
    text = PROVIDERS + "feedback:\n  keep_prompt: true\n  keep_days: 0\n"
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, line_of(text, "keep_prompt:"), "feedback.keep_prompt",
                    "unknown key")
    assert_reported(problems, path, line_of(text, "keep_days"), "feedback.keep_days", "1")


def test_wrong_type_is_reported(tmp_path, registry):
    text = PROVIDERS.replace("{input: 0.1, output: 0.4}", '{input: "cheap", output: 0.4}')
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, line_of(text, "cheap"), "models[0].price.input", "number")


def test_model_naming_an_unknown_provider(tmp_path, registry):
    text = PROVIDERS.replace("    provider: keyed", "    provider: nowhere")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, line_of(text, "provider: nowhere"), "models[1].provider",
                    "unknown provider 'nowhere'", "local", "keyed")


def test_tier_not_in_tiers(tmp_path, registry):
    text = PROVIDERS.replace("tier: standard", "tier: standrd")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, line_of(text, "standrd"), "models[1].tier",
                    "'standrd' is not one of tiers")


def test_baseline_that_is_not_a_model(tmp_path, registry):
    text = PROVIDERS.replace("baseline: big", "baseline: huge")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, 2, "baseline", "'huge' is not a model id")


def test_duplicate_model_id(tmp_path, registry):
    text = PROVIDERS.replace("  - id: big", "  - id: small")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, line_of(text, "- id: small", 2), "models[2].id",
                    "'small' is listed twice")


def test_unknown_provider_type(tmp_path, registry):
    text = PROVIDERS.replace("    type: openai\n    base_url: http://127.0.0.1:9/v1\n  keyed",
                             "    type: opneai\n    base_url: http://127.0.0.1:9/v1\n  keyed")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, line_of(text, "opneai"), "providers.local.type",
                    "unknown provider type 'opneai'", "installed:")


def test_unknown_scorer(tmp_path, registry):
    text = PROVIDERS.replace("scorer: heuristic", "scorer: psychic")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, line_of(text, "psychic"), "routing.scorer",
                    "unknown scorer 'psychic'", "heuristic")


def test_policy_threshold_for_an_unknown_tier(tmp_path, registry):
    policy = "type: thresholds\nthresholds:\n  standard: 0.3\n  ultra: 0.8\n"
    path, policies = write(tmp_path, quality=policy)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, policies / "quality.yaml", 4, "thresholds.ultra",
                    "not one of tiers")


def test_thresholds_that_decrease_with_the_tiers(tmp_path, registry):
    policy = "type: thresholds\nthresholds:\n  standard: 0.7\n  premium: 0.3\n"
    path, policies = write(tmp_path, quality=policy)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, policies / "quality.yaml", 4, "thresholds.premium",
                    "below standard")


def test_unknown_policy_type(tmp_path, registry):
    path, policies = write(tmp_path, quality="type: vibes\n")
    problems = problems_of(path, policies, registry)
    assert_reported(problems, policies / "quality.yaml", 1, "type",
                    "unknown policy type 'vibes'", "thresholds")


def test_invalid_yaml_reports_the_line(tmp_path, registry):
    text = PROVIDERS.replace("    context_window: 64000", "    context_window: [64000")
    path, policies = write(tmp_path, text)
    problems = problems_of(path, policies, registry)
    assert len(problems) == 1
    problem = problems[0]
    assert problem.startswith(f"{path}:") and "not valid YAML" in problem
    reported = int(problem[len(f"{path}:"):].split(":")[0])
    # the scanner notices the unclosed flow sequence at or shortly after the broken line
    assert line_of(text, "[64000") <= reported <= line_of(text, "[64000") + 2


def test_invalid_yaml_in_a_policy_file(tmp_path, registry):
    path, policies = write(tmp_path, quality="type: thresholds\nthresholds: {standard: 0.2\n")
    problems = problems_of(path, policies, registry)
    assert any(p.startswith(f"{policies / 'quality.yaml'}:") and "not valid YAML" in p
               for p in problems), problems


def test_missing_policies_directory(tmp_path, registry):
    path, _ = write(tmp_path)
    missing = tmp_path / "no_such_dir"
    problems = problems_of(path, missing, registry)
    assert any(p == f"{missing}: policies directory not found" for p in problems), problems


def test_missing_providers_file(tmp_path, registry):
    _, policies = write(tmp_path)
    missing = tmp_path / "nope.yaml"
    problems = problems_of(missing, policies, registry)
    assert any(p.startswith(f"{missing}: cannot read") for p in problems), problems


def test_several_problems_are_reported_at_once(tmp_path, registry):
    text = (PROVIDERS.replace("baseline: big", "baseline: huge")
            .replace("tier: standard", "tier: standrd")
            .replace("scorer: heuristic", "scorer: psychic"))
    policy = "type: thresholds\nthresholds:\n  ultra: 0.8\n"
    path, policies = write(tmp_path, text, quality=policy)
    problems = problems_of(path, policies, registry)
    assert_reported(problems, path, 2, "baseline", "huge")
    assert_reported(problems, path, line_of(text, "standrd"), "models[1].tier", "standrd")
    assert_reported(problems, path, line_of(text, "psychic"), "routing.scorer", "psychic")
    assert_reported(problems, policies / "quality.yaml", 3, "thresholds.ultra", "tiers")
    assert len(problems) == 4


def test_shape_errors_in_both_files_are_reported_together(tmp_path, registry):
    text = PROVIDERS.replace("    price: {input: 1.0, output: 4.0}",
                             "    prcie: {input: 1.0, output: 4.0}")
    path, policies = write(tmp_path, text, quality="type: thresholds\nthresholds: [oops\n")
    problems = problems_of(path, policies, registry)
    assert any("prcie" in p for p in problems)
    assert any(p.startswith(f"{policies / 'quality.yaml'}:") for p in problems)


# ---- credentials ---------------------------------------------------------------------------

def test_provider_without_its_key_is_reported_and_left_out_of_routing(tmp_path, registry):
    config = load_config(*write(tmp_path), registry, environ={})
    assert config.missing_credentials() == {"keyed": "COSTR_TEST_KEYED_KEY"}
    live = LiveConfig.build(config, registry, http=None)
    assert live.usable == frozenset({"local"})
    assert set(live.providers) == {"local", "keyed"}


def test_provider_with_its_key_set_is_usable(tmp_path, registry):
    config = load_config(*write(tmp_path), registry, environ={"COSTR_TEST_KEYED_KEY": "sk-test"})
    assert config.missing_credentials() == {}
    assert config.providers["keyed"].api_key == "sk-test"
    live = LiveConfig.build(config, registry, http=None)
    assert live.usable == frozenset({"local", "keyed"})


def test_an_empty_key_counts_as_unset(tmp_path, registry):
    config = load_config(*write(tmp_path), registry, environ={"COSTR_TEST_KEYED_KEY": ""})
    assert config.missing_credentials() == {"keyed": "COSTR_TEST_KEYED_KEY"}


# ---- costr check -----------------------------------------------------------------------------

def run_costr(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("COSTR_") and k != "COSTR_TEST_KEYED_KEY"}
    return subprocess.run([sys.executable, "-m", "costr", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env={**clean, **env}, timeout=60)


def test_costr_check_accepts_a_good_config(tmp_path):
    path, policies = write(tmp_path)
    result = run_costr("check", "--providers", str(path), "--policies", str(policies))
    assert result.returncode == 0, result.stderr
    assert "OK: 3 chat models in tiers budget, standard, premium" in result.stdout
    assert "baseline big" in result.stdout
    assert "provider keyed is left out of routing until COSTR_TEST_KEYED_KEY is set" in result.stdout


def test_costr_check_rejects_a_bad_config_without_a_traceback(tmp_path):
    text = (PROVIDERS.replace("baseline: big", "baseline: huge")
            .replace("    price: {input: 1.0, output: 4.0}", "    prcie: {input: 1.0, output: 4.0}"))
    path, policies = write(tmp_path, text)
    result = run_costr("check", "--providers", str(path), "--policies", str(policies))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert f"{path}:{line_of(text, 'prcie')}: models[1].prcie: unknown key" in result.stderr
    assert "problem(s)" in result.stderr


def test_costr_check_reports_invalid_yaml(tmp_path):
    path, policies = write(tmp_path, PROVIDERS + "  - id: [broken\n")
    result = run_costr("check", "--providers", str(path), "--policies", str(policies))
    assert result.returncode == 2
    assert "not valid YAML" in result.stderr and "Traceback" not in result.stderr


def test_costr_check_honours_the_environment_variables(tmp_path):
    path, policies = write(tmp_path)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    result = run_costr("check", cwd=elsewhere, COSTR_PROVIDERS=str(path),
                       COSTR_POLICIES=str(policies), COSTR_TEST_KEYED_KEY="sk-test")
    assert result.returncode == 0, result.stderr
    assert "OK: 3 chat models" in result.stdout and "left out of routing" not in result.stdout

    result = run_costr("check", cwd=elsewhere, COSTR_PROVIDERS=str(tmp_path / "absent.yaml"),
                       COSTR_POLICIES=str(policies))
    assert result.returncode == 2 and "absent.yaml" in result.stderr


# ---- the shipped configuration, from any folder ----------------------------------------------

def test_the_shipped_configuration_is_the_top_level_files_and_package_data():
    """Linked, not copied, so the files operators and tests edit are the ones a wheel carries."""
    import tomllib

    from costr.config.shipped import SHIPPED_POLICIES, SHIPPED_PROVIDERS
    assert SHIPPED_PROVIDERS.resolve() == (REPO / "providers.yaml").resolve()
    assert SHIPPED_POLICIES.resolve() == (REPO / "routing_policies").resolve()
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["costr.config"]
    packaged = {p.relative_to(REPO / "costr" / "config")
                for pattern in patterns for p in (REPO / "costr" / "config").glob(pattern)
                if p.parts[-2] != "agents"}   # costr connect's agent descriptions ship too
    assert packaged == {Path("defaults/providers.yaml"), *(
        Path("defaults/routing_policies") / p.name for p in (REPO / "routing_policies").glob("*.yaml"))}


def test_costr_check_from_an_empty_folder_uses_the_shipped_configuration(tmp_path):
    result = run_costr("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "policies: balanced, low, quality" in result.stdout
    assert "using the shipped configuration" in result.stderr and " init` writes" in result.stderr


def test_costr_init_writes_editable_copies_that_costr_then_reads(tmp_path):
    result = run_costr("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    copies = ["providers.yaml", *(f"routing_policies/{p.name}"
                                  for p in sorted((REPO / "routing_policies").glob("*.yaml")))]
    assert [line.removeprefix("wrote ") for line in result.stdout.splitlines()[:-1]] == copies
    for name in copies:
        assert not (tmp_path / name).is_symlink()
        assert (tmp_path / name).read_text() == (REPO / name).read_text()
    # The copies are what `costr check` in this folder reads, edits and all.
    (tmp_path / "routing_policies" / "low.yaml").unlink()
    checked = run_costr("check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "policies: balanced, quality" in checked.stdout and "shipped" not in checked.stderr


def test_costr_init_overwrites_nothing_without_force(tmp_path):
    (tmp_path / "providers.yaml").write_text("# mine\n")
    refused = run_costr("init", cwd=tmp_path)
    assert refused.returncode == 2 and "providers.yaml" in refused.stderr
    assert "--force" in refused.stderr and refused.stdout == ""
    assert (tmp_path / "providers.yaml").read_text() == "# mine\n"
    assert not (tmp_path / "routing_policies").exists()
    forced = run_costr("init", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "providers.yaml").read_text() == (REPO / "providers.yaml").read_text()


def test_costr_init_into_another_folder_says_how_to_serve_it(tmp_path):
    result = run_costr("init", "--dir", "conf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--providers conf/providers.yaml --policies conf/routing_policies" in result.stdout
    checked = run_costr("check", "--providers", "conf/providers.yaml", "--policies",
                        "conf/routing_policies", cwd=tmp_path)
    assert checked.returncode == 0 and "shipped" not in checked.stderr
