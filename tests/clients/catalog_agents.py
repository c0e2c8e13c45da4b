"""The agents: OpenClaw (on Node 24 from the npm registry), Claude Code in interactive mode
(driven through tmux) and headless (`claude -p`), and Hermes Agent (`hermes -z`), pinned in
agents/*-package.json and agents/hermes-requirements.txt and installed into the clients' cache.
Their scripts (agents/*.py) run in the project's Python: they start their own fake upstream,
scripted to answer the agent's own file tool, and their own `costr serve`."""
from __future__ import annotations

from pathlib import Path

from client import Client, Run
from installs import HERE, node24, npm_packages, npm_version, pip_version, python_env

AGENTS = HERE / "agents"
UPSTREAMS = ("openai", "anthropic", "gemini")


def _openclaw(cache: Path) -> str:
    node_bin = node24(cache)
    folder = npm_packages(cache, AGENTS / "openclaw-package.json", "openclaw", node_bin)
    node = npm_version(cache / "node24", "node")
    return f"openclaw {npm_version(folder, 'openclaw')} on Node {node}"


def _claude_code(cache: Path) -> str:
    folder = npm_packages(cache, AGENTS / "claude-code-package.json", "claude-code")
    return f"@anthropic-ai/claude-code {npm_version(folder, '@anthropic-ai/claude-code')}"


def _hermes(cache: Path) -> str:
    python = python_env(cache, AGENTS / "hermes-requirements.txt", "hermes")
    return f"hermes-agent {pip_version(python, 'hermes-agent')}"


def _script(name: str, *args):
    def command(run: Run) -> list[str]:
        return [run.python, str(AGENTS / name),
                *(arg(run) if callable(arg) else arg for arg in args)]
    return command


def _claude(run: Run) -> str:
    return str(run.cache / "claude-code" / "node_modules" / ".bin" / "claude")


def _hermes_bin(run: Run) -> str:
    return str(run.cache / "hermes" / "bin" / "hermes")


CLIENTS = [
    Client("OpenClaw", ("config-cli", "turn-cli", "config-connect", "turn-connect", "routing"),
           _openclaw, _script("openclaw_client.py"), group="slow", upstreams=UPSTREAMS,
           timeout=900),
    Client("Claude Code (interactive, tmux)", ("turn", "model-menu", "routing"), _claude_code,
           _script("claude_code_interactive.py"), group="slow", upstreams=UPSTREAMS, timeout=400),
    Client("Claude Code (claude -p)", ("turn",), _claude_code,
           _script("headless_agent.py", "claude-code", _claude), group="slow",
           upstreams=UPSTREAMS, timeout=400),
    Client("Hermes Agent (hermes -z)", ("turn",), _hermes,
           _script("headless_agent.py", "hermes", _hermes_bin), group="slow",
           upstreams=UPSTREAMS, timeout=400),
]
