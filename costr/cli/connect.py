"""`costr connect AGENT`: point a coding agent at this Costr host.

Prints the commands and settings the hosted service's integration guide gives, with this host's
base URL; `--write` applies them where the agent keeps its configuration: through the agent's
own CLI when it is on PATH, otherwise by merging into its config file. What each agent needs is
data shared with the dashboard's Connect page: costr/config/agent_setups.py and one YAML
description per agent in costr/config/agents/.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from costr.config.agent_setups import PLACEHOLDER_KEY, Agent, Target, load_agents

_VARIABLE = re.compile(r"\$(\w+)")


class ConnectError(Exception):
    pass


def config_file(agent: Agent) -> Path:
    """The first of the agent's config file candidates whose $VARIABLES are all set here."""
    for candidate in agent.config_files:
        names = _VARIABLE.findall(candidate)
        if all(os.environ.get(name, "").strip() for name in names):
            path = _VARIABLE.sub(lambda m: os.environ[m.group(1)].strip(), candidate)
            return Path(path).expanduser().absolute()
    raise ConnectError(f"no config file location for {agent.title}: set one of "
                       f"{', '.join(agent.config_files)}")


# -- applying ---------------------------------------------------------------------------------

def write(agent: Agent, target: Target) -> list[str]:
    """Apply the agent's settings; returns what was done, one line each."""
    executable = agent.executable and agent.commands and shutil.which(agent.executable)
    if executable:
        done = []
        for command in agent.filled_commands(target):
            result = subprocess.run([executable, *command[1:]], capture_output=True, text=True)
            if result.returncode != 0:
                raise ConnectError(f"`{shlex.join(command[:4])} ...` failed (exit {result.returncode}): "
                                   f"{result.stderr.strip() or result.stdout.strip()}")
            done.append(f"ran {shlex.join(command[:4])} ...")
        return done
    path = config_file(agent)
    merge_into_file(path, agent.filled_settings(target), agent.file_format)
    return [f"updated {path}"]


def merge_into_file(path: Path, settings: dict, file_format: str) -> None:
    """Deep-merge `settings` into a JSON or YAML mapping file, keeping every other key."""
    load, dump = _CODECS[file_format]
    current: dict = {}
    if path.exists():
        text = path.read_text()
        try:
            current = load(text) if text.strip() else {}
        except ValueError as exc:
            raise ConnectError(f"{path} could not be read as {file_format.upper()} ({exc}); "
                               "edit it by hand with the settings printed above") from exc
        if not isinstance(current, dict):
            raise ConnectError(f"{path} does not hold a {file_format.upper()} mapping")
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".costr-tmp")
    staged.write_text(dump(deep_merge(current, settings)))
    os.chmod(staged, path.stat().st_mode & 0o777 if path.exists() else 0o600)  # it holds a key
    os.replace(staged, path)


def deep_merge(base: dict, patch: dict) -> dict:
    """Mappings merge key by key; anything else in `patch` replaces what `base` had."""
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_yaml(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from exc


_CODECS = {
    "json": (json.loads, lambda data: json.dumps(data, indent=2) + "\n"),
    "yaml": (_load_yaml, lambda data: yaml.safe_dump(data, sort_keys=False, allow_unicode=True)),
}


# -- command line -------------------------------------------------------------------------------

def gateway_root(base_url: str | None) -> str:
    """The gateway's address without a trailing /v1, from --base-url or COSTR_HOST/COSTR_PORT."""
    if not base_url:
        host = os.environ.get("COSTR_HOST", "").strip() or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base_url = f"http://{host}:{os.environ.get('COSTR_PORT', '').strip() or '8787'}"
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


def main(argv: list[str] | None = None) -> int:
    agents = load_agents()
    parser = argparse.ArgumentParser(prog="costr connect",
                                     description="Print (or --write) the settings that point an agent at Costr.")
    parser.add_argument("agent", choices=sorted(agents))
    parser.add_argument("--base-url", help="this Costr host, with or without /v1 "
                        "(default http://COSTR_HOST:COSTR_PORT, i.e. http://127.0.0.1:8787)")
    parser.add_argument("--key", default=os.environ.get("COSTR_API_KEY") or PLACEHOLDER_KEY,
                        help=f"the Costr API key (default env COSTR_API_KEY, else {PLACEHOLDER_KEY})")
    parser.add_argument("--model", default="auto", help="the model the agent asks for (default auto)")
    parser.add_argument("--write", action="store_true",
                        help="apply the settings: through the agent's CLI when on PATH, else its config file")
    args = parser.parse_args(argv)
    agent = agents[args.agent]
    target = Target(gateway_root(args.base_url), args.key, args.model)
    print(agent.text(target), end="")
    if not args.write:
        return 0
    if target.key == PLACEHOLDER_KEY:
        print(f"note: writing the placeholder key {PLACEHOLDER_KEY}; pass --key or set COSTR_API_KEY",
              file=sys.stderr)
    try:
        done = write(agent, target)
    except (ConnectError, OSError) as exc:
        print(f"costr connect: {exc}", file=sys.stderr)
        return 1
    print()
    for line in done:
        print(f"# {agent.title}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
