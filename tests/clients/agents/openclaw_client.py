"""OpenClaw against Costr, configured two ways, one tool-running turn each:
`python openclaw_client.py` (the project's Python; the upstream wire type from COSTR_UPSTREAM).

config-cli     the seed's "Configure from CLI" commands exactly, only base URL and key
               replaced, in a fresh HOME; `openclaw models status` shows costrouter/auto
turn-cli       one `openclaw agent --local -m ...` turn: the agent reads notes.txt with its own
               `read` tool and its answer reports it (the upstream received the tool's result
               holding the file's secret, and the final text is printed)
config-connect the same configured by `costr connect openclaw --write`, in another fresh HOME
turn-connect   one turn so configured
routing        Costr's ledger (GET /v1/requests) has each of those requests routed, with tier

It starts its own fake upstream (answering OpenClaw's `read` tool, tests/agents/run_agents.py)
and `costr serve`, and needs OpenClaw installed with Node 24 in the clients' cache
(catalog_agents.py).
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1] / "agents")]

from ledger import Cases  # noqa: E402
from run_agents import (AGENTS, FINAL, KEY, ToolThenAnswer, agent_env, costr_serve,  # noqa: E402
                        judge, run_agent, tail)

from costr.testing.fake_upstream import FakeUpstream  # noqa: E402

CACHE = Path(os.environ["COSTR_CLIENTS_CACHE"])
UPSTREAM = os.environ.get("COSTR_UPSTREAM", "openai")
NODE24 = CACHE / "node24" / "node_modules" / "node" / "bin"
OPENCLAW = CACHE / "openclaw" / "node_modules" / ".bin" / "openclaw"
SPEC = AGENTS["openclaw"]
TURN_TIMEOUT = 300


def seed_commands(base_url: str, key: str) -> list[list[str]]:
    """The seed's "Configure from CLI" block, with only the base URL and key replaced."""
    provider = """{
"baseUrl": "%s/v1",
"apiKey": "%s",
"api": "openai-completions",
"models": [
{
"id": "auto",
"name": "CostRouter Auto",
"reasoning": true,
"input": ["text"],
"cost": { "input": 3, "output": 3, "cacheRead": 0, "cacheWrite": 0 },
"contextWindow": 256000,
"maxTokens": 8192
}
]
}""" % (base_url, key)
    return [
        ["openclaw", "config", "set", "models.providers.costrouter", provider, "--strict-json", "--merge"],
        ["openclaw", "config", "set", "agents.defaults.model", '{"primary":"costrouter/auto"}',
         "--strict-json", "--merge"],
        ["openclaw", "config", "set", "agents.defaults.models", '{"costrouter/auto":{}}',
         "--strict-json", "--merge"],
        ["openclaw", "models", "set", "costrouter/auto"],
    ]


def environment(home: Path) -> dict:
    env = agent_env(SPEC, str(OPENCLAW), home)
    env["PATH"] = os.pathsep.join([str(NODE24), str(OPENCLAW.parent), env["PATH"]])
    return env


def configure(how: str, base_url: str, home: Path, work: Path) -> str:
    """Configure OpenClaw in `home`; returns what `openclaw models status` shows, or raises."""
    env = environment(home)
    if how == "cli":
        commands = seed_commands(base_url, KEY)
    else:
        commands = [[sys.executable, "-m", "costr", "connect", "openclaw", "--base-url", base_url,
                     "--key", KEY, "--write"]]
    for argv in commands:
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(argv[:4])} ...` exited {done.returncode}: "
                               f"{tail(done.stderr or done.stdout)}")
    status = subprocess.run(["openclaw", "models", "status"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=180)
    default = [" ".join(line.split()) for line in status.stdout.splitlines()
               if line.startswith("Default") and "costrouter/auto" in line]
    if not default:
        raise RuntimeError(f"`openclaw models status` does not show costrouter/auto as the "
                           f"default: {tail(status.stdout + status.stderr)}")
    return f"`openclaw models status` shows {default[0]!r}"


def turn(fake: FakeUpstream, home: Path, work: Path) -> str:
    code = secrets.token_hex(4)
    secret = f"The launch code is PELICAN-{code}."
    notes = work / "notes.txt"
    notes.write_text(secret + "\n")
    fake.script = script = ToolThenAnswer(SPEC.read_tool, SPEC.read_arguments(notes))
    before = len(fake.requests)
    result = run_agent(SPEC.command("openclaw"), work, environment(home), TURN_TIMEOUT)
    received = list(fake.requests)[before:]
    verdict = judge(SPEC, result, received, UPSTREAM, secret, script.called)
    if verdict:
        raise RuntimeError(verdict)
    return f"ran its read tool on notes.txt; the secret reached the upstream; printed {FINAL[:30]!r}..."


def main() -> int:
    cases = Cases(f"costr-openclaw-{UPSTREAM}-")
    if not OPENCLAW.exists():
        for case in ("config-cli", "turn-cli", "config-connect", "turn-connect", "routing"):
            cases.report(case, False, f"OpenClaw is not installed at {OPENCLAW}")
        return 1
    tmp = cases.folder
    with FakeUpstream() as fake, costr_serve(tmp, UPSTREAM, fake.url) as base_url:
        for how in ("cli", "connect"):
            home, work = tmp / f"home-{how}", tmp / f"work-{how}"
            home.mkdir()
            work.mkdir()
            try:
                cases.report(f"config-{how}", True, configure(how, base_url, home, work))
            except Exception as exc:  # the case's failure, reported
                cases.report(f"config-{how}", False, str(exc))
                cases.report(f"turn-{how}", False, "not run: OpenClaw is not configured")
                continue
            try:
                cases.report(f"turn-{how}", True, turn(fake, home, work))
            except Exception as exc:
                cases.report(f"turn-{how}", False, str(exc))
        cases.routing(base_url, KEY)
    return cases.finish()


if __name__ == "__main__":
    sys.exit(main())
