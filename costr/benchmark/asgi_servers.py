"""`python -m costr.benchmark.asgi_servers`: the same Costr app under uvicorn, exactly as
`costr serve` runs it, and under granian with several of its runtime options, measured on the
same requests; then how each stops on SIGTERM with a slow request in flight
(costr/benchmark/asgi_sigterm.py). docs/benchmark.md, "The server underneath", has the findings.

Every server gets the same providers.yaml, policies and data directory, in front of one fast
fake upstream, and one credited key. Each is measured on non-streamed and streamed OpenAI chat
requests with a new prompt each time (cache misses, as on real traffic), from 1 client and from
--concurrency clients: CPU per request of the server process and its children (granian runs its
worker as a child), p50, p99, requests per second and, streamed, time to first byte.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import sys
import tempfile
import statistics
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path

from costr.benchmark.asgi_candidates import BY_SERVER, SERVERS, Server, granian_installed, running
from costr.benchmark.asgi_sigterm import check_sigterm, markdown_rows
from costr.benchmark.measure import Target, measure_path
from costr.benchmark.processes import attempt
from costr.benchmark.run import Figures
from costr.benchmark.servers import create_key, start_fake
from costr.testing.bench_requests import BY_NAME as BY_PATH

PATH_NAMES = ("miss", "stream")   # OpenAI chat, a new prompt each time; plain and streamed
WARMUP = 200
LOAD_FACTOR = 5   # the concurrent figures send 5x --requests, so CPU (10 ms ticks) reads finely


def measure_servers(tmp: Path, servers: list[Server], requests: int, concurrency: int,
                    rounds: int) -> dict[str, dict[str, dict[int, Figures]]]:
    """{server: {path: {clients: Figures}}}. Each server has a data directory and key of its
    own, so none inherits a ledger the others grew. With several rounds the servers take turns
    (a, b, a, b...), so a change in how busy the machine is falls on all of them, and each
    figure is the median of its rounds."""
    counts = {1: requests, concurrency: requests * LOAD_FACTOR}
    warmup = min(WARMUP, requests)
    keys = {server.name: create_key("bench-servers", ["--data-dir", str(tmp / server.name)])
            for server in servers}
    taken: dict[str, dict[str, dict[int, list[Figures]]]] = {}
    with contextlib.ExitStack() as stack, asyncio.Runner(loop_factory=_loop_factory()) as runner:
        fake_url, _ = start_fake(stack, tmp)
        for turn in range(1, rounds + 1):
            for server in servers:
                with running(server, tmp, fake_url, tmp / server.name) as (url, child):
                    target = Target(url, child.pid, keys[server.name])
                    for name in PATH_NAMES:
                        _say(f"round {turn}: {server.name}: {name}: {counts[1]} + "
                             f"{counts[concurrency]} requests")
                        figures = runner.run(measure_path(target, BY_PATH[name], counts, warmup))
                        for clients, found in figures.items():
                            taken.setdefault(server.name, {}).setdefault(name, {}).setdefault(
                                clients, []).append(found)
    return {server: {path: {clients: _median(runs) for clients, runs in by_clients.items()}
                     for path, by_clients in paths.items()} for server, paths in taken.items()}


def _median(runs: list[Figures]) -> Figures:
    """Each figure's median over the rounds (with one round, that round's figures)."""
    if len(runs) == 1:
        return runs[0]
    medians = {}
    for field in fields(Figures):
        values = [getattr(run, field.name) for run in runs]
        medians[field.name] = None if None in values else statistics.median(values)
    return Figures(**medians)


def markdown(results: dict, servers: list[Server], concurrency: int, sigterm: dict) -> str:
    """The figures as a Markdown table, a column per server, then the SIGTERM findings."""
    names = list(results)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    rows = [("CPU per request (ms)", "cpu_ms_per_request", 3), ("p50 (ms)", "p50_ms", 2),
            ("p99 (ms)", "p99_ms", 2), ("req/s", "requests_per_second", 0),
            ("first byte p50 (ms)", "first_byte_p50_ms", 2)]
    for path, label in (("miss", "Non-streamed"), ("stream", "Streamed")):
        for clients in (1, concurrency):
            for title, field, digits in rows:
                values = [getattr(results[n][path][clients], field) for n in names]
                if all(value is None for value in values):
                    continue
                cells = [f"{value:,.{digits}f}" for value in values]
                who = "1 client" if clients == 1 else f"{clients} clients"
                lines.append(f"| {label}, {who}: {title} | " + " | ".join(cells) + " |")
    lines += ["", "Servers:"] + [f"- {s.name}: {s.command}" for s in servers if s.name in results]
    if sigterm:
        lines += ["", *markdown_rows(sigterm)]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m costr.benchmark.asgi_servers",
        description="Measure the Costr app under uvicorn (as `costr serve` runs it) and under "
                    "granian, then check how each stops on SIGTERM with a request in flight.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="servers:\n" + "\n".join(f"  {s.name:18} {s.command}" for s in SERVERS))
    parser.add_argument("--requests", type=int, default=1000,
                        help=f"requests per 1-client figure (default %(default)s); {LOAD_FACTOR}x "
                             "that per concurrent figure, after a warm-up")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="clients for the concurrent figures (default %(default)s)")
    parser.add_argument("--servers", default=",".join(BY_SERVER),
                        help="comma-separated servers to run (default: all)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every server this many times, taking turns, and report "
                             "each figure's median (default %(default)s)")
    parser.add_argument("--no-sigterm", dest="sigterm", action="store_false",
                        help="skip the SIGTERM check")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 20_000 or not 2 <= args.concurrency <= 1024 \
            or not 1 <= args.rounds <= 20:
        parser.error("--requests must be 1..20000, --concurrency 2..1024 and --rounds 1..20")
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_SERVER]
    if unknown or not names:
        parser.error(f"--servers: {', '.join(unknown) or 'none given'}: choose from "
                     f"{', '.join(BY_SERVER)}")
    args.servers = [BY_SERVER[name] for name in dict.fromkeys(names)]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    servers = args.servers
    if not granian_installed():
        _say("granian is not installed: measuring uvicorn alone")
        servers = [server for server in servers if server.granian is None]
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "command": shlex.join(["python", "-m", "costr.benchmark.asgi_servers", *argv]),
              "requests": args.requests, "concurrent_requests": args.requests * LOAD_FACTOR,
              "concurrency": args.concurrency, "rounds": args.rounds,
              "granian_installed": granian_installed()}
    def measure() -> tuple[dict, dict]:
        with tempfile.TemporaryDirectory(prefix="costr-servers-") as tmp:
            results = measure_servers(Path(tmp), servers, args.requests, args.concurrency,
                                      args.rounds)
            return results, check_sigterm(Path(tmp), servers) if args.sigterm else {}
    status, measured = attempt(measure)
    if status:
        return status
    results, sigterm = measured
    if args.json:
        report["servers"] = {name: {"command": BY_SERVER[name].command, "paths": {
            path: {str(clients): asdict(f) for clients, f in by_clients.items()}
            for path, by_clients in paths.items()}} for name, paths in results.items()}
        report["sigterm"] = sigterm
        print(json.dumps(report, indent=2))
    else:
        rounds = f", the median of {args.rounds} rounds" if args.rounds > 1 else ""
        print(f"{report['date']}: `{report['command']}` ({args.requests} requests from 1 client, "
              f"{args.requests * LOAD_FACTOR} from {args.concurrency}, per figure{rounds})\n")
        print(markdown(results, servers, args.concurrency, sigterm))
    return 0


def _loop_factory():
    try:
        import uvloop  # a lighter load generator leaves more of the machine to the servers
        return uvloop.new_event_loop
    except ImportError:
        return None


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
