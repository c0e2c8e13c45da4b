"""curl, with the seed's two curl examples as written: installs nothing, skips where curl (or
python3, which the script reads JSON with) is missing."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from client import Client, Run, Unavailable
from installs import HERE

UPSTREAMS = ("openai", "anthropic", "gemini")  # as catalog_js.py


def _curl(cache: Path) -> str:
    if not (shutil.which("curl") and shutil.which("python3")):
        raise Unavailable("curl and python3 are needed on PATH")
    first = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()
    return f"curl {first[1]}"


def _script(run: Run) -> list[str]:
    return ["bash", str(HERE / "shell" / "curl_seed.sh")]


CLIENTS = [Client("curl", ("plain", "stream", "tool", "auth-error", "routing"), _curl, _script,
                  upstreams=UPSTREAMS)]
