"""What the Python client scripts share: the run's settings (client.py's environment), the
prompts and tool every client is given, and running one case so that an exception is that
case's FAIL rather than a crashed script.

The scripts run in the clients' own venv (installs.python_env), which has the clients but not
Costr; this module puts tests/clients on sys.path for `client.report`.
"""
from __future__ import annotations

import os
import secrets
import sys
import traceback
from pathlib import Path
from typing import Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from client import report  # noqa: E402

BASE_URL = os.environ["COSTR_BASE_URL"].rstrip("/")
KEY = os.environ["COSTR_API_KEY"]
BAD_KEY = os.environ["COSTR_BAD_KEY"]

# Costr's response cache replays a stored answer as one piece, so the prompts of the stream
# cases are new to each run: a question asked before would not prove streaming.
RUN = secrets.token_hex(4)
PLAIN_PROMPT = "Reply exactly: ok"
STREAM_PROMPT = f"Run {RUN}. Reply exactly: streamed through costr in pieces"
STREAM_ANSWER = "streamed through costr in pieces"
TOOL_PROMPT = "What is the code for test? Use the tool."
STREAM_TOOL_PROMPT = f"Run {RUN}. {TOOL_PROMPT}"


def lookup_code(name: str) -> str:
    """Look up the secret code registered for a name."""
    return f"the code for {name} is 4217"


TOOL_RESULT = lookup_code("test")        # what the fake's call (name="test") gets back
TOOL_ANSWER = "Done: " + TOOL_RESULT     # the fake's final answer after the tool result


def run_case(name: str, check: Callable[[], tuple[bool, str]]) -> None:
    """Report `check()`'s (ok, detail); an exception fails the case with its type and text."""
    try:
        ok, detail = check()
    except Exception as exc:  # the case failed; the script goes on to the next case
        traceback.print_exc(file=sys.stderr)
        ok, detail = False, f"{type(exc).__name__}: {exc}"[:400]
    report(name, ok, detail)


async def run_async_case(name: str, check: Callable[[], Awaitable[tuple[bool, str]]]) -> None:
    """run_case for a coroutine function."""
    try:
        outcome = await check()
    except Exception as exc:  # handed to run_case, which reports it
        error = exc

        def fail():
            raise error
        run_case(name, fail)
    else:
        run_case(name, lambda: outcome)


def routed_from_headers(headers) -> str | None:
    """The routed model from Costr's x-costr-* response headers (any mapping), or None."""
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in dict(headers).items()}
    return lowered.get("x-costr-routed-model")


def expect_text(got: str, want: str, what: str = "answered") -> tuple[bool, str]:
    return got == want, f"{what} {got!r}" + ("" if got == want else f", wanted {want!r}")
