"""The OpenAI Agents SDK (`openai-agents`) against Costr with a function tool, through
`python openai_agents_client.py responses|chat`:

responses: the SDK's default model (OpenAIResponsesModel: POST /v1/responses), with Costr's
client set as the default one; chat: OpenAIChatCompletionsModel (POST /v1/chat/completions).
Cases: an agent's answer, a streamed run, a run that calls the tool and answers from its
result, a bad key, routing facts (the x-costr-* headers, seen through an httpx response hook:
the SDK keeps no raw body).
"""
from __future__ import annotations

import asyncio
import sys

import httpx
import openai
from agents import (Agent, OpenAIChatCompletionsModel, Runner, function_tool,
                    set_default_openai_client, set_tracing_disabled)

from report import BAD_KEY, BASE, KEY, RUN, check, expect, weather_in

set_tracing_disabled(True)   # traces would go to OpenAI: there is no internet here
MODE = sys.argv[1]
routed: list[str] = []


async def note_routing(response: httpx.Response) -> None:
    if "x-costr-routed-model" in response.headers:
        routed.append(response.headers["x-costr-routed-model"])


def client(key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{BASE}/v1", api_key=key, max_retries=0,
                              http_client=httpx.AsyncClient(event_hooks={"response": [note_routing]}))


def model_for(key: str):
    if MODE == "chat":
        return OpenAIChatCompletionsModel(model="auto", openai_client=client(key))
    set_default_openai_client(client(key), use_for_tracing=False)
    return "auto"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return weather_in(city)


def agent(key: str = KEY, tools=()) -> Agent:
    return Agent(name="Assistant", instructions="You are a helpful assistant.",
                 model=model_for(key), tools=list(tools))


@check("plain")
def plain():
    result = Runner.run_sync(agent(), "Reply exactly: ok")
    expect(result.final_output == "ok", f"final output {result.final_output!r}")
    usage = result.context_wrapper.usage
    expect(usage.output_tokens > 0, f"usage {usage}")
    return f"Runner.run_sync: 'ok', usage {usage.input_tokens} in / {usage.output_tokens} out"


@check("stream")
def stream():
    async def run():
        result = Runner.run_streamed(agent(), f"[{RUN}] Reply exactly: one two three four")
        deltas = [event.data.delta async for event in result.stream_events()
                  if event.type == "raw_response_event"
                  and getattr(event.data, "type", "") == "response.output_text.delta"]
        return result, deltas
    result, deltas = asyncio.run(run())
    expect(result.final_output == "one two three four", f"final output {result.final_output!r}")
    expect(len(deltas) > 1 and "".join(deltas) == "one two three four", f"deltas {deltas}")
    return f"Runner.run_streamed: {len(deltas)} text deltas joined to the answer"


@check("tool")
def tool_loop():
    result = Runner.run_sync(agent(tools=[get_weather]), "What is the weather in Paris?")
    calls = [item for item in result.new_items if item.type == "tool_call_item"]
    outputs = [item.output for item in result.new_items if item.type == "tool_call_output_item"]
    expect(len(calls) == 1 and outputs == [weather_in("test")], f"items {result.new_items}")
    expect(result.final_output == f"Done: {outputs[0]}", f"final output {result.final_output!r}")
    return f"get_weather ran -> {outputs[0]!r}; final output {result.final_output!r}"


@check("auth-error")
def auth_error():
    try:
        Runner.run_sync(agent(BAD_KEY), "hello")
    except openai.AuthenticationError as exc:
        return f"openai.AuthenticationError, status {exc.status_code}"
    raise AssertionError("a bad key was answered")


@check("routing")
def routing():
    routed.clear()
    Runner.run_sync(agent(), "Reply exactly: ok")
    expect(routed, "no x-costr-routed-model header on the answer")
    return f"x-costr-routed-model {routed[-1]}"
