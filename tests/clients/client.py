"""One client in the matrix: how it installs, how it is run, which cases it reports.

A client's command runs against a live `costr serve` in front of the scripted fake upstream
(costr/testing/fake_upstream.py: it calls the first tool offered, answers a tool result with
"Done: <result>", and "Reply exactly: X" with X). The command gets, in its environment:

    COSTR_BASE_URL   http://127.0.0.1:PORT (no /v1: OpenAI-style clients add it)
    COSTR_API_KEY    a key with credits
    COSTR_BAD_KEY    a well-formed key Costr does not know (for the auth-error case)
    COSTR_CLIENTS_CACHE   the folder clients are installed in
    COSTR_UPSTREAM   the fake upstream's wire type behind this Costr (openai, anthropic, gemini)

and prints one JSON line per case on stdout:

    {"case": "plain", "ok": true, "detail": "answered 'ok'; x_routing.routed_model=fake-budget"}

Everything else it prints is kept in the run's log. A case the command never reports, or any
case of a command that exits non-zero or times out, is a FAIL.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


class Unavailable(Exception):
    """The client cannot be installed or run on this machine; the reason is printed and its
    rows are SKIP (never PASS)."""


@dataclass
class Run:
    """What a client's command is given."""
    base_url: str
    key: str
    bad_key: str
    cache: Path        # the clients' cache folder (installs live here, outside the repository)
    work: Path         # an empty temporary folder for this client's run
    upstream: str      # the fake upstream's wire type behind this Costr
    python: str        # the Python Costr runs in (the project's venv)

    def env(self) -> dict[str, str]:
        return {"COSTR_BASE_URL": self.base_url, "COSTR_API_KEY": self.key,
                "COSTR_BAD_KEY": self.bad_key, "COSTR_CLIENTS_CACHE": str(self.cache),
                "COSTR_UPSTREAM": self.upstream}


@dataclass
class Client:
    name: str                               # the row's label, e.g. "openai (npm)"
    cases: tuple[str, ...]                  # the case names its command reports
    install: Callable[[Path], str]          # cache -> the exact version installed ("openai 6.9.1")
    command: Callable[[Run], list[str]]     # argv to run
    group: str = "quick"                    # "quick": installs in minutes, run by CI; "slow"
    upstreams: tuple[str, ...] = ("openai",)  # run once against each of these upstream types
    timeout: float = 300.0
    extra_env: Callable[[Run], dict[str, str]] = field(default=lambda run: {})


def report(case: str, ok: bool, detail: str = "") -> None:
    """For a Python client script: print one case's result in the runner's format."""
    print(json.dumps({"case": case, "ok": bool(ok), "detail": detail}), flush=True)
    sys.stdout.flush()
