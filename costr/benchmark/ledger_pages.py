"""`python -m costr.benchmark.ledger_pages`: how fast the dashboard answers on a large ledger.

Fills a ledger with --requests requests over --days days across --keys keys (by default
1,000,000, 90 and 1,000) in SQLite (a temporary file) and in PostgreSQL (a schema of its own,
dropped afterwards), at the schema of a Costr from before the dashboard; upgrades it as
`costr serve` would (timing migration 5, the daily rollup's backfill and the call history's
indexes); then runs the app in this process (httpx's ASGI transport: no network, so a figure is
the server's own time) and times each page signed in as the admin key and as a user key: the
overview, the call history's first page, a filtered page (tier, model and a date range), a
filter that matches nothing and a sparse one (neither with a date range), a deep page (reached
by following 20 "older" links) and the first bytes of the CSV export. Each figure
is the median of --repeat fetches after one warm-up fetch.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import html
import os
import re
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import anyio
import httpx

from costr.benchmark.report import machine
from costr.testing.synthetic_ledger import (app_in_process, bulk_load, ledger_rows,
                                            refresh_planner_statistics, synthetic_keys, upgrade)

POSTGRES_URL = os.environ.get("COSTR_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
DEEP = 20
TARGET_MS = 100
BASE = "http://costr.bench"
OLDER_LINK = re.compile(r'<a[^>]*id="page-older"[^>]*href="([^"]+)"|'
                        r'<a[^>]*href="([^"]+)"[^>]*id="page-older"')


@dataclass
class DatabaseRun:
    name: str
    load_s: float = 0.0
    upgrade_s: float = 0.0
    pages: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (page, who) -> ms


async def _signed_in_client(app, secret: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    form = (await client.get("/dashboard/login")).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = await client.post("/dashboard/login",
                               data={"key": secret, "csrf_token": token, "next": "/"})
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in failed: {answer.status_code}")
    return client


async def _timed_get(client: httpx.AsyncClient, path: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code}")
    return elapsed, response


async def _deep_path(client: httpx.AsyncClient, first: str) -> str:
    """The page reached from `first` by following its "older" link DEEP times."""
    path = first
    for _ in range(DEEP):
        page = (await client.get(path)).text
        found = OLDER_LINK.search(page)
        if not found:
            raise RuntimeError(f"no older page after {path}")
        path = html.unescape(found.group(1) or found.group(2))
        path = urlsplit(path)._replace(scheme="", netloc="").geturl()
    return path


async def _csv_first_bytes(app, client: httpx.AsyncClient, path: str) -> float:
    """Milliseconds until the export's first body bytes; the rest of the export is cancelled
    (httpx's ASGI transport would wait for all of it, so the app is called directly)."""
    target = urlsplit(path)
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": target.path, "raw_path": target.path.encode(),
             "query_string": target.query.encode(), "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("costr.bench", 80),
             "headers": [(b"host", b"costr.bench"), (b"cookie", cookie.encode())]}
    first_bytes, finished = anyio.Event(), anyio.Event()
    status: list[int] = []
    request_sent = False

    async def receive():
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message.get("body"):
            first_bytes.set()

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(app, scope, receive, send)
        await first_bytes.wait()
        elapsed = (time.perf_counter() - started) * 1000
        finished.set()
        tasks.cancel_scope.cancel()
    if status != [200]:
        raise RuntimeError(f"GET {path}: {status}")
    return elapsed


def _pages(today) -> dict[str, str]:
    month_ago, two_months_ago = today - timedelta(days=30), today - timedelta(days=60)
    filtered = urlencode({"tier": "standard", "model": "fake-standard",
                          "from": two_months_ago.isoformat(), "to": month_ago.isoformat()})
    return {"Overview": "/dashboard",
            "Overview, all keys": "/dashboard?key_id=all",
            "Call history, page 1": "/dashboard/requests",
            "Call history, filtered": f"/dashboard/requests?{filtered}",
            # no date range, and nothing matches: the rollup answers, not a walk of the ledger
            "Call history, filter matching nothing": "/dashboard/requests?" + urlencode(
                {"tier": "premium", "model": "fake-mini"}),
            "Call history, sparse filter (failed, premium)": "/dashboard/requests?" + urlencode(
                {"status": "error", "tier": "premium"}),
            f"Call history, page {DEEP + 1}": "",   # found by following links from page 1
            "CSV export, first bytes": "/dashboard/requests.csv"}


async def _measure(app, run: DatabaseRun, who: str, secret: str, repeat: int, admin: bool) -> None:
    client = await _signed_in_client(app, secret)
    try:
        pages = _pages(datetime.now(timezone.utc).date())
        pages[f"Call history, page {DEEP + 1}"] = await _deep_path(client, "/dashboard/requests")
        for label, path in pages.items():
            if label == "Overview, all keys" and not admin:
                continue
            times = []
            for attempt in range(repeat + 1):
                if label.startswith("CSV"):
                    elapsed = await _csv_first_bytes(app, client, path)
                else:
                    elapsed, _ = await _timed_get(client, path)
                if attempt:   # the first fetch warms caches up
                    times.append(elapsed)
            run.pages[(label, who)] = times
    finally:
        await client.aclose()


async def _run_database(name: str, url: str, keys, rows, repeat: int, workdir: Path) -> DatabaseRun:
    run = DatabaseRun(name)
    started = time.perf_counter()
    await bulk_load(url, keys, rows)
    run.load_s = time.perf_counter() - started
    started = time.perf_counter()
    await upgrade(url)
    run.upgrade_s = time.perf_counter() - started
    await refresh_planner_statistics(url)
    async with app_in_process(url, workdir) as app:
        await _measure(app, run, "admin", keys[0].secret, repeat, admin=True)
        await _measure(app, run, "user", keys[1].secret, repeat, admin=False)
    return run


async def _postgres_schema(base_url: str):
    """A fresh schema for the run and the URL that uses it, or None when no server answers."""
    import asyncpg
    try:
        conn = await asyncpg.connect(base_url, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL at {urlsplit(base_url).hostname}: not reachable ({exc}); skipped")
        return None
    schema = f"costr_bench_{secrets.token_hex(4)}"
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.close()
    return schema, f"{base_url}{'&' if '?' in base_url else '?'}search_path={schema}"


async def _drop_schema(base_url: str, schema: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(base_url, timeout=5)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


def report(runs: list[DatabaseRun], requests: int, days: int, keys: int, repeat: int,
           generate_s: float) -> str:
    columns = [(run, who) for run in runs for who in ("admin", "user")]
    lines = ["| Page (median ms, slowest in brackets) | "
             + " | ".join(f"{run.name}, {who}" for run, who in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    labels = list(dict.fromkeys(label for run in runs for label, _ in run.pages))
    for label in labels:
        cells = []
        for run, who in columns:
            times = run.pages.get((label, who))
            cells.append(f"{statistics.median(times):.1f} ({max(times):.1f})" if times else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for run in runs:
        lines.append(f"{run.name}: loading the ledger {run.load_s:.1f} s, upgrading it "
                     f"(migration 5: rollup backfill and indexes) {run.upgrade_s:.1f} s.")
    busiest = 100 / sum(1 / n for n in range(1, keys + 1))   # the keys' shares go as 1/n
    lines.append(f"{requests:,} requests over {days} days across {keys:,} keys (generated in "
                 f"{generate_s:.1f} s); admin: the busiest key ({busiest:.0f}% of the requests), "
                 f"user: the second busiest ({busiest / 2:.0f}%); median of {repeat} fetches after "
                 f"one warm-up; the app in this process; PostgreSQL ANALYZEd after the load, as "
                 f"autovacuum soon would, SQLite without statistics, as Costr leaves it; "
                 f"{machine()}. Target: overview and filtered page under {TARGET_MS} ms.")
    return "\n".join(lines)


async def run_benchmark(args) -> str:
    now = time.time()
    started = time.perf_counter()
    keys = synthetic_keys(args.keys, now)
    rows = ledger_rows(args.requests, args.days, keys, now)
    generate_s = time.perf_counter() - started
    gc.freeze()   # a million rows kept for the second database: not for every collection to walk
    print(f"generated {len(rows):,} ledger rows in {generate_s:.1f} s", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="costr-ledger-bench-") as scratch:
        workdir = Path(scratch)
        if "sqlite" in args.databases:
            runs.append(await _run_database("SQLite", f"sqlite:///{workdir / 'costr.db'}", keys,
                                            rows, args.repeat, workdir))
            print(f"SQLite done: loaded in {runs[-1].load_s:.1f} s", flush=True)
        if "postgresql" in args.databases and (made := await _postgres_schema(args.postgres_url)):
            schema, url = made
            try:
                runs.append(await _run_database("PostgreSQL", url, keys, rows, args.repeat,
                                                workdir))
            finally:
                await _drop_schema(args.postgres_url, schema)
    return report(runs, args.requests, args.days, args.keys, args.repeat, generate_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costr.benchmark.ledger_pages",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=20, help="timed fetches per page")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="a PostgreSQL database to make a scratch schema in "
                             "(default: $COSTR_TEST_POSTGRES_URL or %(default)s)")
    args = parser.parse_args(argv)
    if args.keys < 2:
        parser.error("--keys must be at least 2 (an admin and a user)")
    print(asyncio.run(run_benchmark(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
