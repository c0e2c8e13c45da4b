"""The JavaScript SDK clients: the `openai` and `@anthropic-ai/sdk` packages and the Vercel AI
SDK with each of its OpenAI and Anthropic providers, pinned in npm/package.json and installed
with npm into the clients' cache; their scripts (js/*.mjs) are copied next to node_modules
there so their imports resolve."""
from __future__ import annotations

import shutil
from pathlib import Path

from client import Client, Run
from installs import HERE, npm_packages, npm_version

MANIFEST = HERE / "npm" / "package.json"
SCRIPTS = HERE / "js"
COMMON = ("plain", "stream", "tool", "auth-error", "routing")
# Each client against each wire type Costr translates to (Gemini as Gemini 3, which signs its
# tool calls and wants each signature back).
UPSTREAMS = ("openai", "anthropic", "gemini")


def _installed(cache: Path) -> Path:
    folder = npm_packages(cache, MANIFEST)
    for script in SCRIPTS.glob("*.mjs"):
        shutil.copyfile(script, folder / script.name)
    return folder


def _versions(*packages: str):
    def install(cache: Path) -> str:
        folder = _installed(cache)
        return " + ".join(f"{p} {npm_version(folder, p)}" for p in packages)
    return install


def _node(script: str, *args: str):
    def command(run: Run) -> list[str]:
        return ["node", str(run.cache / "npm" / script), *args]
    return command


CLIENTS = [
    Client("openai (npm)", COMMON, _versions("openai"), _node("openai_sdk.mjs"), upstreams=UPSTREAMS),
    Client("@anthropic-ai/sdk (npm)", (*COMMON[:3], "count-tokens", *COMMON[3:]),
           _versions("@anthropic-ai/sdk"), _node("anthropic_sdk.mjs"), upstreams=UPSTREAMS),
    Client("AI SDK: @ai-sdk/openai-compatible", COMMON,
           _versions("ai", "@ai-sdk/openai-compatible"), _node("ai_sdk.mjs", "compatible"), upstreams=UPSTREAMS),
    Client("AI SDK: @ai-sdk/openai (Responses)", COMMON, _versions("ai", "@ai-sdk/openai"),
           _node("ai_sdk.mjs", "openai"), upstreams=UPSTREAMS),
    Client("AI SDK: @ai-sdk/openai .chat()", COMMON, _versions("ai", "@ai-sdk/openai"),
           _node("ai_sdk.mjs", "openai-chat"), upstreams=UPSTREAMS),
    Client("AI SDK: @ai-sdk/anthropic", COMMON, _versions("ai", "@ai-sdk/anthropic"),
           _node("ai_sdk.mjs", "anthropic"), upstreams=UPSTREAMS),
]
