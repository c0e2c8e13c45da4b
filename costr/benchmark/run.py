"""`costr bench` (`python -m costr.benchmark`): what Costr costs on each request path, next to
the upstream alone and, on request, next to peers.

Starts the fake upstream (fast mode) and a gateway pointed at it as separate processes on
127.0.0.1, then drives them with a keep-alive aiohttp client from this process. Each request
path (costr/testing/bench_requests.py: cache miss, no-cache, hit, unlimited key, the other client
format, streamed, PostgreSQL books, dry-runs) is measured from 1 client and from --concurrency
clients; the request the gateway sends upstream is also measured straight against the fake, so
the latency Costr adds shows. CPU is read from /proc for the server process and its threads and
children, so it does not depend on how busy the load generator keeps the machine. `--peer
litellm` and `--peer relay` measure LiteLLM's proxy and a bare relay the same way
(costr/benchmark/peers.py).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import signal
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

from costr.benchmark.measure import Figures, Target, measure_path, percentile, run_concurrently
from costr.benchmark.peers import (PEER_PATHS, PEER_SHARE, PEERS, find_litellm, start_litellm,
                                   start_relay)
from costr.benchmark.processes import BenchmarkError, Child, attempt, cpu_seconds, free_port
from costr.benchmark.report import Results, as_json, markdown
from costr.benchmark.servers import create_key, postgres_scratch, start_fake, start_gateway
from costr.testing.bench_requests import BY_NAME, PATHS, RequestPath

__all__ = ["BenchmarkError", "Child", "Figures", "cpu_seconds", "free_port", "main", "percentile",
           "run_concurrently"]

WARMUP = 200
LOAD_FACTOR = 5   # the concurrent runs send more, so CPU (read in 10 ms ticks) is measured finely


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="costr bench", description="Measure what Costr costs on each request path, in front "
        "of a local fake upstream, from 1 client and from many.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="paths:\n" + "\n".join(f"  {p.name:17} {p.about}" for p in PATHS) + "\n\n"
        "postgres uses $COSTR_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test),\n"
        "in a scratch schema dropped afterwards; it is skipped, saying why, when nothing answers.")
    parser.add_argument("--requests", type=int, default=1000,
                        help=f"requests per 1-client figure (default %(default)s), {LOAD_FACTOR}x "
                             "that per concurrent figure, after a warm-up")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="clients for the concurrent figures (default %(default)s)")
    parser.add_argument("--paths", type=_names(BY_NAME), default=[p.name for p in PATHS],
                        help="comma-separated paths to measure (default: all)")
    parser.add_argument("--peer", action="append", type=_names(PEERS), default=[],
                        help="also measure a peer: litellm (if installed) or relay (a bare "
                             "Starlette + uvicorn + aiohttp relay); repeat or separate by commas")
    parser.add_argument("--litellm", metavar="PATH",
                        help="the litellm executable (default: beside this Python, else on PATH)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 20_000 or not 2 <= args.concurrency <= 1024:
        parser.error("--requests must be 1..20000 and --concurrency 2..1024")
    args.peer = list(dict.fromkeys(name for names in args.peer for name in names))
    return args


def _names(known) -> callable:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"{', '.join(unknown) or repr(text)}: choose from "
                                             f"{', '.join(known)}")
        return names
    return parse


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    results = Results(requests=args.requests, concurrent_requests=args.requests * LOAD_FACTOR,
                      concurrency=args.concurrency, warmup=min(WARMUP, args.requests),
                      date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
                      command=shlex.join(["costr", "bench", *argv]))
    def measure() -> None:
        with _sigterm_interrupts(), tempfile.TemporaryDirectory(prefix="costr-bench-") as tmp:
            Benchmark(Path(tmp), args, results).run()
    status, _ = attempt(measure)
    if status:
        return status
    print(json.dumps(as_json(results), indent=2) if args.json else markdown(results))
    return 0


class Benchmark:
    """One run: the servers it starts (each stopped as soon as its paths are measured, and all
    of them whatever happens) and the order it measures in."""

    def __init__(self, tmp: Path, args: argparse.Namespace, results: Results):
        self.tmp, self.args, self.results = tmp, args, results
        self.paths = [p for p in PATHS if p.name in args.paths]

    def run(self) -> None:
        with contextlib.ExitStack() as stack, asyncio.Runner(loop_factory=_loop_factory()) as runner:
            self.runner = runner
            self.fake_url, fake = start_fake(stack, self.tmp)
            upstream = Target(self.fake_url, fake.pid, costr=False)
            for twin in dict.fromkeys(p.upstream_twin for p in self.paths if p.upstream_twin):
                self.results.direct[twin] = self.measure(upstream, BY_NAME[twin], "the upstream alone")
            self.measure_gateway([p for p in self.paths if p.key != "postgres"])
            if any(p.key == "postgres" for p in self.paths):
                self.measure_postgres()
            for peer in self.args.peer:
                self.measure_peer(peer)

    def measure(self, target: Target, path: RequestPath, where: str,
                share: float = 1.0) -> dict[int, Figures]:
        share *= path.share
        counts = {1: max(1, round(self.args.requests * share)),
                  self.args.concurrency: max(1, round(self.args.requests * LOAD_FACTOR * share))}
        warmup = max(1, round(self.results.warmup * share))
        _say(f"{path.name}: {counts[1]} + {counts[self.args.concurrency]} requests to {where}")
        return self.runner.run(measure_path(target, path, counts, warmup))

    def measure_gateway(self, paths: list[RequestPath]) -> None:
        if not paths:
            return
        store = ["--data-dir", str(self.tmp / "data")]
        needed = {p.key for p in paths}
        keys = {kind: create_key(f"bench-{kind}", store, credits=kind != "unlimited")
                for kind in ("credited", "unlimited") if kind in needed}
        with contextlib.ExitStack() as stack:
            url, gateway = start_gateway(stack, self.tmp, self.fake_url, "the gateway", store)
            for path in paths:
                self.results.paths[path.name] = self.measure(
                    Target(url, gateway.pid, keys[path.key]), path, "the gateway")

    def measure_postgres(self) -> None:
        with postgres_scratch() as (database, reason):
            if database is None:
                self.skip("postgres", reason)
                return
            store = ["--database", database]
            key = create_key("bench-postgres", store)
            with contextlib.ExitStack() as stack:
                url, gateway = start_gateway(stack, self.tmp, self.fake_url,
                                             "the PostgreSQL gateway", store)
                self.results.paths["postgres"] = self.measure(
                    Target(url, gateway.pid, key), BY_NAME["postgres"], "the PostgreSQL gateway")

    def measure_peer(self, peer: str) -> None:
        with contextlib.ExitStack() as stack:
            if peer == "litellm":
                executable, reason = find_litellm(self.args.litellm)
                if executable is None:
                    self.skip("litellm", reason)
                    return
                running = start_litellm(stack, self.tmp, self.fake_url, executable)
            else:
                running = start_relay(stack, self.tmp, self.fake_url)
            target = Target(running.url, running.child.pid, running.key, running.model, costr=False)
            self.results.peers[peer] = {
                name: self.measure(target, BY_NAME[name], peer, PEER_SHARE[peer])
                for name in PEER_PATHS[peer]}

    def skip(self, name: str, reason: str) -> None:
        _say(f"{name}: skipped: {reason}")
        self.results.skipped[name] = reason


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _sigterm_interrupts():
    """Turn SIGTERM into KeyboardInterrupt meanwhile, so the servers are stopped either way."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _loop_factory():
    try:
        import uvloop  # a lighter load generator leaves more of the machine to the servers
        return uvloop.new_event_loop
    except ImportError:
        return None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
