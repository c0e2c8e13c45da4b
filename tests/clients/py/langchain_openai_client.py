"""LangChain's ChatOpenAI against Costr: plain, stream, tool, auth-error, routing.

Used as the LangChain docs show it, changing only base_url, api_key and model="auto".
LangChain keeps no unknown body fields (x_routing is dropped from the AIMessage), so the
routing case reads Costr's x-costr-* headers, which `include_response_headers=True` puts in
response_metadata["headers"].
"""
from __future__ import annotations

import openai
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from cases import (BAD_KEY, BASE_URL, KEY, PLAIN_PROMPT, STREAM_ANSWER, STREAM_PROMPT,
                   TOOL_ANSWER, TOOL_PROMPT, expect_text, lookup_code, routed_from_headers,
                   run_case)


def chat(key: str = KEY, **options) -> ChatOpenAI:
    return ChatOpenAI(model="auto", base_url=BASE_URL + "/v1", api_key=key, **options)


def plain():
    return expect_text(chat().invoke(PLAIN_PROMPT).content, "ok")


def stream():
    chunks = [chunk.content for chunk in chat().stream(STREAM_PROMPT)]
    texts = [c for c in chunks if c]
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
    ok, detail = expect_text(final.content, TOOL_ANSWER)
    return ok, f"called {call['name']}({call['args']}); {detail}"


def auth_error():
    try:
        chat(BAD_KEY).invoke(PLAIN_PROMPT)
    except openai.AuthenticationError as error:
        return error.status_code == 401, f"openai.AuthenticationError {error.status_code}"
    return False, "no error with a bad key"


def routing():
    message = chat(include_response_headers=True).invoke(PLAIN_PROMPT)
    routed = routed_from_headers(message.response_metadata.get("headers"))
    kept = "x_routing" in message.response_metadata
    return bool(routed), (f"x-costr-routed-model={routed} (response_metadata['headers']); "
                          f"x_routing in the body {'kept' if kept else 'dropped by LangChain'}")


if __name__ == "__main__":
    for name, check in [("plain", plain), ("stream", stream), ("tool", tool_round_trip),
                        ("auth-error", auth_error), ("routing", routing)]:
        run_case(name, check)
