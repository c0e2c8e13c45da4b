"""Property-based fuzzing of both request schemas against a running Costr (issue 15, hardening).

Each example is a valid body (OpenAI Chat Completions or Anthropic Messages, built from
strategies covering the fields Costr reads), sent either as it is or with one place broken: a
value of the wrong type or out of range at a field Costr checks, or a required field left out.
A broken body must get a 4xx in its family's error shape, never a 500 or a dropped connection;
a valid one must not be refused. The requests go to a real server over one pooled connection,
so a connection the server drops fails the next request. Models on every provider type are
asked for by name, so the translation to each upstream format is exercised too.
"""
from __future__ import annotations

import copy
import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costr.testing import AUTH, running_gateway
from costr.testing.fake_upstream import FakeUpstream

from conftest import write_config

ANY_CAPABILITY = "capabilities: [tools, vision, json_output, reasoning]"
POOL = f"""\
tiers: [budget, standard, premium]
baseline: local-large
providers:
  local: {{{{type: openai, base_url: "{{url}}/v1"}}}}
  claude: {{{{type: anthropic, base_url: "{{url}}", api_key_env: COSTR_FUZZ_ANTHROPIC_KEY}}}}
  google: {{{{type: gemini, base_url: "{{url}}/v1beta"}}}}
models:
  - {{{{id: local-mini, provider: local, tier: budget, price: {{{{input: 0.1, output: 0.4}}}},
     context_window: 128000, max_output_tokens: 8192, {ANY_CAPABILITY}}}}}
  - {{{{id: claude-small, provider: claude, tier: standard, price: {{{{input: 1.0, output: 5.0}}}},
     context_window: 200000, max_output_tokens: 8192, {ANY_CAPABILITY}}}}}
  - {{{{id: gemini-small, provider: google, tier: standard, price: {{{{input: 0.1, output: 0.4}}}},
     context_window: 1000000, max_output_tokens: 8192, {ANY_CAPABILITY}}}}}
  - {{{{id: local-large, provider: local, tier: premium, price: {{{{input: 3.0, output: 15.0}}}},
     context_window: 200000, max_output_tokens: 32000, {ANY_CAPABILITY}}}}}
"""
# COSTR_FUZZ_EXAMPLES=5000 searches further than CI's deterministic 200 per schema.
EXAMPLES = int(os.environ.get("COSTR_FUZZ_EXAMPLES", "200"))
MODELS = ["auto", "local-mini", "claude-small", "gemini-small", "local-large"]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """One pooled connection to a Costr whose providers of all three types are one fake."""
    with pytest.MonkeyPatch.context() as env, FakeUpstream(record=False) as fake:
        env.setenv("COSTR_FUZZ_ANTHROPIC_KEY", "sk-ant-fake")
        files = write_config(tmp_path_factory.mktemp("fuzz"), POOL.format(url=fake.url))
        with running_gateway(*files) as base_url, httpx.Client(
                base_url=base_url, headers=AUTH, timeout=10,
                limits=httpx.Limits(max_connections=1)) as client:
            yield client


# ---- JSON values, and values of a kind a field does not take ------------------------------------

def kind_of(value) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list",
            dict: "dict"}[type(value)]


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


def not_of(*kinds: str, also=st.nothing()):
    """A JSON value of none of these kinds, or one of `also` (values the kinds hold but the
    field refuses)."""
    return st.one_of(JSON.filter(lambda v: kind_of(v) not in kinds), also)


words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)
names = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
schemas = st.just({"type": "object", "properties": {"path": {"type": "string"}}})
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def optional(**fields) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional=fields)


# ---- OpenAI Chat Completions ---------------------------------------------------------------------

oa_text_part = st.fixed_dictionaries({"type": st.just("text"), "text": words})
oa_image_part = st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
    {"url": st.sampled_from([f"data:image/png;base64,{PNG}", "https://example.com/a.png"])},
    optional={"detail": st.sampled_from(["auto", "low", "high"])})})
oa_content = st.one_of(words, st.lists(st.one_of(oa_text_part, oa_image_part), min_size=1, max_size=3))
oa_call = st.fixed_dictionaries({"id": st.just("call_1"), "type": st.just("function"), "function":
                                 st.fixed_dictionaries({"name": names, "arguments": st.just('{"path": "a"}')})})
oa_messages = st.tuples(
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "developer"]), "content": words}),
             max_size=1),
    st.one_of(st.just([]), st.tuples(
        st.fixed_dictionaries({"role": st.just("user"), "content": oa_content}),
        st.fixed_dictionaries({"role": st.just("assistant"), "content": st.one_of(st.none(), words),
                               "tool_calls": st.lists(oa_call, min_size=1, max_size=1)}),
        st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": st.just("call_1"), "content": words}),
    ).map(list)),
    st.fixed_dictionaries({"role": st.just("user"), "content": oa_content}),
).map(lambda t: [*t[0], *t[1], t[2]])
oa_tool = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": names}, optional={"description": words, "parameters": schemas})})
oa_body = st.tuples(st.fixed_dictionaries({"model": st.sampled_from(MODELS), "messages": oa_messages}), optional(
    stream=st.booleans(), stream_options=st.just({"include_usage": True}),
    max_tokens=st.integers(1, 4096), max_completion_tokens=st.integers(1, 4096),
    temperature=st.floats(0, 2), top_p=st.floats(0, 1), n=st.just(1), user=names,
    stop=st.one_of(words, st.lists(words, max_size=2)), parallel_tool_calls=st.booleans(),
    reasoning_effort=st.sampled_from(["low", "medium", "high"]),
    response_format=st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
                              st.fixed_dictionaries({"type": st.just("json_schema"), "json_schema": st.fixed_dictionaries(
                                  {"name": names, "schema": schemas}, optional={"strict": st.booleans()})})),
    tools=st.lists(oa_tool, min_size=1, max_size=2),
    tool_choice=st.sampled_from(["auto", "none", "required"]),
)).map(lambda t: {**t[0], **t[1]})

# Where a value may be broken: a glob over the body's dotted path, and what may go there
# instead. Top-level names are tried whether or not the body has them.
NON_EMPTY = not_of("str", also=st.just(""))
OPENAI_FIELDS = {
    "model": NON_EMPTY, "messages": not_of("list", also=st.just([])),
    "stream": not_of("bool", "null"), "stream_options": not_of("dict", "null"),
    "max_tokens": not_of("int", "null", also=st.integers(-5, 0)),
    "max_completion_tokens": not_of("int", "null", also=st.integers(-5, 0)),
    "temperature": not_of("int", "float", "null", also=st.floats(2.01, 1e9)),
    "top_p": not_of("int", "float", "null", also=st.floats(1.01, 1e9)),
    "n": not_of("int", "null", also=st.integers(2, 9)), "user": not_of("str", "null"),
    "stop": not_of("str", "null", "list"), "parallel_tool_calls": not_of("bool", "null"),
    "reasoning_effort": not_of("str", "null"), "tools": not_of("list", "null"),
    "tool_choice": not_of("str", "dict", "null", also=st.sampled_from(["maybe", "any"])),
    "response_format": not_of("dict", "null"), "functions": not_of("list", "null"),
    "function_call": not_of("str", "dict", "null", also=st.just("required")),
    "messages.*": not_of("dict"), "messages.*.role": st.one_of(not_of("str"), st.just("wizard")),
    "messages.*.content": not_of("str", "list", "null"),
    "messages.*.content.*": not_of("dict"),
    "messages.*.content.*.type": st.one_of(not_of("str"), st.just("audio")),
    "messages.*.content.*.text": not_of("str"), "messages.*.content.*.image_url": not_of("str", "dict", also=st.just("")),
    "messages.*.content.*.image_url.url": NON_EMPTY,
    "messages.*.tool_calls": not_of("list", "null"), "messages.*.tool_calls.*": not_of("dict"),
    "messages.*.tool_calls.*.id": not_of("str", "null"),
    "messages.*.tool_calls.*.function": not_of("dict"), "messages.*.tool_calls.*.function.name": NON_EMPTY,
    "messages.*.tool_calls.*.function.arguments": not_of("str", "dict", "null"),
    "messages.*.tool_call_id": not_of("str"),
    "tools.*": not_of("dict"), "tools.*.type": st.just("retrieval"), "tools.*.function": not_of("dict"),
    "tools.*.function.name": NON_EMPTY, "tools.*.function.description": not_of("str", "null"),
    "tools.*.function.parameters": not_of("dict", "null"),
    "response_format.type": st.one_of(not_of(), st.just("xml")),
    "response_format.json_schema": not_of("dict", "null"),
    "response_format.json_schema.name": not_of("str", "null"),
    "response_format.json_schema.schema": not_of("dict", "null"),
    "response_format.json_schema.strict": not_of("bool", "null"),
}
OPENAI_REQUIRED = {"model", "messages", "messages.*.role", "messages.*.content.*.type",
                   "messages.*.content.*.text", "messages.*.content.*.image_url",
                   "messages.*.tool_calls.*.function", "messages.*.tool_calls.*.function.name",
                   "messages.*.tool_call_id", "tools.*.function", "tools.*.function.name"}

# ---- Anthropic Messages --------------------------------------------------------------------------

an_text = st.fixed_dictionaries({"type": st.just("text"), "text": words})
an_image = st.fixed_dictionaries({"type": st.just("image"), "source": st.one_of(
    st.fixed_dictionaries({"type": st.just("base64"), "media_type": st.just("image/png"), "data": st.just(PNG)}),
    st.fixed_dictionaries({"type": st.just("url"), "url": st.just("https://example.com/a.png")}))})
an_document = st.fixed_dictionaries({"type": st.just("document"), "source": st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "media_type": st.just("text/plain"), "data": words}),
    st.fixed_dictionaries({"type": st.just("content"),
                           "content": st.one_of(words, st.lists(an_text, min_size=1, max_size=2))}))})
an_user_content = st.one_of(words, st.lists(st.one_of(an_text, an_image, an_document), min_size=1, max_size=3))
an_thinking = st.one_of(
    st.fixed_dictionaries({"type": st.just("thinking"), "thinking": words, "signature": st.just("sig")}),
    st.fixed_dictionaries({"type": st.just("redacted_thinking"), "data": st.just("opaque")}))
an_tool_use = st.fixed_dictionaries({"type": st.just("tool_use"), "id": st.just("toolu_1"), "name": names,
                                     "input": st.just({"path": "a"})})
an_tool_result = st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": st.just("toolu_1")},
                                       optional={"content": st.one_of(words, st.lists(an_text, min_size=1, max_size=2)),
                                                 "is_error": st.booleans()})
an_messages = st.tuples(
    st.one_of(st.just([]), st.tuples(
        st.fixed_dictionaries({"role": st.just("user"), "content": an_user_content}),
        st.tuples(st.lists(an_thinking, max_size=1), an_tool_use).map(
            lambda t: {"role": "assistant", "content": [*t[0], t[1]]}),
        st.lists(an_tool_result, min_size=1, max_size=1).map(lambda c: {"role": "user", "content": c}),
    ).map(list)),
    st.fixed_dictionaries({"role": st.just("user"), "content": an_user_content}),
).map(lambda t: [*t[0], t[1]])
an_tool = st.fixed_dictionaries({"name": names, "input_schema": schemas}, optional={"description": words})
an_body = st.tuples(st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS), "max_tokens": st.integers(1, 4096), "messages": an_messages}), optional(
    system=st.one_of(words, st.lists(an_text, min_size=1, max_size=2)), stream=st.booleans(),
    stop_sequences=st.lists(words, max_size=2), temperature=st.floats(0, 1), top_p=st.floats(0, 1),
    top_k=st.integers(0, 100), metadata=st.fixed_dictionaries({"user_id": names}),
    tools=st.lists(an_tool, min_size=1, max_size=2),
    tool_choice=st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "none"])}),
                          st.fixed_dictionaries({"type": st.just("tool"), "name": names})),
    thinking=st.fixed_dictionaries({"type": st.just("enabled"), "budget_tokens": st.integers(1024, 2048)}),
    output_config=st.fixed_dictionaries({"effort": st.sampled_from(["low", "medium", "high", "max"])}),
)).map(lambda t: {**t[0], **t[1]})

ANTHROPIC_FIELDS = {
    "model": NON_EMPTY, "messages": not_of("list", also=st.just([])),
    "max_tokens": not_of("int", also=st.integers(-5, 0)), "system": not_of("str", "list", "null"),
    "stream": not_of("bool", "null"), "stop_sequences": not_of("list", "null"),
    "temperature": not_of("int", "float", "null", also=st.floats(1.01, 1e9)),
    "top_p": not_of("int", "float", "null", also=st.floats(1.01, 1e9)),
    "top_k": not_of("int", "null", also=st.integers(-9, -1)), "metadata": not_of("dict", "null"),
    "tools": not_of("list", "null"), "tool_choice": not_of("dict", "null"),
    "thinking": not_of("dict", "null"), "output_config": not_of("dict", "null"),
    "output_format": not_of("dict", "null"),
    "system.*": not_of("dict"), "system.*.type": st.one_of(not_of(), st.just("image")),
    "system.*.text": not_of("str"), "metadata.user_id": not_of("str", "null"),
    "messages.*": not_of("dict"), "messages.*.role": st.one_of(not_of("str"), st.just("tool")),
    "messages.*.content": not_of("str", "list"), "messages.*.content.*": not_of("dict"),
    "messages.*.content.*.type": not_of("str"), "messages.*.content.*.text": not_of("str"),
    "messages.*.content.*.source": not_of("dict"), "messages.*.content.*.source.data": not_of("str"),
    "messages.*.content.*.source.url": NON_EMPTY,
    "messages.*.content.*.source.content": not_of("str", "list"),
    "messages.*.content.*.source.content.*.text": not_of("str"),
    "messages.*.content.*.id": NON_EMPTY, "messages.*.content.*.name": NON_EMPTY,
    "messages.*.content.*.input": not_of("dict"), "messages.*.content.*.tool_use_id": NON_EMPTY,
    "messages.*.content.*.content": not_of("str", "list", "null"),
    "messages.*.content.*.content.*.text": not_of("str"),
    "messages.*.content.*.thinking": not_of("str"), "messages.*.content.*.data": NON_EMPTY,
    "tools.*": not_of("dict"), "tools.*.name": NON_EMPTY, "tools.*.input_schema": not_of("dict"),
    "tool_choice.type": st.one_of(not_of(), st.just("required")), "tool_choice.name": NON_EMPTY,
    "thinking.budget_tokens": not_of("int", also=st.integers(-5, 0)),
    "output_config.effort": not_of("str", "null"),
}
ANTHROPIC_REQUIRED = {"model", "messages", "max_tokens", "system.*.text", "messages.*.role",
                      "messages.*.content", "messages.*.content.*.type", "messages.*.content.*.text",
                      "messages.*.content.*.source", "messages.*.content.*.source.data",
                      "messages.*.content.*.source.url", "messages.*.content.*.id",
                      "messages.*.content.*.name", "messages.*.content.*.tool_use_id",
                      "messages.*.content.*.thinking", "messages.*.content.*.data",
                      "tools.*.name", "tools.*.input_schema", "tool_choice.type",
                      "tool_choice.name", "thinking.budget_tokens"}


# ---- breaking one place of a valid body ---------------------------------------------------------

def paths_in(value, prefix=()):
    """Every (path, value) inside a JSON value, the path a tuple of keys and indexes."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, inner in items:
        yield (*prefix, key), inner
        yield from paths_in(inner, (*prefix, key))


def pattern_of(path: tuple) -> str:
    return ".".join("*" if isinstance(step, int) else step for step in path)


def places_to_break(body: dict, fields: dict, required: set) -> list[tuple[tuple, object]]:
    """(path, strategy of a wrong value, or None to leave the field out) for each place of this
    body Costr checks, and each top-level field it reads, present or not."""
    places = [((name,), bad) for name, bad in fields.items() if "." not in name]
    for path, _ in paths_in(body):
        pattern = pattern_of(path)
        if len(path) > 1 and pattern in fields:
            places.append((path, fields[pattern]))
        if pattern in required:
            places.append((path, None))
    return places


def broken(body: dict, path: tuple, value) -> dict:
    """A deep copy of `body` with `value` at `path` (or the field removed, for None)."""
    body = copy.deepcopy(body)
    *parents, last = path
    holder = body
    for step in parents:
        holder = holder[step]
    if value is None:
        holder.pop(last) if isinstance(holder, dict) else holder.__setitem__(last, {})
    else:
        holder[last] = value.value
    return body


class Wrong:
    """A wrong value to put in place, kept apart from None (which means: leave the field out)."""
    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Wrong({self.value!r})"


@st.composite
def requests(draw, valid_bodies, fields, required):
    """(body, the path broken in it or None)."""
    body = draw(valid_bodies)
    if draw(st.integers(0, 3)) == 0:
        return body, None
    path, bad = draw(st.sampled_from(places_to_break(body, fields, required)))
    value = None if bad is None else Wrong(draw(bad))
    return broken(body, path, value), path


# ---- the properties ----------------------------------------------------------------------------

def root(path: tuple) -> str:
    return str(path[0])


@given(requests(oa_body, OPENAI_FIELDS, OPENAI_REQUIRED))
@FUZZ
def test_openai_bodies_are_served_or_refused_in_openai_shape(gateway, case):
    body, path = case
    response = gateway.post("/v1/chat/completions", json=body)
    if path is None:
        assert response.status_code == 200, (body, response.text)
        return
    assert 400 <= response.status_code < 500, (path, body, response.text)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, response.text
    assert error["type"] == "invalid_request_error" and error["message"], response.text
    param = error["param"] or ""
    assert param.split(".")[0].split("[")[0] == root(path), (path, body, response.text)


@given(requests(an_body, ANTHROPIC_FIELDS, ANTHROPIC_REQUIRED))
@FUZZ
def test_anthropic_bodies_are_served_or_refused_in_anthropic_shape(gateway, case):
    body, path = case
    response = gateway.post("/v1/messages", json=body)
    if path is None:
        assert response.status_code == 200, (body, response.text)
        return
    assert 400 <= response.status_code < 500, (path, body, response.text)
    answer = response.json()
    assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error", answer
    assert answer["error"]["message"].split(".")[0].split(":")[0] == root(path), (path, body, answer)
