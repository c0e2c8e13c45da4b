"""Run every client in the matrix against a live Costr and print what passed.

    .venv/bin/python tests/clients/matrix.py [--group quick|all] [--only NAME[,NAME...]]
                                             [--upstream TYPE] [--cache DIR] [--keep]
                                             [--json FILE] [--list]

Each client (catalog_shell.py, catalog_js.py, catalog_python.py, catalog_agents.py) is installed into the
clients' cache folder outside the repository (installs.py: ~/.cache/costr-clients, or
$COSTR_CLIENTS_CACHE, or --cache), pinned, once; then, for each upstream wire type it is run
against, a `costr serve` in front of the scripted fake upstream of that type is started (one
per type, shared by the clients) and the client's script is run with the base URL and keys in
its environment (client.py). It prints a table of client, version, upstream, case and result,
and exits 1 when any case failed. A client that cannot be installed here is SKIP, with the
reason; nothing is ever counted as passed without running.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "agents")]

import catalog_agents  # noqa: E402
import catalog_js  # noqa: E402
import catalog_python  # noqa: E402
import catalog_shell  # noqa: E402
from client import Client, Run, Unavailable  # noqa: E402
from installs import cache_dir  # noqa: E402

CLIENTS: list[Client] = [*catalog_shell.CLIENTS, *catalog_js.CLIENTS, *catalog_python.CLIENTS,
                         *catalog_agents.CLIENTS]
GROUPS = ("quick", "all")
# A client's own configuration must come from its script, never from the caller's shell.
FOREIGN_ENV = ("OPENAI_", "ANTHROPIC_", "CLAUDE_", "OPENCLAW_", "HERMES_", "GEMINI_", "GOOGLE_",
               "COSTR_", "AI_SDK_", "LANGCHAIN_", "LANGSMITH_")


@dataclass
class Row:
    client: str
    version: str
    upstream: str
    case: str
    result: str      # PASS, FAIL or SKIP
    detail: str
    seconds: float = 0.0


def selected(group: str, only: str | None, upstream: str | None) -> list[Client]:
    names = [n.strip().lower() for n in only.split(",")] if only else []
    chosen = []
    for client in CLIENTS:
        if group == "quick" and client.group != "quick":
            continue
        if names and not any(n in client.name.lower() for n in names):
            continue
        if upstream and upstream not in client.upstreams:
            continue
        chosen.append(client)
    return chosen


def install(clients: list[Client], cache: Path) -> dict[str, str | Unavailable]:
    versions: dict[str, str | Unavailable] = {}
    for client in clients:
        print(f"installing {client.name} into {cache} ...", end=" ", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            versions[client.name] = client.install(cache)
        except Unavailable as why:
            versions[client.name] = why
        outcome = versions[client.name]
        shown = f"SKIP: {outcome}" if isinstance(outcome, Unavailable) else outcome
        print(f"{shown} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    return versions


@contextlib.contextmanager
def costr_for(upstream: str, scratch: Path):
    """A `costr serve` whose one provider is the fake upstream of this wire type."""
    from costr.testing.fake_upstream import FakeUpstream
    from run_agents import KEY, costr_serve
    folder = scratch / f"costr-{upstream}"
    folder.mkdir()
    with FakeUpstream() as fake, costr_serve(folder, upstream, fake.url) as base_url:
        yield base_url, KEY


def run_client(client: Client, version: str, run: Run, keep: bool) -> list[Row]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    env.update(run.env(), **client.extra_env(run))
    started = time.monotonic()
    try:
        done = subprocess.run(client.command(run), cwd=run.work, env=env, capture_output=True,
                              text=True, timeout=client.timeout)
        out, err, ending = done.stdout, done.stderr, f"exited {done.returncode}"
    except subprocess.TimeoutExpired as exc:
        out, err = _text(exc.stdout), _text(exc.stderr)
        ending = f"timed out after {client.timeout:.0f} s"
    except OSError as exc:
        out, err, ending = "", str(exc), f"could not start: {exc}"
    seconds = time.monotonic() - started
    (run.work / "output.txt").write_text(f"$ {' '.join(client.command(run))}\n{out}\n"
                                         f"--- stderr ---\n{err}\n--- {ending} ---\n")
    reported = _cases(out)
    rows = []
    for case in client.cases:
        ok, detail = reported.get(case, (False, f"not reported ({ending}); {_tail(err or out)}"))
        rows.append(Row(client.name, version, run.upstream, case, "PASS" if ok else "FAIL",
                        detail, round(seconds, 1)))
    if any(row.result == "FAIL" for row in rows) or keep:
        rows[-1].detail += f" [output: {run.work / 'output.txt'}]" if keep else ""
        if any(row.result == "FAIL" for row in rows):
            print(f"--- {client.name} ({run.upstream}) {ending}; its last words:\n{_tail(err or out, 1500)}",
                  file=sys.stderr)
    return rows


def _cases(stdout: str) -> dict[str, tuple[bool, str]]:
    cases = {}
    for line in stdout.splitlines():
        if line.startswith('{"case"'):
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                cases[entry["case"]] = (bool(entry["ok"]), str(entry.get("detail", "")))
    return cases


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def _tail(text: str, chars: int = 300) -> str:
    text = " ".join(text.split()) if chars <= 300 else text
    return text[-chars:]


def print_table(rows: list[Row]) -> None:
    headers = ("client", "version", "upstream", "case", "result", "detail")
    cells = [(r.client, r.version, r.upstream, r.case, r.result, r.detail[:90]) for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers[:-1])]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths)) + "  detail"
    print(line)
    print("-" * min(len(line) + 60, 200))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)) + "  " + c[-1])
    counts = {k: sum(r.result == k for r in rows) for k in ("PASS", "FAIL", "SKIP")}
    print(f"\n{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests/clients/matrix.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", choices=GROUPS, default="all",
                        help="quick: the clients that install in minutes (what CI runs); all (default)")
    parser.add_argument("--only", help="clients whose name contains one of these (comma-separated)")
    parser.add_argument("--upstream", choices=("openai", "anthropic", "gemini"),
                        help="only runs against this upstream wire type")
    parser.add_argument("--cache", type=Path, help="where clients are installed (default: "
                        "$COSTR_CLIENTS_CACHE or ~/.cache/costr-clients)")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder and output")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--list", action="store_true", help="list the clients and cases, run nothing")
    args = parser.parse_args(argv)
    clients = selected(args.group, args.only, args.upstream)
    if args.list:
        for client in clients:
            print(f"{client.name} [{client.group}] upstreams={','.join(client.upstreams)} "
                  f"cases={','.join(client.cases)}")
        return 0
    if not clients:
        parser.error("no client matches")
    cache = (args.cache or cache_dir()).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    versions = install(clients, cache)
    rows: list[Row] = []
    scratch = Path(tempfile.mkdtemp(prefix="costr-clients-"))
    try:
        rows = run_all(clients, versions, cache, scratch, args)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print_table(rows)
    print(f"({time.monotonic() - started:.0f} s; clients cached in {cache}"
          f"{'; run folders kept in ' + str(scratch) if args.keep else ''})")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 1 if any(r.result == "FAIL" for r in rows) else 0


def run_all(clients, versions, cache: Path, scratch: Path, args) -> list[Row]:
    rows: list[Row] = []
    bad_key = "cr-" + secrets.token_urlsafe(24)   # well-formed, unknown to Costr
    upstreams = [u for u in ("openai", "anthropic", "gemini")
                 if any(u in c.upstreams for c in clients) and (args.upstream in (None, u))]
    for upstream in upstreams:
        todo = [c for c in clients if upstream in c.upstreams]
        skipped = [c for c in todo if isinstance(versions[c.name], Unavailable)]
        for client in skipped:
            rows += [Row(client.name, "-", upstream, case, "SKIP", str(versions[client.name]))
                     for case in client.cases]
        runnable = [c for c in todo if c not in skipped]
        if not runnable:
            continue
        with costr_for(upstream, scratch) as (base_url, key):
            for client in runnable:
                work = scratch / f"{_slug(client.name)}-{upstream}"
                work.mkdir()
                run = Run(base_url, key, bad_key, cache, work, upstream, sys.executable)
                print(f"running {client.name} against Costr ({upstream} upstream) ...",
                      file=sys.stderr, flush=True)
                rows += run_client(client, versions[client.name], run, args.keep)
    return rows


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:   # everything started was stopped on the way out
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
