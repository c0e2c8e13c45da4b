"""How each coding agent is pointed at a Costr host: the settings, commands and instructions
`costr connect` prints and the dashboard's Connect page shows, so the two never disagree.

Data only: each agent is one YAML description in `costr/config/agents/` (adding an agent is
adding a file), filled in for a host and a key. Applying the settings to a machine (running the
agent's CLI, merging its config file) is the CLI's business, in costr/cli/connect.py.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

PLACEHOLDER_KEY = "cr-YOUR-API-KEY"
AGENTS_DIR = Path(__file__).parent / "agents"


@dataclass(frozen=True)
class Target:
    """Where and how an agent reaches Costr."""
    root: str    # the gateway without /v1: what clients that append /v1/... themselves want
    key: str
    model: str

    def placeholders(self) -> dict[str, str]:
        return {"root": self.root, "v1_url": f"{self.root}/v1", "key": self.key, "model": self.model,
                "model_title": "Auto" if self.model == "auto" else self.model}


@dataclass(frozen=True)
class Agent:
    """One agent's description (a costr/config/agents/*.yaml file); strings are templates."""
    title: str
    instructions: str
    settings: dict                  # merged into the config file by `costr connect --write`
    config_files: list[str]         # candidates: the first whose $VARIABLES are all set
    file_format: str = "json"       # json | yaml
    executable: str | None = None   # the agent's CLI: --write runs `commands` when it is on PATH
    commands: list[list] | None = None

    def filled_settings(self, target: Target) -> dict:
        return fill(self.settings, target.placeholders())

    def filled_commands(self, target: Target) -> list[list[str]]:
        return [[_argument(arg) for arg in fill(command, target.placeholders())]
                for command in self.commands or []]

    def text(self, target: Target) -> str:
        """The instructions, filled in: what `costr connect AGENT` prints."""
        settings = self.filled_settings(target)
        return self.instructions.format_map({
            **target.placeholders(),
            "exports": "\n".join(f"export {name}={shlex.quote(str(value))}"
                                 for name, value in settings.get("env", {}).items()),
            "settings": shlex.quote(json.dumps(settings, indent=2)),
            "commands": "\n".join(shlex.join(c) for c in self.filled_commands(target)),
        })


def load_agents(directory: Path = AGENTS_DIR) -> dict[str, Agent]:
    """Every agent described in `directory`, by file name without .yaml, sorted."""
    return {path.stem: Agent(**yaml.safe_load(path.read_text()))
            for path in sorted(directory.glob("*.yaml"))}


def fill(template, values: dict[str, str]):
    """`template` (strings, lists and mappings, keys too) with {placeholders} filled in."""
    if isinstance(template, str):
        return template.format_map(values)
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if isinstance(template, dict):
        return {fill(k, values): fill(v, values) for k, v in template.items()}
    return template


def _argument(value) -> str:
    if isinstance(value, (dict, list)):  # a JSON argument, as `config set ... --strict-json` takes
        compact = json.dumps(value)
        return compact if len(compact) <= 80 else json.dumps(value, indent=2)
    return str(value)
