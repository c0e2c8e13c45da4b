"""One case's result in the matrix's format (tests/clients/client.py), for the Python clients,
which run in their own virtualenv and so cannot import the runner's modules."""
from __future__ import annotations

import json
import os
import secrets
import sys
import traceback

BASE = os.environ["COSTR_BASE_URL"]
KEY = os.environ["COSTR_API_KEY"]
BAD_KEY = os.environ["COSTR_BAD_KEY"]
# A tag of this run before the prompts of streamed cases, so no cached answer (replayed as one
# piece) stands in for a stream.
RUN = secrets.token_hex(4)
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
                  "required": ["city"]}


def weather_in(city: str) -> str:
    """The tool's result; the fake upstream answers a tool result with "Done: <result>"."""
    return f"sunny in {city}"


def report(case: str, ok: bool, detail: str = "") -> None:
    print(json.dumps({"case": case, "ok": bool(ok), "detail": detail}), flush=True)


def check(case: str):
    """Decorator: run a case now; its returned string is the PASS detail, what it raises the
    FAIL's."""
    def run(body):
        try:
            report(case, True, body() or "")
        except Exception as exc:  # the case's failure, reported, never the script's
            traceback.print_exc(file=sys.stderr)
            report(case, False, f"{type(exc).__name__}: {exc}")
        return body
    return run


def expect(condition, message: str) -> None:
    if not condition:
        raise AssertionError(message)
