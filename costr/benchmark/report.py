"""How `costr bench` reports its figures."""
from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

AGENT_TOKENS = 100_000

ROWS = [("Latency p50, 1 client (ms)", "p50_ms", "{:.2f}"),
        ("Latency p99, 1 client (ms)", "p99_ms", "{:.2f}"),
        ("Throughput, {c} clients (req/s)", "requests_per_second", "{:.0f}"),
        ("Streamed: first byte p50, 1 client (ms)", "stream_ttfb_p50_ms", "{:.2f}"),
        ("Streamed: whole answer p50, 1 client (ms)", "stream_total_p50_ms", "{:.2f}"),
        ("Server CPU per request, {c} clients (ms)", "cpu_ms_per_request", "{:.3f}"),
        ("Server CPU per streamed request, {c} clients (ms)", "stream_cpu_ms_per_request", "{:.3f}"),
        ("Cache hit: latency p50, 1 client (ms)", "cache_hit_p50_ms", "{:.2f}"),
        ("Cache hit: server CPU per request, {c} clients (ms)", "cache_hit_cpu_ms_per_request", "{:.3f}"),
        ("Bare handling (dry-run): server CPU per request, {c} clients (ms)",
         "dry_run_cpu_ms_per_request", "{:.3f}"),
        (f"Agent request, {AGENT_TOKENS // 1000}k tokens, dry-run: latency p50, 1 client (ms)",
         "agent_dry_run_p50_ms", "{:.2f}"),
        (f"Agent request, {AGENT_TOKENS // 1000}k tokens, dry-run: server CPU per request (ms)",
         "agent_dry_run_cpu_ms_per_request", "{:.3f}")]


def markdown_table(direct, gateway, concurrency: int, requests: int, concurrent_requests: int,
                   warmup: int) -> str:
    """The figures as a Markdown table: direct, through Costr, and the difference."""
    lines = ["| | direct to upstream | through Costr | added by Costr |", "|---|---:|---:|---:|"]
    for label, key, fmt in ROWS:
        a = getattr(direct, key)
        b = getattr(gateway, key) if gateway else None
        through = fmt.format(b) if b is not None else "n/a"
        signed = fmt.replace("{:", "{:+")
        added = "" if b is None or a is None or key == "requests_per_second" else signed.format(
            b if key.endswith("cpu_ms_per_request") else b - a)  # the gateway's CPU is all added
        direct_text = fmt.format(a) if a is not None else "n/a"
        lines.append(f"| {label.format(c=concurrency)} | {direct_text} | {through} | {added} |")
    if gateway and gateway.cache_hit_cpu_ms_per_request is not None:
        over = gateway.cache_hit_cpu_ms_per_request - gateway.dry_run_cpu_ms_per_request
        lines.append(f"| Cache hit over bare handling: CPU per request (ms) | | | {over:+.3f} |")
    lines.append("")
    lines.append(f"{requests} requests per 1-client figure after {warmup} warm-up requests, "
                 f"{concurrent_requests} per {concurrency}-client figure; {machine()}. "
                 "The upstream is costr's fake in fast mode, on the same machine; \"Server CPU\" is "
                 "the fake's own CPU when direct and the gateway's alone when through Costr.")
    return "\n".join(lines)


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python {platform.python_version()}"
