"""How `costr bench` reports its figures: a Markdown table per server kind (Costr's paths, then
the peers), or all of it as JSON."""
from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from costr.benchmark.measure import Figures
from costr.testing.bench_requests import BY_NAME

ByClients = dict[int, Figures]


@dataclass
class Results:
    """Everything one run measured. `direct`: the upstream alone, keyed by the path whose
    request was sent to it; `paths`: through Costr; `peers`: peer name -> path -> figures;
    `skipped`: path or peer -> why it was not measured."""
    requests: int
    concurrent_requests: int
    concurrency: int
    warmup: int
    date: str
    command: str
    direct: dict[str, ByClients] = field(default_factory=dict)
    paths: dict[str, ByClients] = field(default_factory=dict)
    peers: dict[str, dict[str, ByClients]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def baseline(self, path: str, clients: int) -> Figures | None:
        twin = BY_NAME[path].upstream_twin
        return self.direct.get(twin, {}).get(clients) if twin else None

    def added(self, path: str, figures: Figures) -> tuple[float | None, float | None]:
        """(added p50, added first byte p50) over the upstream alone at the same client count."""
        base = self.baseline(path, figures.clients)
        if base is None:
            return None, None
        first = (figures.first_byte_p50_ms - base.first_byte_p50_ms
                 if figures.first_byte_p50_ms is not None and base.first_byte_p50_ms is not None
                 else None)
        return figures.p50_ms - base.p50_ms, first

    def cpu_ratio(self, peer_path: str, figures: Figures) -> float | None:
        """A peer's CPU per request over Costr's on the same path and client count."""
        costr = self.paths.get(peer_path, {}).get(figures.clients)
        return figures.cpu_ms_per_request / costr.cpu_ms_per_request if costr and \
            costr.cpu_ms_per_request else None

    def hit_over_bare(self, clients: int) -> float | None:
        hit, bare = self.paths.get("hit", {}).get(clients), self.paths.get("dry-run", {}).get(clients)
        return hit.cpu_ms_per_request - bare.cpu_ms_per_request if hit and bare else None


def _ms(value: float | None, signed: bool = False, digits: int = 2) -> str:
    return "" if value is None else f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def markdown(results: Results) -> str:
    lines = [("| Path | Clients | CPU ms/request | p50 ms | p99 ms | Added p50 | First byte p50 | "
              "Added first byte | req/s |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for twin, by_clients in results.direct.items():
        for figures in by_clients.values():
            lines.append(_row(f"upstream alone ({twin} request)", figures, (None, None)))
    for path, by_clients in results.paths.items():
        for figures in by_clients.values():
            lines.append(_row(path, figures, results.added(path, figures)))
    lines.append("")
    for clients in (1, results.concurrency):
        over = results.hit_over_bare(clients)
        if over is not None:
            lines.append(f"Cache hit over bare handling (hit minus dry-run), {clients} "
                         f"client{'s' * (clients > 1)}: {over:+.3f} ms of CPU per request.")
    if results.peers:
        lines += ["", ("| Peer | Path | Clients | Requests | CPU ms/request | p50 ms | p99 ms | "
                       "First byte p50 | req/s | CPU vs Costr |"),
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for peer, paths in results.peers.items():
            for path, by_clients in paths.items():
                for f in by_clients.values():
                    ratio = results.cpu_ratio(path, f)
                    lines.append(f"| {peer} | {path} | {f.clients} | {f.requests} | "
                                 f"{_ms(f.cpu_ms_per_request, digits=3)} | {_ms(f.p50_ms)} | "
                                 f"{_ms(f.p99_ms)} | {_ms(f.first_byte_p50_ms)} | "
                                 f"{f.requests_per_second:,.0f} | "
                                 f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    if results.skipped or lines[-1]:
        lines.append("")
    lines += [f"Skipped {name}: {reason}." for name, reason in results.skipped.items()]
    lines.append(_footnote(results))
    return "\n".join(lines)


def _row(label: str, f: Figures, added: tuple[float | None, float | None]) -> str:
    return (f"| {label} | {f.clients} | {_ms(f.cpu_ms_per_request, digits=3)} | {_ms(f.p50_ms)} | "
            f"{_ms(f.p99_ms)} | {_ms(added[0], signed=True)} | {_ms(f.first_byte_p50_ms)} | "
            f"{_ms(added[1], signed=True)} | {f.requests_per_second:,.0f} |")


def _footnote(results: Results) -> str:
    return (f"{results.requests} requests per 1-client figure and {results.concurrent_requests} per "
            f"{results.concurrency}-client figure, after {results.warmup} warm-up requests from "
            "one client (agent-dry-run: 1/20 of all three; a peer: the share its rows show). CPU is the "
            "server's own (its process, threads and children, from /proc): the fake upstream's "
            "in the upstream-alone rows, the gateway's in the others. \"Added\" is through Costr "
            "minus the upstream alone at the same client count, sent the request the gateway "
            "itself sends it (chat completions, to which the gateway translates the other client "
            "format), which the fake answers from precomputed bytes.\n"
            f"{results.date} UTC; {machine()}; command: `{results.command}`")


def as_json(results: Results) -> dict:
    def figures(f: Figures, path: str | None = None, peer: bool = False) -> dict:
        out = {k: None if v is None else round(v, 4) for k, v in asdict(f).items()}
        if path is not None and not peer:
            out["added_p50_ms"], out["added_first_byte_p50_ms"] = (
                None if v is None else round(v, 4) for v in results.added(path, f))
        if peer:
            ratio = results.cpu_ratio(path, f)
            out["cpu_vs_costr"] = None if ratio is None else round(ratio, 3)
        return out

    def by_clients(figs: ByClients, path=None, peer=False) -> dict:
        return {str(c): figures(f, path, peer) for c, f in figs.items()}

    return {"date": results.date, "machine": machine(), "python": platform.python_version(),
            "command": results.command, "requests": results.requests,
            "concurrent_requests": results.concurrent_requests, "concurrency": results.concurrency,
            "warmup": results.warmup,
            "direct": {twin: by_clients(f) for twin, f in results.direct.items()},
            "paths": {path: by_clients(f, path) for path, f in results.paths.items()},
            "peers": {peer: {path: by_clients(f, path, peer=True) for path, f in paths.items()}
                      for peer, paths in results.peers.items()},
            "cache_hit_over_bare_cpu_ms": {
                str(c): round(v, 4) for c in (1, results.concurrency)
                if (v := results.hit_over_bare(c)) is not None},
            "skipped": results.skipped}


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python {platform.python_version()}"
