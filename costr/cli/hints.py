"""What the CLI tells a newcomer, with every command named so that it runs as printed: `costr`
when that name on PATH is the program they ran, else the path they ran it by
(`.venv/bin/costr`), since a hint naming a command the shell cannot find helps nobody."""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from costr.config.shipped import is_shipped

FAKE_PORT = 9100
FAKE_CONFIG = "local.yaml"


def runnable(name: str, launched: str, search_path: str | None = None) -> str:
    """`name` when the shell finds the program `launched` by that name, else its path: relative
    to the current folder when inside it (as a user types it), absolute otherwise."""
    found = shutil.which(name, path=search_path)
    if found and os.path.abspath(found) == os.path.abspath(launched):
        return name
    where = os.path.abspath(launched)
    inside = os.path.relpath(where) if where.startswith(os.getcwd() + os.sep) else where
    return shlex.quote(inside if os.sep in inside else f".{os.sep}{inside}")


def costr_command() -> str:
    """How to run this costr again: `costr`, `.venv/bin/costr`, or `PYTHON -m costr`."""
    launched = sys.argv[0]
    if Path(launched).name == "__main__.py":   # started as `python -m costr`
        beside = Path(sys.executable).parent / "costr"
        if not beside.is_file():
            return f"{python_command()} -m costr"
        launched = str(beside)   # the console script of this same installation
    return runnable("costr", launched)


def python_command() -> str:
    """This interpreter, by a name on PATH when one finds exactly it (not another Python that
    may lack Costr), else by its path."""
    for name in ("python", "python3"):
        if runnable(name, sys.executable) == name:
            return name
    return runnable("python", sys.executable)


def first_key_hint(where: str) -> str:
    return ("costr: no API keys exist yet, so every request will be refused (401). Create the "
            f"first one, an admin key, with:\n  {costr_command()} keys create --name admin "
            f"--admin{where}")


def shipped_notice(providers: str, policies: str) -> str | None:
    """One line saying which shipped files are in use, or None when the operator's own are."""
    shipped = [path for path in (providers, policies) if is_shipped(path)]
    if not shipped:
        return None
    return (f"costr: using the shipped configuration ({', '.join(shipped)}); "
            f"`{costr_command()} init` writes an editable copy here")


def no_provider_hint(missing: dict[str, str], where: str) -> str:
    """Said at start when no provider has its credentials: which variables to set, and the
    no-key try-out against the scripted local upstream."""
    variables = ", ".join(sorted(set(missing.values())))
    return (f"costr: no provider can be used: none has its API key set ({variables}), so every "
            "request will be answered 503. Set one of these and start again, or try Costr with "
            "no key at all: stop this server (Ctrl-C), start a scripted local upstream that "
            "writes a providers file pointing at it, and serve from that file:\n"
            f"  {python_command()} -m costr.testing.fake_upstream --port {FAKE_PORT} "
            f"--write-config {FAKE_CONFIG} &\n"
            f"  {costr_command()} serve --providers {FAKE_CONFIG}{where}")
