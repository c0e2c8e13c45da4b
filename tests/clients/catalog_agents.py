"""The agents: OpenClaw (on Node 24 from the npm registry), Claude Code in interactive mode
(driven through tmux) and headless (`claude -p`), and Hermes Agent (`hermes -z`), pinned in
agents/*-package.json and agents/hermes-requirements.txt and installed into the clients' cache.
Their scripts (agents/*.py) run in the project's Python: they start their own fake upstream,
scripted to answer the agent's own file tool, and their own `costr serve`."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from client import Client, Run, Unavailable
from installs import HERE, node24, npm_packages, npm_version, pip_version, python_env

AGENTS = HERE / "agents"
UPSTREAMS = ("openai", "anthropic", "gemini")


def _pinned(manifest: Path, package: str) -> str:
    return json.loads(manifest.read_text())["dependencies"][package]


def _openclaw(cache: Path) -> str:
    node_bin = node24(cache)
    manifest = AGENTS / "openclaw-package.json"
    folder = npm_packages(cache, manifest, "openclaw", node_bin)
    version, pinned = npm_version(folder, "openclaw"), _pinned(manifest, "openclaw")
    if version != pinned or not (folder / "node_modules" / ".bin" / "openclaw").exists():
        # what npm does under Node < 24: it resolves `openclaw` to an empty placeholder, 0.0.1
        raise Unavailable(f"npm installed openclaw {version}, not {pinned}, with no `openclaw` "
                          f"command (the empty placeholder npm resolves under a Node older than "
                          f"24; Node 24 was put first on PATH from {node_bin})")
    node = npm_version(cache / "node24", "node")
    return f"openclaw {version} on Node {node}"


def _claude_code(cache: Path) -> str:
    """Claude Code's npm package carries a native binary (no Node at run time); Node runs its
    install only."""
    if shutil.which("tmux") is None:
        raise Unavailable("tmux is not installed (it drives Claude Code's interactive mode)")
    folder = npm_packages(cache, AGENTS / "claude-code-package.json", "claude-code")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"@anthropic-ai/claude-code {npm_version(folder, '@anthropic-ai/claude-code')} "
            f"(native binary, installed by npm on Node {node.lstrip('v') or '?'})")


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
