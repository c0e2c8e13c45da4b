"""The Python frameworks: LangChain's OpenAI and Anthropic chat models and the OpenAI Agents
SDK, pinned in python-requirements.txt and installed into their own virtualenv in the clients'
cache (never the project's)."""
from __future__ import annotations

from pathlib import Path

from client import Client, Run
from installs import HERE, pip_version, python_env

REQUIREMENTS = HERE / "python-requirements.txt"
SCRIPTS = HERE / "py"
CASES = ("plain", "stream", "tool", "auth-error", "routing")
UPSTREAMS = ("openai", "anthropic", "gemini")  # as catalog_js.py


def _versions(*distributions: str):
    def install(cache: Path) -> str:
        python = python_env(cache, REQUIREMENTS)
        return " + ".join(f"{d} {pip_version(python, d)}" for d in distributions)
    return install


def _python(script: str, *args: str):
    def command(run: Run) -> list[str]:
        return [str(run.cache / "venv" / "bin" / "python"), str(SCRIPTS / script), *args]
    return command


CLIENTS = [
    Client("LangChain: langchain-openai", CASES, _versions("langchain-openai", "openai"),
           _python("langchain_client.py", "openai"), upstreams=UPSTREAMS),
    Client("LangChain: langchain-anthropic", CASES, _versions("langchain-anthropic", "anthropic"),
           _python("langchain_client.py", "anthropic"), upstreams=UPSTREAMS),
    Client("OpenAI Agents SDK (Responses)", CASES, _versions("openai-agents", "openai"),
           _python("openai_agents_client.py", "responses"), upstreams=UPSTREAMS),
    Client("OpenAI Agents SDK (chat completions)", CASES, _versions("openai-agents", "openai"),
           _python("openai_agents_client.py", "chat"), upstreams=UPSTREAMS),
]
