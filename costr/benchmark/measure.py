"""Drive one server with one kind of request, first from 1 client and then from many, and take
its figures: CPU per request (the server's own, from /proc), latency, time to first byte and
throughput. Every answer is checked, so a broken path fails loudly instead of being measured."""
from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass

import aiohttp

from costr.benchmark.processes import BenchmarkError, cpu_seconds
from costr.testing.bench_requests import RequestPath

CACHE_HEADER = "x-costr-cache-hit"
_counter = itertools.count()   # one counter for the whole run: no unique prompt repeats


@dataclass
class Figures:
    """One server on one path at one client count. Times in milliseconds."""
    clients: int
    requests: int
    cpu_ms_per_request: float
    p50_ms: float
    p99_ms: float
    requests_per_second: float
    first_byte_p50_ms: float | None = None   # streamed paths only


@dataclass
class Target:
    """Where to send a path's requests: the server's base URL and process id, the key to send,
    the model to name, and whether its answers carry Costr's cache header."""
    url: str
    pid: int
    key: str = ""
    model: str = "auto"
    costr: bool = True


class Sender:
    """Sends one path's request to one target and checks the answer; returns (seconds to the
    whole answer, seconds to its first body bytes or None)."""

    def __init__(self, session: aiohttp.ClientSession, target: Target, path: RequestPath):
        self.session, self.path = session, path
        self.url = target.url + path.endpoint
        self.headers = path.request_headers(target.key)
        template = path.template(target.model)
        self.template, self.fixed = template, None if path.unique else template.encode()
        self.expect_hit = path.cache_hit if target.costr else None

    async def __call__(self) -> tuple[float, float | None]:
        body = self.fixed or (self.template % next(_counter)).encode()
        started = time.perf_counter()
        first = None
        try:
            async with self.session.post(self.url, data=body, headers=self.headers) as response:
                if self.path.streamed:
                    head = await response.content.readany()
                    first = time.perf_counter() - started
                    answer = head + await response.read()
                else:
                    answer = await response.read()
                elapsed = time.perf_counter() - started
                self._check(response, answer)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BenchmarkError(f"{self.path.name}: {self.url}: {exc!r}") from None
        return elapsed, first

    def _check(self, response: aiohttp.ClientResponse, answer: bytes) -> None:
        where = f"{self.path.name}: {self.url}"
        if response.status != 200:
            raise BenchmarkError(f"{where} answered {response.status}: {answer[:300]!r}")
        if self.path.streamed and self.path.stream_end not in answer[-300:]:
            raise BenchmarkError(f"{where}: the stream ended without "
                                 f"{self.path.stream_end.decode()}: {answer[-300:]!r}")
        if not self.path.streamed and self.path.answer_marker not in answer:
            raise BenchmarkError(f"{where}: not the expected answer: {answer[:300]!r}")
        if self.expect_hit is not None:
            hit = response.headers.get(CACHE_HEADER)
            if hit != ("true" if self.expect_hit else "false"):
                raise BenchmarkError(f"{where}: {CACHE_HEADER} was {hit!r}, expected a "
                                     f"{'hit' if self.expect_hit else 'miss'}")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


async def run_concurrently(send, count: int, concurrency: int) -> float:
    """Send `count` requests from `concurrency` workers; return the wall time taken."""
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:  # a shared iterator hands out the work without a lock
            await send()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def measure_path(target: Target, path: RequestPath, counts: dict[int, int],
                       warmup: int) -> dict[int, Figures]:
    """Warm up from one client, then for each (clients, requests) in `counts`, in order, send
    that many requests from that many clients and take the figures."""
    connector = aiohttp.TCPConnector(limit=max(counts), force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        send = Sender(session, target, path)
        expect_hit, send.expect_hit = send.expect_hit, None   # the first of a repeated request misses
        await run_concurrently(send, warmup, 1)
        send.expect_hit = expect_hit
        return {clients: await _figures(send, target.pid, clients, requests)
                for clients, requests in counts.items()}


async def _figures(send: Sender, pid: int, clients: int, requests: int) -> Figures:
    timings: list[tuple[float, float | None]] = []

    async def timed() -> None:
        timings.append(await send())

    cpu_before = cpu_seconds(pid)
    wall = await run_concurrently(timed, requests, clients)
    cpu = cpu_seconds(pid) - cpu_before
    latencies = [whole for whole, _ in timings]
    firsts = [first for _, first in timings if first is not None]
    return Figures(clients=clients, requests=requests,
                   cpu_ms_per_request=cpu / requests * 1000,
                   p50_ms=percentile(latencies, 50) * 1000, p99_ms=percentile(latencies, 99) * 1000,
                   requests_per_second=requests / wall,
                   first_byte_p50_ms=percentile(firsts, 50) * 1000 if firsts else None)
