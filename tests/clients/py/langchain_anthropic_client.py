"""LangChain's ChatAnthropic against Costr: plain, stream, tool, auth-error, routing.

Used as the LangChain docs show it, changing only base_url, api_key and model="auto".
ChatAnthropic copies every field of the Messages response it does not use into the
AIMessage's response_metadata, so the routing case reads Costr's x_routing from there.
"""
from __future__ import annotations

import anthropic
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

from cases import (BAD_KEY, BASE_URL, KEY, PLAIN_PROMPT, STREAM_ANSWER, STREAM_PROMPT,
                   TOOL_ANSWER, TOOL_PROMPT, expect_text, lookup_code, run_case)


def chat(key: str = KEY) -> ChatAnthropic:
    return ChatAnthropic(model="auto", base_url=BASE_URL, api_key=key)


def plain():
    return expect_text(chat().invoke(PLAIN_PROMPT).text, "ok")


def stream():
    texts = [chunk.text for chunk in chat().stream(STREAM_PROMPT) if chunk.text]
    ok, detail = expect_text("".join(texts), STREAM_ANSWER, "joined")
    return ok and len(texts) > 1, f"{detail} from {len(texts)} text chunks"


def tool_round_trip():
    lookup = tool(lookup_code)
    model = chat().bind_tools([lookup])
    messages = [HumanMessage(TOOL_PROMPT)]
    first = model.invoke(messages)
    if not first.tool_calls:
        return False, f"no tool_calls on the AIMessage: {first!r}"[:300]
    call = first.tool_calls[0]
    messages += [first, ToolMessage(lookup.invoke(call["args"]), tool_call_id=call["id"])]
    final = model.invoke(messages)
    ok, detail = expect_text(final.text, TOOL_ANSWER)
    return ok, f"called {call['name']}({call['args']}); {detail}"


def auth_error():
    try:
        chat(BAD_KEY).invoke(PLAIN_PROMPT)
    except anthropic.AuthenticationError as error:
        return error.status_code == 401, f"anthropic.AuthenticationError {error.status_code}"
    return False, "no error with a bad key"


def routing():
    x_routing = chat().invoke(PLAIN_PROMPT).response_metadata.get("x_routing") or {}
    routed = x_routing.get("routed_model")
    return bool(routed), f"response_metadata['x_routing'].routed_model={routed}"


if __name__ == "__main__":
    for name, check in [("plain", plain), ("stream", stream), ("tool", tool_round_trip),
                        ("auth-error", auth_error), ("routing", routing)]:
        run_case(name, check)
