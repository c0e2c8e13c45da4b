"""Costr's own endpoints, served from a temporary config in front of a local fake upstream:
models, router health, dry-run, embeddings, and unknown paths."""
from __future__ import annotations

import base64
import shutil
import struct
import time
from pathlib import Path

import httpx
import pytest

from costr.testing import AUTH, running_gateway
from costr.testing.fake_upstream import FakeUpstream

REPO = Path(__file__).resolve().parents[1]
LOCKED_ENV = "COSTR_TEST_ENDPOINTS_LOCKED_KEY"
SIX_FIELDS = {"requested_model", "routed_model", "routed_provider", "tier", "confidence",
              "savings_percent"}
HARD_PROMPT = "Prove that for every prime p > 3, p^2 - 1 is divisible by 24."

POOL = """\
tiers: [budget, standard, premium]
baseline: fake-large
default_embedding_model: fake-embed
routing: {{auto_aliases: [claude-costr-auto]}}
providers:
  fake: {{type: openai, base_url: "{url}/v1"}}
  locked: {{type: openai, base_url: "{url}/v1", api_key_env: {env}}}
models:
  - {{id: fake-mini, provider: fake, tier: budget, price: {{input: 0.1, output: 0.4}},
     context_window: 128000, max_output_tokens: 8192, capabilities: [tools, json_output]}}
  - {{id: locked-mini, provider: locked, tier: budget, price: {{input: 0.01, output: 0.01}},
     context_window: 128000, max_output_tokens: 8192}}
  - {{id: fake-standard, provider: fake, tier: standard, price: {{input: 0.5, output: 2.0}},
     context_window: 128000, max_output_tokens: 16384, capabilities: [tools, vision, json_output]}}
  - {{id: fake-large, provider: fake, tier: premium,
     price: {{input: 3.0, output: 15.0, cached_input: 0.3}},
     context_window: 200000, max_output_tokens: 32000, capabilities: [tools, vision, json_output]}}
  - {{id: fake-embed, provider: fake, mode: embedding, price: {{input: 0.02, output: 0}},
     context_window: 8191}}
  - {{id: locked-embed, provider: locked, mode: embedding, price: {{input: 0.02, output: 0}},
     context_window: 8191}}
"""

# As an operator writes a pool quickly: no model states its output limit.
UNLIMITED_POOL = """\
tiers: [budget, standard, premium]
baseline: large
providers:
  fake: {{type: openai, base_url: "{url}/v1"}}
models:
  - {{id: small, provider: fake, tier: budget, price: {{input: 0.1, output: 0.4}}, context_window: 128000}}
  - {{id: medium, provider: fake, tier: standard, price: {{input: 0.5, output: 2}}, context_window: 128000}}
  - {{id: large, provider: fake, tier: premium, price: {{input: 3, output: 15}}, context_window: 200000}}
"""


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(fake, tmp_path_factory):
    directory = tmp_path_factory.mktemp("endpoints")
    providers = directory / "providers.yaml"
    providers.write_text(POOL.format(url=fake.url, env=LOCKED_ENV))
    policies = directory / "routing_policies"
    shutil.copytree(REPO / "routing_policies", policies)
    with pytest.MonkeyPatch.context() as env:
        env.delenv(LOCKED_ENV, raising=False)
        with running_gateway(providers, policies) as base_url:
            yield base_url


@pytest.fixture
def client(gateway):
    with httpx.Client(base_url=gateway, timeout=10, headers=AUTH) as http:
        yield http


def assert_openai_error(response: httpx.Response, status: int, **expected) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    for key, value in expected.items():
        assert error[key] == value, (key, error)
    return error


# ---- models --------------------------------------------------------------------------------

def test_models_is_an_openai_list_with_auto_first(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids[0] == "auto" and ids[1] == "claude-costr-auto"
    for entry in body["data"]:
        assert entry["object"] == "model"
        assert {"context_length", "max_output_tokens", "pricing", "tier"} <= set(entry), entry
        assert entry["pricing"]["unit"] == "USD per 1M tokens"


def test_models_lists_only_models_with_usable_providers(client):
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids[2:] == ["fake-mini", "fake-standard", "fake-large", "fake-embed"]


def test_model_entries_describe_price_limits_and_tier(client):
    entries = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    large = entries["fake-large"]
    assert large["tier"] == "premium" and large["context_length"] == 200000
    assert large["max_output_tokens"] == 32000
    assert large["pricing"]["input"] == 3.0 and large["pricing"]["output"] == 15.0
    assert large["pricing"]["cached_input"] == 0.3
    assert entries["fake-mini"]["pricing"]["cached_input"] == 0.1  # defaults to input
    auto = entries["auto"]
    assert auto["tier"] == "auto" and auto["context_length"] == 200000
    assert auto["max_output_tokens"] == 32000   # the largest of the usable models'
    assert auto["pricing"]["input"] == 0.1 and auto["pricing"]["max_input"] == 3.0
    assert entries["fake-embed"]["mode"] == "embedding"


def test_auto_has_no_output_limit_when_no_model_states_one(tmp_path, fake):
    """null, as a model without max_output_tokens shows, rather than a limit of 0."""
    providers = tmp_path / "providers.yaml"
    providers.write_text(UNLIMITED_POOL.format(url=fake.url))
    with running_gateway(providers, REPO / "routing_policies") as base:
        entries = {m["id"]: m for m in httpx.get(f"{base}/v1/models", headers=AUTH).json()["data"]}
    assert entries["auto"]["max_output_tokens"] is None
    assert entries["large"]["max_output_tokens"] is None


def test_get_one_model(client):
    auto = client.get("/v1/models/auto")
    assert auto.status_code == 200 and auto.json()["id"] == "auto"
    assert client.get("/v1/models/claude-costr-auto").json()["tier"] == "auto"
    mini = client.get("/v1/models/fake-mini").json()
    assert mini["id"] == "fake-mini" and mini["tier"] == "budget" and mini["owned_by"] == "fake"


def test_unknown_model_is_an_openai_404(client):
    error = assert_openai_error(client.get("/v1/models/gpt-17"), 404, code="model_not_found",
                                type="invalid_request_error", param="model")
    assert "gpt-17" in error["message"] and "GET /v1/models" in error["message"]


# ---- health --------------------------------------------------------------------------------

def test_health_reports_config_and_providers(client):
    health = client.get("/v1/router/health").json()
    assert health["config_loaded"] is True and health["status"] == "degraded"
    assert health["providers"]["fake"] == {"type": "openai", "usable": True}
    assert health["providers"]["locked"] == {"type": "openai", "usable": False,
                                             "missing_env": LOCKED_ENV}
    assert health["tiers"] == {"budget": ["fake-mini"], "standard": ["fake-standard"],
                               "premium": ["fake-large"]}
    assert health["default_policy"] == "balanced" and health["baseline"] == "fake-large"
    assert health["config"]["providers_file"].endswith("providers.yaml")


# ---- dry-run -------------------------------------------------------------------------------

def test_dry_run_of_an_openai_body_routes_without_calling_upstream(client, fake):
    before = len(fake.requests)
    response = client.post("/v1/router/dry-run", headers={"x-cost-priority": "quality"}, json={
        "model": "auto", "messages": [{"role": "user", "content": HARD_PROMPT}]})
    assert response.status_code == 200, response.text
    body = response.json()
    routing = body["x_routing"]
    assert SIX_FIELDS | {"complexity", "policy"} <= set(routing)
    assert routing["requested_model"] == "auto" and routing["policy"] == "quality"
    assert routing["tier"] == "premium" and routing["routed_model"] == "fake-large"
    assert routing["routed_provider"] == "fake" and routing["savings_percent"] == 0.0
    assert 0 < routing["confidence"] <= 1 and 0 <= routing["complexity"] <= 1
    assert body["format"] == "openai-chat"
    assert body["complexity"]["score"] == routing["complexity"]
    assert body["candidates"][0] == "fake-large"
    assert response.headers["x-costr-routed-model"] == "fake-large"
    assert len(fake.requests) == before


def test_dry_run_of_a_trivial_prompt_saves_against_the_baseline(client, fake):
    before = len(fake.requests)
    routing = client.post("/v1/router/dry-run", json={
        "model": "auto", "messages": [{"role": "user", "content": "hi"}]}).json()["x_routing"]
    assert routing["routed_model"] == "fake-mini" and routing["tier"] == "budget"
    assert routing["policy"] == "balanced" and routing["savings_percent"] > 90
    assert len(fake.requests) == before


ANTHROPIC_BODY = {
    "model": "auto", "max_tokens": 256,
    "system": "You are a careful assistant. " * 400,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
}


def test_dry_run_of_an_anthropic_style_body_reports_routing(client, fake):
    before = len(fake.requests)
    response = client.post("/v1/router/dry-run", json=ANTHROPIC_BODY,
                           headers={"anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.text
    routing = response.json()["x_routing"]
    assert SIX_FIELDS | {"complexity", "policy"} <= set(routing)
    assert routing["requested_model"] == "auto" and routing["tier"] == "budget"
    assert len(fake.requests) == before


def test_dry_run_decodes_an_anthropic_body_as_anthropic(client):
    body = client.post("/v1/router/dry-run", json=ANTHROPIC_BODY,
                       headers={"anthropic-version": "2023-06-01"}).json()
    assert body["format"] != "openai-chat"
    assert body["estimated_prompt_tokens"] > len(ANTHROPIC_BODY["system"]) // 4


def test_dry_run_of_an_explicit_model(client):
    routing = client.post("/v1/router/dry-run", json={
        "model": "fake-standard", "messages": [{"role": "user", "content": HARD_PROMPT}]
    }).json()["x_routing"]
    assert routing["routed_model"] == "fake-standard" and routing["policy"] is None
    assert routing["complexity"] is None and routing["confidence"] == 1.0


def test_dry_run_errors_are_openai_shaped(client):
    assert_openai_error(client.post("/v1/router/dry-run", content=b"{not json"), 400,
                        type="invalid_request_error")
    assert_openai_error(client.post("/v1/router/dry-run", headers={"x-cost-priority": "free"},
                                    json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
                        400, param="x-cost-priority")
    assert_openai_error(client.post("/v1/router/dry-run", json={
        "model": "locked-mini", "messages": [{"role": "user", "content": "hi"}]}), 503,
        code="no_usable_provider")


# ---- embeddings ----------------------------------------------------------------------------

def test_embeddings_with_auto_use_the_default_embedding_model(client, fake):
    response = client.post("/v1/embeddings", json={"model": "auto", "input": ["alpha", "beta"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == "fake-embed"
    assert [row["index"] for row in body["data"]] == [0, 1]
    vectors = [row["embedding"] for row in body["data"]]
    assert all(isinstance(v, float) for vector in vectors for v in vector)
    assert len(vectors[0]) == len(vectors[1]) > 0 and vectors[0] != vectors[1]
    assert body["usage"]["prompt_tokens"] > 0
    assert body["x_routing"] == {"requested_model": "auto", "routed_model": "fake-embed",
                                 "routed_provider": "fake"}
    assert fake.requests[-1].path == "/v1/embeddings"
    assert fake.requests[-1].body["model"] == "fake-embed"


def test_embeddings_as_base64_are_little_endian_float32(client):
    text = "the same text both ways"
    floats = client.post("/v1/embeddings", json={"model": "auto", "input": text}).json()
    packed = client.post("/v1/embeddings", json={"model": "auto", "input": text,
                                                 "encoding_format": "base64"}).json()
    vector = floats["data"][0]["embedding"]
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert len(raw) == 4 * len(vector)
    decoded = struct.unpack(f"<{len(vector)}f", raw)
    assert decoded == pytest.approx(vector, rel=1e-6, abs=1e-7)


def test_embeddings_pass_dimensions(client, fake):
    body = client.post("/v1/embeddings", json={"model": "fake-embed", "input": "x",
                                               "dimensions": 8}).json()
    assert len(body["data"][0]["embedding"]) == 8
    assert fake.requests[-1].body["dimensions"] == 8


@pytest.mark.parametrize("payload", [
    {"model": "auto"},
    {"model": "auto", "input": ""},
    {"model": "auto", "input": ["fine", ""]},
    {"model": "auto", "input": []},
    {"model": "auto", "input": [1, 2, 3]},
    {"model": "auto", "input": [[1, 2], [3]]},
], ids=["missing", "empty-string", "empty-in-list", "empty-list", "tokens", "token-arrays"])
def test_embeddings_reject_bad_input(client, fake, payload):
    before = len(fake.requests)
    assert_openai_error(client.post("/v1/embeddings", json=payload), 400,
                        type="invalid_request_error", param="input")
    assert len(fake.requests) == before


def test_embeddings_reject_other_bad_requests(client):
    assert_openai_error(client.post("/v1/embeddings", json={"input": "x"}), 400, param="model")
    assert_openai_error(client.post("/v1/embeddings", json={"model": "auto", "input": "x",
                                                            "encoding_format": "int8"}),
                        400, param="encoding_format")
    assert_openai_error(client.post("/v1/embeddings", json={"model": "auto", "input": "x",
                                                            "dimensions": 0}),
                        400, param="dimensions")
    assert_openai_error(client.post("/v1/embeddings", content=b"[1"), 400)


def test_embeddings_unknown_or_unusable_model(client):
    assert_openai_error(client.post("/v1/embeddings", json={"model": "nope", "input": "x"}), 404,
                        code="model_not_found")
    # a chat model is not an embedding model
    assert_openai_error(client.post("/v1/embeddings", json={"model": "fake-mini", "input": "x"}),
                        404, code="model_not_found")
    error = assert_openai_error(
        client.post("/v1/embeddings", json={"model": "locked-embed", "input": "x"}), 503,
        code="no_usable_provider")
    assert LOCKED_ENV in error["message"]


# ---- unknown paths -------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("POST", "/api/show"), ("GET", "/api/v1/models"),
                                         ("GET", "/"), ("POST", "/v2/chat/completions")])
def test_unknown_paths_are_a_quick_json_404(client, method, path):
    started = time.monotonic()
    response = client.request(method, path, json={} if method == "POST" else None)
    assert time.monotonic() - started < 1.0
    error = assert_openai_error(response, 404, code="unknown_endpoint")
    assert path in error["message"]


@pytest.mark.parametrize("method,path", [("POST", "/v1/audio/speech"), ("GET", "/v2/foo"),
                                         ("POST", "/v1/completions")])
def test_an_endpoint_costr_does_not_have_is_named_as_such(client, method, path):
    error = assert_openai_error(client.request(method, path, json={}), 404,
                                code="unknown_endpoint")
    assert error["message"].startswith(f"Costr does not serve {method} {path}.")
    assert "base URL" not in error["message"]
    for served in ("POST /v1/chat/completions", "POST /v1/messages", "GET /v1/models"):
        assert served in error["message"]


@pytest.mark.parametrize("method,path,served", [
    ("GET", "/models", "GET /v1/models"),
    ("POST", "/v1/v1/messages", "POST /v1/messages"),
    ("POST", "/v1/v1/chat/completions", "POST /v1/chat/completions"),
    ("POST", "/embeddings", "POST /v1/embeddings")])
def test_a_path_one_base_off_names_the_right_one(client, gateway, method, path, served):
    error = assert_openai_error(client.request(method, path, json={}), 404,
                                code="unknown_endpoint")
    assert f"Costr serves {served}," in error["message"]
    assert f"use {gateway}/v1;" in error["message"] and f"use {gateway}." in error["message"]


def test_head_on_root_is_a_quick_404(client):
    started = time.monotonic()
    response = client.head("/")
    assert time.monotonic() - started < 1.0
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
