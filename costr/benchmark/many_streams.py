"""`python -m costr.benchmark.many_streams`: many slow streams held open at once by one Costr
instance, what each open stream costs it in memory, and whether any stream was starved.

Starts the fake upstream in slow mode (each streamed answer sends one content chunk every
--interval-ms for --seconds; costr/testing/_fake_pace.py) and `costr serve` (books in SQLite, a
key with credits) as child processes, then opens --streams OpenAI chat streams through the
gateway at once, from one aiohttp session in this process. Each stream has its own prompt, so
none is answered from the response cache, and the gateway collects each answer to store it
there, as for any new prompt; with --no-cache the streams send `x-no-cache: true` instead.

It reports: the streams that completed (status 200, every token, ending in `data: [DONE]`) of
those asked; the gateway's resident memory (VmRSS, sampled every 0.2 s) before the streams,
while all of them were open (a stream is open from its first event to its last), at its peak
and after, and from the first two the memory per open stream; the gateway's CPU over the drill,
per stream and per token, and the share of one core it used while all streams were open; and
per stream the time to its first event and the largest gap between two consecutive events,
summarised as p50, p99 and max. A gap far above the interval is a stream that waited behind
others. The exit status is 1 when any stream failed.

Each open stream holds two descriptors in the gateway (its client's connection and its
upstream's), so the drill raises its soft open-files limit to the hard limit first; the
servers it starts inherit it.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from costr.benchmark.processes import attempt
from costr.benchmark.run import BenchmarkError, Child, cpu_seconds, free_port, percentile
from costr.benchmark.servers import child_environment, create_key, start_gateway
from costr.testing.fake_upstream import Pace

SAMPLE_SECONDS = 0.2        # how often the gateway is sampled while the streams run
SETTLE_SECONDS = 2.0        # before the "before" and the "after" memory are read
WARMUP_REQUESTS = 20        # plain (unstreamed) requests before the "before" memory is read
DESCRIPTORS_SPARE = 200     # the gateway's own files: its database, logs, listening sockets
TOKEN = b'"' + Pace.WORD.encode() + b'"'   # what each content event carries
DONE = b"data: [DONE]"      # how the last event reads, its blank line cut off


@dataclass
class StreamResult:
    """One stream as its client saw it. Times in seconds."""
    ok: bool = False
    error: str = ""
    first_event: float | None = None   # from sending the request to its first event
    largest_gap: float = 0.0           # between two consecutive events
    tokens: int = 0
    ended: bool = False                # the last event was `data: [DONE]`


@dataclass
class Progress:
    """How many streams are open right now: their first event came, their end did not."""
    open: int = 0


@dataclass
class GatewayWatch:
    """The gateway, sampled while the streams run: its resident memory, the most while all
    the streams were open (as the first ones end, the answers they leave in the response cache
    and their books grow it further) and the most at any time; its open descriptors; and the
    CPU it used while all were open, which says how close to a full core the streams keep it."""
    all_open_kb: int = 0
    descriptors_all_open: int = 0
    peak_kb: int = 0
    all_open_cpu: list[tuple[float, float]] = field(default_factory=list)  # first, last (s, CPU s)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (s, open, kB)

    @property
    def busy_all_open(self) -> float | None:
        """The share of one core the gateway used while every stream was open."""
        if len(self.all_open_cpu) < 2 or self.all_open_cpu[1][0] <= self.all_open_cpu[0][0]:
            return None
        (start, cpu_start), (end, cpu_end) = self.all_open_cpu
        return (cpu_end - cpu_start) / (end - start)


@dataclass
class Measured:
    """What one drill measured, before it is summarised."""
    tokens: int                 # per stream
    results: list[StreamResult]
    before_kb: int
    watch: GatewayWatch
    after_kb: int
    wall: float                 # seconds from the first request to the last stream's end
    cpu: dict[str, float]       # seconds, for "gateway", "fake" and "client"


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (children inherit it);
    return the soft limit now in force (RLIM_INFINITY when there is none)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard
    if hard == resource.RLIM_INFINITY:   # the kernel's own ceiling then applies
        ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
    if soft == resource.RLIM_INFINITY or soft >= ceiling:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    return ceiling


def resident_kb(pid: int) -> int:
    """VmRSS of a process, in kB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchmarkError(f"no VmRSS for process {pid}")


def open_descriptors(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return 0


async def follow_stream(session: aiohttp.ClientSession, url: str, headers: dict, body: bytes,
                        tokens: int, progress: Progress) -> StreamResult:
    """Send one streamed request and read it to its end, timing its events: an event arrives
    with the read that completes it (reads are timed, not parsed line by line, so that the
    client's own work stays small next to the gateway's)."""
    loop = asyncio.get_running_loop()
    result, last, started, pending = StreamResult(), None, loop.time(), b""
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                result.error = f"status {response.status}: {(await response.read())[:200]!r}"
                return result
            async for chunk in response.content.iter_any():
                events, _, pending = (pending + chunk).rpartition(b"\n\n")
                if not events:
                    continue
                now = loop.time()
                if last is None:
                    result.first_event = now - started
                    progress.open += 1
                else:
                    result.largest_gap = max(result.largest_gap, now - last)
                last, result.tokens = now, result.tokens + events.count(TOKEN)
                result.ended = events.endswith(DONE)
            if not result.ended:
                result.error = "the stream ended without data: [DONE]"
            elif result.tokens != tokens:
                result.error = f"{result.tokens} of {tokens} tokens arrived"
            result.ok = not result.error
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        progress.open -= last is not None
    return result


async def watch_gateway(pid: int, streams: int, progress: Progress, watch: GatewayWatch) -> None:
    """Sample the gateway until cancelled."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        kb, now_open, now = resident_kb(pid), progress.open, loop.time()
        watch.samples.append((round(now - started, 2), now_open, kb))
        watch.peak_kb = max(watch.peak_kb, kb)
        if now_open == streams:
            reading = (now, cpu_seconds(pid))
            watch.all_open_cpu = [(watch.all_open_cpu or [reading])[0], reading]
            if kb >= watch.all_open_kb:
                watch.all_open_kb, watch.descriptors_all_open = kb, open_descriptors(pid)
        await asyncio.sleep(SAMPLE_SECONDS)


async def warm_up(session: aiohttp.ClientSession, url: str, headers: dict) -> None:
    """A few plain requests, so the gateway has loaded and cached what every request uses."""
    for number in range(WARMUP_REQUESTS):
        body = json.dumps(_chat(f"Warm up {number}.", stream=False)).encode()
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                raise BenchmarkError(f"warm-up answered {response.status}: "
                                     f"{(await response.read())[:300]!r}")
            await response.read()


def _chat(prompt: str, stream: bool = True) -> dict:
    return {"model": "auto", "stream": stream, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": prompt}]}


async def drill(gateway_url: str, pids: dict[str, int], key: str,
                args: argparse.Namespace) -> Measured:
    """Warm up, then open every stream at once and follow them to their end."""
    url = gateway_url + "/v1/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}",
               **({"x-no-cache": "true"} if args.no_cache else {})}
    tokens = Pace(args.interval_ms / 1000, args.seconds).tokens
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:
        await warm_up(session, url, headers)
        await asyncio.sleep(SETTLE_SECONDS)
        before_kb = resident_kb(pids["gateway"])
        progress, watch = Progress(), GatewayWatch()
        bodies = [json.dumps(_chat(f"Count slowly, stream {n}.")).encode()
                  for n in range(args.streams)]
        cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        cpu["client"], started = time.process_time(), time.perf_counter()
        watcher = asyncio.get_running_loop().create_task(
            watch_gateway(pids["gateway"], args.streams, progress, watch))
        try:
            results = await asyncio.gather(*(follow_stream(session, url, headers, body, tokens,
                                                           progress) for body in bodies))
        finally:
            watcher.cancel()
        wall = time.perf_counter() - started
        cpu = {"client": time.process_time() - cpu["client"],
               **{name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}}
    await asyncio.sleep(SETTLE_SECONDS)
    return Measured(tokens, results, before_kb, watch, resident_kb(pids["gateway"]), wall, cpu)


def summarise(args: argparse.Namespace, measured: Measured) -> dict:
    """The report, as plain data (figures rounded; memory samples included)."""
    results, watch, streams = measured.results, measured.watch, args.streams
    flowed = [r for r in results if r.first_event is not None]
    firsts = [r.first_event * 1000 for r in flowed]
    gaps = [r.largest_gap * 1000 for r in flowed]
    gateway_cpu, busy = measured.cpu["gateway"], watch.busy_all_open
    return {
        "streams": streams, "completed": sum(r.ok for r in results),
        "interval_ms": args.interval_ms, "seconds": args.seconds, "no_cache": args.no_cache,
        "tokens_per_stream": measured.tokens, "wall_seconds": round(measured.wall, 2),
        "gateway_rss_mb": {name: round(kb / 1024, 1) for name, kb in (
            ("before", measured.before_kb), ("all_open", watch.all_open_kb),
            ("peak", watch.peak_kb), ("after", measured.after_kb))},
        "gateway_descriptors_all_open": watch.descriptors_all_open,
        "memory_per_open_stream_kb": round((watch.all_open_kb - measured.before_kb) / streams, 1)
        if watch.all_open_kb else None,
        "gateway_cpu_seconds": round(gateway_cpu, 2),
        "gateway_cpu_ms_per_stream": round(gateway_cpu / streams * 1000, 2),
        "gateway_cpu_us_per_token": round(gateway_cpu / (streams * measured.tokens) * 1e6, 1),
        "gateway_busy_all_open": None if busy is None else round(busy, 2),
        "fake_cpu_seconds": round(measured.cpu["fake"], 2),
        "client_cpu_seconds": round(measured.cpu["client"], 2),
        "first_event_ms": _spread(firsts), "largest_gap_ms": _spread(gaps),
        "streams_with_a_gap_over_10_intervals": sum(g > 10 * args.interval_ms for g in gaps),
        "errors": dict(Counter(r.error for r in results if r.error).most_common(5)),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "memory_samples": watch.samples,
    }


def _spread(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": round(percentile(values, 50), 1), "p99": round(percentile(values, 99), 1),
            "max": round(max(values), 1)}


def start_slow_fake(stack: contextlib.ExitStack, tmp: Path,
                    args: argparse.Namespace) -> tuple[str, Child]:
    port = free_port()
    fake = stack.enter_context(Child("the slow fake upstream", [
        sys.executable, "-m", "costr.testing.fake_upstream", "--port", str(port), "--fast",
        "--token-interval-ms", str(args.interval_ms), "--stream-seconds", str(args.seconds)],
        tmp / "fake.log", env=child_environment()))
    url = f"http://127.0.0.1:{port}"
    fake.wait_ready(f"{url}/v1/models")
    return url, fake


def run(args: argparse.Namespace) -> dict:
    """Start the servers in a scratch directory, run the drill, stop them; the report."""
    limit = raise_open_files_limit()
    needed = 2 * args.streams + DESCRIPTORS_SPARE
    if limit != resource.RLIM_INFINITY and limit < needed:
        raise BenchmarkError(f"{args.streams} streams need about {needed} open files in the "
                             f"gateway, and the limit is {limit}: raise it (ulimit -Hn)")
    with tempfile.TemporaryDirectory(prefix="costr-streams-") as scratch, \
            contextlib.ExitStack() as stack:
        tmp = Path(scratch)
        fake_url, fake = start_slow_fake(stack, tmp, args)
        store = ["--data-dir", str(tmp / "data")]
        key = create_key("many-streams", store)
        gateway_url, gateway = start_gateway(stack, tmp, fake_url, "the gateway", store)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            measured = runner.run(drill(gateway_url, {"gateway": gateway.pid, "fake": fake.pid},
                                        key, args))
        report = summarise(args, measured)
        report["gateway_log_tail"] = gateway.log_tail(5) if report["errors"] else ""
        return report


def markdown(report: dict) -> str:
    """The report as a Markdown table (the memory samples left out)."""
    rss, first, gap = report["gateway_rss_mb"], report["first_event_ms"], report["largest_gap_ms"]
    per_stream, busy = report["memory_per_open_stream_kb"], report["gateway_busy_all_open"]
    rows = [
        ("Streams completed / asked", f"{report['completed']} / {report['streams']}"),
        ("Each stream", f"{report['tokens_per_stream']} tokens, one every "
                        f"{report['interval_ms']:g} ms ({report['seconds']:g} s)"
                        + (", x-no-cache" if report["no_cache"] else "")),
        ("Drill wall time", f"{report['wall_seconds']} s"),
        ("Gateway RSS before / all open / peak / after",
         f"{rss['before']} / {rss['all_open']} / {rss['peak']} / {rss['after']} MB"),
        ("Gateway descriptors, all open", str(report["gateway_descriptors_all_open"])),
        ("Memory per open stream", "not measured (no sample had every stream open)"
         if per_stream is None else f"{per_stream} KB"),
        ("Gateway CPU", f"{report['gateway_cpu_seconds']} s: "
                        f"{report['gateway_cpu_ms_per_stream']} ms per stream, "
                        f"{report['gateway_cpu_us_per_token']} us per token"),
        ("Gateway busy while all were open", "not measured" if busy is None
         else f"{busy:.0%} of one core"),
        ("Fake upstream / client CPU",
         f"{report['fake_cpu_seconds']} s / {report['client_cpu_seconds']} s"),
        ("Time to first event p50 / p99 / max",
         f"{first['p50']} / {first['p99']} / {first['max']} ms"),
        ("Largest gap in a stream p50 / p99 / max",
         f"{gap['p50']} / {gap['p99']} / {gap['max']} ms"),
        ("Streams with a gap over 10 intervals",
         str(report["streams_with_a_gap_over_10_intervals"])),
        ("Errors", "; ".join(f"{n} x {e}" for e, n in report["errors"].items()) or "none"),
    ]
    lines = ["| Figure | Value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    if report.get("gateway_log_tail"):
        lines += ["", "The gateway's last log lines:", report["gateway_log_tail"]]
    return "\n".join(lines)


def _loop_factory():
    try:
        import uvloop  # a lighter client leaves more of the machine to the gateway
        return uvloop.new_event_loop
    except ImportError:
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m costr.benchmark.many_streams",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="default %(default)s")
    parser.add_argument("--interval-ms", type=float, default=50,
                        help="between two tokens of a stream (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=20,
                        help="how long each stream lasts (default %(default)s)")
    parser.add_argument("--no-cache", action="store_true",
                        help="send x-no-cache: true, so the gateway does not collect the answers "
                             "for its response cache")
    parser.add_argument("--json", action="store_true",
                        help="print the report as JSON, memory samples included")
    args = parser.parse_args(argv)
    if args.streams < 1 or not args.interval_ms > 0 or not args.seconds > 0:
        parser.error("--streams, --interval-ms and --seconds must be above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    status, report = attempt(lambda: run(args), "many-streams drill")
    if status:
        return status
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0 if report["completed"] == report["streams"] else 1


if __name__ == "__main__":
    sys.exit(main())
