"""The gateway configuration that points `costr serve` at the fake upstream: a providers file
with a model per tier, and a routing_policies/ directory with the default policy."""
from __future__ import annotations

from pathlib import Path

DEFAULT_MODELS = ["fake-mini", "fake-standard", "fake-large"]
PROVIDER_TYPE = "openai"   # the provider type a providers.yaml gives the fake (its chat wire)


def providers_yaml(upstream_url: str) -> str:
    """A providers.yaml whose one provider is a fake at `upstream_url` (spoken to in the OpenAI
    wire format), with a model per tier. Its tiers and default policy are the shipped ones, so
    the shipped routing_policies/ route it."""
    tiers = [("budget", 0.10, 0.40), ("standard", 1.00, 4.00), ("premium", 5.00, 20.00)]
    lines = [f"# The scripted fake upstream at {upstream_url}: no API key needed.",
             "tiers: [budget, standard, premium]", f"baseline: {DEFAULT_MODELS[-1]}",
             "routing: {scorer: learned, default_policy: balanced}",
             "providers:", "  fake:", f"    type: {PROVIDER_TYPE}",
             f"    base_url: {upstream_url}/v1", "models:"]
    for model_id, (tier, price_in, price_out) in zip(DEFAULT_MODELS, tiers):
        lines += [f"  - id: {model_id}", "    provider: fake", f"    tier: {tier}",
                  f"    price: {{input: {price_in}, output: {price_out}}}",
                  "    context_window: 128000", "    max_output_tokens: 16384",
                  "    capabilities: [tools, vision, json_output]"]
    return "\n".join(lines) + "\n"


def write_gateway_config(directory: Path, upstream_url: str) -> tuple[Path, Path]:
    """Write providers_yaml() as providers.yaml and a routing_policies/ with a balanced policy.
    Returns both paths, ready for `costr serve --providers ... --policies ...`."""
    providers = directory / "providers.yaml"
    providers.write_text(providers_yaml(upstream_url))
    policies = directory / "routing_policies"
    policies.mkdir(exist_ok=True)
    (policies / "balanced.yaml").write_text(
        "type: thresholds\nthresholds: {standard: 0.35, premium: 0.7}\n")
    return providers, policies
