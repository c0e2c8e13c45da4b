"""The agents: OpenClaw (on Node 24 from the npm registry) and Claude Code in interactive mode
(driven through tmux), pinned in agents/*-package.json and installed with npm into the clients'
cache. Their scripts (agents/*.py) run in the project's Python: they start their own fake
upstream, scripted to answer the agent's own file tool, and their own `costr serve`."""
from __future__ import annotations

from pathlib import Path

from client import Client, Run
from installs import HERE, node24, npm_packages, npm_version

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


def _script(name: str):
    def command(run: Run) -> list[str]:
        return [run.python, str(AGENTS / name)]
    return command


CLIENTS = [
    Client("OpenClaw", ("config-cli", "turn-cli", "config-connect", "turn-connect", "routing"),
           _openclaw, _script("openclaw_client.py"), group="slow", upstreams=UPSTREAMS,
           timeout=900),
]
