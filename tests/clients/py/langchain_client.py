"""LangChain's chat models against Costr, as their docs show them, changing only base URL, key
and model: `python langchain_client.py openai|anthropic`.

openai: langchain-openai's ChatOpenAI on /v1/chat/completions; anthropic: langchain-anthropic's
ChatAnthropic on /v1/messages. Cases: invoke, stream, bind_tools with the tool's result sent
back, a bad key, routing facts.
"""
from __future__ import annotations

import sys

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

from report import BAD_KEY, BASE, KEY, RUN, check, expect, weather_in


def chat_model(api_key: str):
    if sys.argv[1] == "openai":
        from langchain_openai import ChatOpenAI
        return ChatOpenAI(model="auto", base_url=f"{BASE}/v1", api_key=api_key, max_retries=0,
                          include_response_headers=True)
    from langchain_anthropic import ChatAnthropic
    return ChatAnthropic(model="auto", base_url=BASE, api_key=api_key, max_retries=0)


model = chat_model(KEY)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return weather_in(city)


@check("plain")
def plain():
    answer = model.invoke("Reply exactly: ok")
    expect(answer.content == "ok", f"answered {answer.content!r}")
    expect(answer.usage_metadata and answer.usage_metadata["output_tokens"] > 0,
           f"usage {answer.usage_metadata}")
    return f"invoke: 'ok', usage {answer.usage_metadata['input_tokens']} in / " \
           f"{answer.usage_metadata['output_tokens']} out"


@check("stream")
def stream():
    pieces = [chunk.text for chunk in model.stream(f"[{RUN}] Reply exactly: one two three four")]
    text = "".join(pieces)
    expect(text == "one two three four", f"streamed {text!r}")
    expect(sum(1 for p in pieces if p) > 1, f"one piece only: {pieces}")
    return f"stream: {sum(1 for p in pieces if p)} text chunks joined to the answer"


@check("tool")
def tool_loop():
    with_tools = model.bind_tools([get_weather])
    messages = [HumanMessage("What is the weather in Paris?")]
    first = with_tools.invoke(messages)
    expect(len(first.tool_calls) == 1, f"tool calls {first.tool_calls}")
    call = first.tool_calls[0]
    result = get_weather.invoke(call["args"])
    messages += [first, ToolMessage(result, tool_call_id=call["id"])]
    final = with_tools.invoke(messages)
    expect(final.text == f"Done: {result}", f"final answer {final.text!r}")
    return f"get_weather({call['args']}) -> {final.text!r}"


@check("auth-error")
def auth_error():
    try:
        chat_model(BAD_KEY).invoke("hello")
    except Exception as exc:
        sdk = __import__(sys.argv[1])   # LangChain raises its own subclass of the SDK's error
        expect(isinstance(exc, sdk.AuthenticationError), f"got {type(exc).__name__}: {exc}")
        return f"{type(exc).__name__} (a {sys.argv[1]}.AuthenticationError), status {exc.status_code}"
    raise AssertionError("a bad key was answered")


@check("routing")
def routing():
    answer = model.invoke("Reply exactly: ok")
    meta = answer.response_metadata
    headers = meta.get("headers") or {}
    routed = (meta.get("x_routing") or {}).get("routed_model") or headers.get("x-costr-routed-model")
    expect(routed, f"neither x_routing nor x-costr headers in response_metadata: {sorted(meta)}")
    where = "response_metadata['x_routing']" if meta.get("x_routing") else "the x-costr-* headers"
    return f"routed to {routed}, seen in {where}"
