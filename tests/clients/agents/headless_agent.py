"""A coding agent run headless against Costr, as tests/agents/run_agents.py runs it:
`python headless_agent.py claude-code|hermes EXECUTABLE` (the upstream wire type from
COSTR_UPSTREAM). Configured by `costr connect AGENT --write`, asked to read notes.txt, the agent
must run its own file tool and print the final answer, and the upstream must receive the
tool's result holding the file's secret (run_agents.py's checks). One case: turn."""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1] / "agents")]

from client import report  # noqa: E402
from run_agents import AGENTS, run_one  # noqa: E402


def main() -> int:
    name, executable = sys.argv[1], sys.argv[2]
    outcome = run_one(AGENTS[name], executable, os.environ.get("COSTR_UPSTREAM", "openai"),
                      timeout=300, keep=False)
    report("turn", outcome.passed, outcome.reason if outcome.passed else
           f"{outcome.reason} | {' | '.join(outcome.evidence)[:1500]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
