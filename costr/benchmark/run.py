"""`python -m costr.benchmark`: the latency and CPU Costr adds in front of an upstream.

Starts the fake upstream (fast mode) and a gateway pointed at it as separate processes on
127.0.0.1, then drives both with a keep-alive aiohttp client from this process: a small
non-streamed OpenAI chat request with model "auto", then a streamed one. Each figure is
measured directly against the fake and through the gateway; the difference is what Costr adds.
CPU is read from /proc for the server process and its threads and children, so it does not
depend on how busy the load generator keeps the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from costr.benchmark.report import AGENT_TOKENS, machine, markdown_table
from costr.testing.agent_request import agent_request
from costr.testing.fake_upstream import write_gateway_config  # the fake and its pool live together

CHAT = {"model": "auto", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}
STREAMED_CHAT = {**CHAT, "stream": True}
# Every request is different (a counter in the prompt), so the gateway's response cache misses,
# as it would on real traffic; the cache-hit figures repeat one request. Bodies are made by
# string formatting, so the load generator's own cost stays small.
_CHAT_TEMPLATE = json.dumps(CHAT).replace("one short sentence.", "one short sentence (%d).")
_STREAM_TEMPLATE = json.dumps(STREAMED_CHAT).replace("one short sentence.", "one short sentence (%d).")
_CHAT_BYTES = json.dumps(CHAT).encode()
_DRY_RUN = "/v1/router/dry-run"
_counter = iter(range(10**12))
WARMUP = 200
LOAD_FACTOR = 5  # the concurrent runs send more, so CPU (read in 10 ms ticks) is measured finely
READY_TIMEOUT = 30.0


@dataclass
class Figures:
    """One server's results. Times in milliseconds. The cache-hit and dry-run figures are
    the gateway's alone (None when measured directly against the upstream)."""
    p50_ms: float
    p99_ms: float
    requests_per_second: float
    cpu_ms_per_request: float
    stream_ttfb_p50_ms: float
    stream_total_p50_ms: float
    stream_cpu_ms_per_request: float
    cache_hit_p50_ms: float | None = None
    cache_hit_cpu_ms_per_request: float | None = None
    dry_run_cpu_ms_per_request: float | None = None
    agent_dry_run_p50_ms: float | None = None
    agent_dry_run_cpu_ms_per_request: float | None = None


class BenchmarkError(Exception):
    pass


# -- child processes ---------------------------------------------------------------------------

class Child:
    """A server process, its output kept in a log file, stopped however the benchmark ends."""

    def __init__(self, name: str, argv: list[str], log_path: Path):
        self.name, self.log_path = name, log_path
        with open(log_path, "wb") as log:
            # Own session: a Ctrl-C reaches only us, and we stop the children in order.
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, url: str, timeout: float = READY_TIMEOUT) -> None:
        """Poll `url` until it answers 200; fail early if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkError(f"{self.name} exited with {self.process.returncode}:\n"
                                     f"{self.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            time.sleep(0.1)
        raise BenchmarkError(f"{self.name} did not answer {url} within {timeout:.0f}s:\n{self.log_tail()}")


def _die_with_parent() -> None:
    """Linux: have the kernel stop a child if the benchmark itself is killed outright."""
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process (all its threads) and of its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop()
        found.append(child)
        queue.extend(children.get(child, []))
    return found


# -- load generation ---------------------------------------------------------------------------

async def send_chat(session: aiohttp.ClientSession, url: str, body: bytes | None = None) -> float:
    started = time.perf_counter()
    body = body if body is not None else (_CHAT_TEMPLATE % next(_counter)).encode()
    async with session.post(url, data=body) as response:
        body = await response.read()
        if response.status != 200:
            raise BenchmarkError(f"{url} answered {response.status}: {body[:300]!r}")
    return time.perf_counter() - started


async def send_stream(session: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """(time to the first body byte, time to the end of the stream)."""
    started = time.perf_counter()
    async with session.post(url, data=(_STREAM_TEMPLATE % next(_counter)).encode()) as response:
        if response.status != 200:
            raise BenchmarkError(f"{url} answered {response.status}: {(await response.read())[:300]!r}")
        head = await response.content.readany()
        first = time.perf_counter() - started
        tail = await response.read()
        if not (head + tail).rstrip().endswith(b"data: [DONE]"):
            raise BenchmarkError(f"{url} ended a stream without data: [DONE]")
    return first, time.perf_counter() - started


async def run_concurrently(send, count: int, concurrency: int) -> float:
    """Send `count` requests from `concurrency` workers; return the wall time taken."""
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:  # a shared iterator hands out the work without a lock
            await send()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def measure(url: str, pid: int, requests: int, concurrency: int, key: str = "") -> Figures:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        chat = f"{url}/v1/chat/completions"
        await run_concurrently(lambda: send_chat(session, chat), WARMUP, 1)
        latencies = [await send_chat(session, chat) for _ in range(requests)]
        load = requests * LOAD_FACTOR
        cpu_before = cpu_seconds(pid)
        wall = await run_concurrently(lambda: send_chat(session, chat), load, concurrency)
        cpu_chat = cpu_seconds(pid) - cpu_before

        await run_concurrently(lambda: send_stream(session, chat), WARMUP, 1)
        streams = [await send_stream(session, chat) for _ in range(requests)]
        cpu_before = cpu_seconds(pid)
        await run_concurrently(lambda: send_stream(session, chat), load, concurrency)
        cpu_stream = cpu_seconds(pid) - cpu_before
        extra = await measure_gateway_only(session, url, pid, requests, concurrency) if key else {}
    return Figures(**extra,
        p50_ms=percentile(latencies, 50) * 1000, p99_ms=percentile(latencies, 99) * 1000,
        requests_per_second=load / wall, cpu_ms_per_request=cpu_chat / load * 1000,
        stream_ttfb_p50_ms=percentile([s[0] for s in streams], 50) * 1000,
        stream_total_p50_ms=percentile([s[1] for s in streams], 50) * 1000,
        stream_cpu_ms_per_request=cpu_stream / load * 1000)


async def measure_gateway_only(session, url: str, pid: int, requests: int, concurrency: int) -> dict:
    """Cache hits (one request repeated) and, for reference, the bare handling of a request
    that calls no upstream and touches no cache (a dry-run: authenticate, decode, route,
    answer)."""
    chat, load = f"{url}/v1/chat/completions", requests * LOAD_FACTOR
    hit = lambda: send_chat(session, chat, _CHAT_BYTES)  # noqa: E731
    await run_concurrently(hit, WARMUP, 1)
    latencies = [await hit() for _ in range(requests)]
    cpu_before = cpu_seconds(pid)
    await run_concurrently(hit, load, concurrency)
    cpu_hit = cpu_seconds(pid) - cpu_before
    dry_run = lambda: send_chat(session, f"{url}{_DRY_RUN}")  # noqa: E731
    await run_concurrently(dry_run, WARMUP, 1)
    cpu_before = cpu_seconds(pid)
    await run_concurrently(dry_run, load, concurrency)
    cpu_dry = cpu_seconds(pid) - cpu_before
    agent_body, agent_count = agent_request(AGENT_TOKENS), max(20, requests // 20)
    agent = lambda: send_chat(session, f"{url}{_DRY_RUN}", agent_body)  # noqa: E731
    await run_concurrently(agent, 5, 1)
    cpu_before = cpu_seconds(pid)
    agent_latencies = [await agent() for _ in range(agent_count)]
    cpu_agent = cpu_seconds(pid) - cpu_before
    return {"cache_hit_p50_ms": percentile(latencies, 50) * 1000,
            "cache_hit_cpu_ms_per_request": cpu_hit / load * 1000,
            "dry_run_cpu_ms_per_request": cpu_dry / load * 1000,
            "agent_dry_run_p50_ms": percentile(agent_latencies, 50) * 1000,
            "agent_dry_run_cpu_ms_per_request": cpu_agent / agent_count * 1000}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


# -- entry point -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m costr.benchmark",
        description="Measure the latency and CPU Costr adds in front of a local fake upstream.")
    parser.add_argument("--requests", type=int, default=2000,
                        help=f"requests per 1-client figure, {LOAD_FACTOR}x that per concurrent one")
    parser.add_argument("--concurrency", type=int, default=32, help="clients for throughput and CPU")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--direct-only", action="store_true", help="measure the fake upstream alone")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 20_000 or not 1 <= args.concurrency <= 1024:
        parser.error("--requests must be 1..20000 and --concurrency 1..1024")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with _sigterm_interrupts(), tempfile.TemporaryDirectory(prefix="costr-bench-") as tmp:
            direct, gateway = run_benchmark(Path(tmp), args)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmark interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({"requests": args.requests, "concurrent_requests": args.requests * LOAD_FACTOR,
                          "concurrency": args.concurrency, "warmup": WARMUP, "machine": machine(),
                          "direct": _rounded(direct),
                          "gateway": _rounded(gateway) if gateway else None}, indent=2))
    else:
        print(markdown_table(direct, gateway, args.concurrency, args.requests,
                             args.requests * LOAD_FACTOR, WARMUP))
    return 0


def run_benchmark(tmp: Path, args) -> tuple[Figures, Figures | None]:
    """Start the servers, measure, and stop the servers whatever happens."""
    python = sys.executable
    with contextlib.ExitStack() as servers:
        fake_port = free_port()
        fake_url = f"http://127.0.0.1:{fake_port}"
        fake = servers.enter_context(Child("the fake upstream", [
            python, "-m", "costr.testing.fake_upstream", "--port", str(fake_port), "--fast"],
            tmp / "fake.log"))
        fake.wait_ready(f"{fake_url}/v1/models")
        gateway = gateway_url = None
        if not args.direct_only:
            providers, policies = write_gateway_config(tmp, fake_url)
            data_dir = str(tmp / "data")
            key = subprocess.run([python, "-m", "costr", "keys", "create", "--name", "bench",
                                  "--data-dir", data_dir], check=True, capture_output=True,
                                 text=True).stdout.strip()
            gateway_url = f"http://127.0.0.1:{free_port()}"
            gateway = servers.enter_context(Child("the gateway", [
                python, "-m", "costr", "serve", "--host", "127.0.0.1",
                "--port", gateway_url.rsplit(":", 1)[1], "--providers", str(providers),
                "--policies", str(policies), "--data-dir", data_dir], tmp / "gateway.log"))
            gateway.wait_ready(f"{gateway_url}/v1/router/health")
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            direct = runner.run(measure(fake_url, fake.pid, args.requests, args.concurrency))
            through = (runner.run(measure(gateway_url, gateway.pid, args.requests, args.concurrency, key))
                       if gateway else None)
    return direct, through


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


def _rounded(figures: Figures) -> dict:
    return {key: None if value is None else round(value, 4) for key, value in asdict(figures).items()}


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
