"""The fault drill: `python -m costr.benchmark.fault_drill [--quick] [--soak MINUTES]`.

Starts three Costr instances on one PostgreSQL and Redis behind nginx running
deploy/nginx.conf, with two fake upstreams serving one budget model each
(costr/benchmark/drill_cluster.py), puts them under a steady, bounded load from clients on
127.0.0.1 (drill_load.py), and then, one after the other: kills an upstream, makes one hang,
has one cut its streams short, SIGTERMs an instance, and restarts PostgreSQL. It prints what it
did, what the clients saw, what was expected, and whether it was (exit status 1 when a row is
NOT OK). `--soak MINUTES` instead runs a moderate load that long and reports each instance's
resident memory at the start, middle and end. docs/operations.md, "Fault drill", has a run.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from costr.benchmark.drill_cluster import Cluster, rss_mb
from costr.benchmark.drill_load import Load, Outcome, by_label, recovered_after, summary
from costr.benchmark.drill_books import Books, ledger_gaps


@dataclass
class Pace:
    """How long each scenario runs: --quick (CI, under a minute) or the full drill."""
    concurrency: int
    warmup: float
    fault: float        # how long an upstream stays dead or hung
    deadline: float     # routing.deadline_seconds
    cooldown: float     # routing.breaker.cooldown_seconds
    truncated: int      # streams cut short
    postgres_down: float
    observe: float      # load kept on after a fault ends, to see the recovery


TRUNCATE_ROUNDS = 3
QUICK = Pace(concurrency=6, warmup=2, fault=5, deadline=1.5, cooldown=4, truncated=6,
             postgres_down=1.5, observe=3)
FULL = Pace(concurrency=12, warmup=5, fault=12, deadline=3, cooldown=8, truncated=20,
            postgres_down=3, observe=8)
DRAIN_SECONDS = 5.0   # above nginx's 4 s keep-alive to the instances (deploy/nginx.conf)


@dataclass
class Row:
    scenario: str
    did: str
    saw: str
    expected: str
    ok: bool


class Drill:
    def __init__(self, cluster: Cluster, load: Load, books: Books, pace: Pace):
        self.cluster, self.load, self.books, self.pace = cluster, load, books, pace

    async def wait_for_traffic_on(self, provider: str, timeout: float) -> float | None:
        """Seconds until requests are answered by `provider` again, None if not in time."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            recent = [o for o in self.load.since(time.monotonic() - 1.0) if o.ended]
            if any(o.provider == provider and o.ok for o in recent):
                return time.monotonic() - start
            await asyncio.sleep(0.2)
        return None

    async def kill_upstream(self) -> Row:
        t0 = time.monotonic()
        await asyncio.to_thread(self.cluster.kill_upstream, "up-a")
        await asyncio.sleep(self.pace.fault)
        seen = await self.load.settled(t0)
        await self.cluster.restart_upstream("up-a")
        back = await self.wait_for_traffic_on("up-a", self.pace.cooldown + 10)
        on_b = [o.started - t0 for o in seen if o.ok and o.provider == "up-b"]
        moved = min(on_b) if on_b else None
        errors = [o for o in seen if not o.ok]
        saw = (f"{summary(seen)}; first answer from up-b {_s(moved)} after the kill; "
               f"{sum(o.provider == 'up-b' for o in seen if o.ok)}/{len(seen)} via up-b; "
               f"traffic back on up-a {_s(back)} after its restart")
        return Row("kill upstream", f"SIGKILL fake up-a for {self.pace.fault:g} s, restart it",
                   saw, "traffic moves to up-b within 5 s; at most 3 client errors",
                   moved is not None and moved < 5 and len(errors) <= 3)

    async def hang_upstream(self) -> Row:
        p = self.pace
        t0 = time.monotonic()
        await self.cluster.set_fault("up-a", "hang")
        seen_open: set[int] = set()   # the instances whose up-a breaker was seen open
        end = t0 + p.fault
        while time.monotonic() < end:
            for i, detail in enumerate(await self.cluster.instance_health()):
                if _breaker_state(detail, "up-a") == "open":
                    seen_open.add(i)
            await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))
        t1 = time.monotonic()
        await self.cluster.set_fault("up-a", "ok")
        seen = await self.load.settled(t0, t1)
        back = await self.wait_for_traffic_on("up-a", p.cooldown + 10)
        timeouts = [o for o in seen if o.status == 504]
        others = [o for o in seen if not o.ok and o.status != 504]
        slowest = max((o.seconds for o in timeouts), default=0.0)
        # Each instance's breaker opens after 3 failures; by then every client has met the
        # deadline at most twice. Later 504s can only be half-open probes.
        settle = 2 * p.deadline + 1
        late = [o for o in timeouts if o.started > t0 + settle]
        probes = len(self.cluster.instances) * math.ceil(p.fault / p.cooldown)
        late_ok = [o for o in seen if o.started > t0 + settle and o.ok]
        instances = len(self.cluster.instances)
        saw = (f"{summary(seen)}; slowest 504 {_s(slowest)}; {len(late)} 504s after the first "
               f"{settle:g} s; up-a's breaker seen open on {len(seen_open)}/{instances} "
               f"instances; {len(late_ok)} answered via up-b after {settle:g} s; traffic back "
               f"on up-a {_s(back)} after the hang ended")
        expected = (f"only 504s, each within the {p.deadline:g} s deadline (+1 s); none after "
                    f"{settle:g} s but half-open probes (<= {probes}); breaker open everywhere; "
                    "then 200s via up-b")
        ok = (not others and bool(timeouts) and slowest <= p.deadline + 1
              and len(late) <= probes and len(seen_open) == instances and bool(late_ok))
        return Row("hang upstream", f"up-a accepts and never answers for {p.fault:g} s",
                   saw, expected, ok)

    async def truncate_streams(self) -> Row:
        count = self.pace.truncated
        t0 = time.monotonic()
        # Half the load streams, but which answers up-a cuts is chance: should a round cut
        # only JSON answers (which fall back to up-b unseen), cut another, up to three.
        for _ in range(TRUNCATE_ROUNDS):
            await self._cut_answers(count)
            seen = await self.load.settled(t0)
            cut = [o for o in seen if o.stream and o.provider == "up-a" and not o.ok]
            if cut:
                break
        silent = [o for o in cut if not o.error_event]
        rows = await self.books.ledger([o.request_id for o in cut if o.request_id])
        full_tokens = math.ceil((len(self.load.answer) + 13) / 4)
        overcharged = [o for o in cut if o.request_id in rows and (
            rows[o.request_id]["status"] == 200 or
            rows[o.request_id]["output_tokens"] > math.ceil(o.delivered_chars / 4) + 2)]
        missing = [o for o in cut if o.request_id not in rows]
        others = [o for o in seen if not o.ok and o not in cut]
        statuses = sorted({r["status"] for r in rows.values()})
        saw = (f"{summary(seen)}; {len(cut)} streams cut by up-a: {len(cut) - len(silent)} ended "
               f"with an error event, {len(silent)} silently; ledger: statuses {statuses}, "
               f"output tokens {_tokens(cut, rows)} of {full_tokens} for a whole answer; "
               f"{len(overcharged)} charged beyond what was delivered, {len(missing)} missing")
        return Row("truncated stream", f"up-a cuts its next {count} answers short (streams: "
                   "after a few events; JSON: half the body)", saw,
                   "every cut stream ends with an error event and is charged for what was "
                   "delivered only; cut JSON answers fall back to up-b (200)",
                   bool(cut) and not silent and not overcharged and not missing and not others)

    async def _cut_answers(self, count: int) -> None:
        """Have up-a cut its next `count` answers short; wait until it has (20 s at most)."""
        before = (await self.cluster.set_fault("up-a", "truncate", count=count))["injected"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            fault = await _fault_state(self.cluster, "up-a")
            if fault["injected"] - before >= count:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)

    async def sigterm_instance(self) -> Row:
        instance = self.cluster.instances[1]
        t0 = time.monotonic()
        instance.signal(signal.SIGTERM)
        code = await asyncio.to_thread(instance.proc.wait, self.cluster.drain + 40)
        took = time.monotonic() - t0
        await asyncio.sleep(1.0)
        seen = await self.load.settled(t0 - 0.5)
        answered = [o.request_id for o in seen if o.ok and o.request_id]
        missing = await ledger_gaps(self.books, answered)
        await self.cluster.restart_instance(1)
        saw = (f"{summary(seen)}; {instance.name} drained and exited in {took:.1f} s (status "
               f"{code}); {len(answered) - len(missing)}/{len(answered)} answered request ids "
               f"in the ledger")
        return Row("SIGTERM instance", f"SIGTERM {instance.name} under load (--drain-seconds "
                   f"{self.cluster.drain:g}), start it again", saw,
                   "no reset and no error at any client; every answered request in the ledger",
                   all(o.ok for o in seen) and not missing)

    async def restart_postgres(self) -> Row:
        p = self.pace
        t0 = time.monotonic()
        watch = asyncio.create_task(self.books.watch_balance())
        await asyncio.to_thread(self.cluster.postgres.down)
        down_at = time.monotonic()
        await asyncio.sleep(p.postgres_down)
        await asyncio.to_thread(self.cluster.postgres.up)
        up_at = time.monotonic()
        await asyncio.sleep(p.observe)
        watch.cancel()
        seen = await self.load.settled(t0)
        failed = [o for o in seen if not o.ok]
        unclear = [o for o in failed if o.status is None or o.status == 500 or not o.failure]
        recovery = recovered_after(seen, up_at)
        lowest = self.books.lowest_balance
        saw = (f"{summary(seen)}; database down {up_at - down_at:.1f} s; "
               f"{len(unclear)} failures without a clear error; last failure "
               f"{_s(recovery)} after it was back; lowest balance "
               f"{'-' if lowest is None else f'${lowest / 1e6:,.4f}'}{_failures(failed)}")
        return Row("restart PostgreSQL", f"stop the database {p.postgres_down:g} s, start it",
                   saw, "failures are clear errors (503, never 500 or a reset); recovered "
                   "within 5 s of the restart; balance never negative",
                   not unclear and recovery is not None and recovery <= 5
                   and (lowest is None or lowest >= 0))

    async def whole_run(self) -> list[Row]:
        seen = [o for o in self.load.outcomes if o.ended]
        answered = [o.request_id for o in seen if o.ok and o.request_id]
        missing = await ledger_gaps(self.books, answered)
        balance, reserved = await self.books.settled_balance()
        ledger = Row("whole drill: ledger", "compare every client's answers with the ledger",
                     f"{summary(seen)}; {len(answered) - len(missing)}/{len(answered)} answered "
                     f"ids in the ledger; key balance ${balance / 1e6:,.4f}",
                     "every answered request in the ledger; balance >= 0",
                     not missing and balance >= 0)
        holds = Row("whole drill: holds", "read the key's credit held, 10 s after the load "
                    "stopped", f"still held ${reserved / 1e6:,.6f}",
                    "nothing held: every request's hold settled or released", reserved == 0)
        return [ledger, holds]


async def _fault_state(cluster: Cluster, upstream: str) -> dict:
    import aiohttp
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cluster.fake_urls[upstream]}/_fault") as response:
            return await response.json()


def _breaker_state(detail: dict, provider: str) -> str:
    """The provider's breaker state in the admin health detail (under `breakers.providers`,
    or under the provider itself), or "not reported"."""
    places = [((detail.get("breakers") or {}).get("providers") or {}).get(provider),
              ((detail.get("providers") or {}).get(provider) or {}).get("breaker")]
    found = next((p for p in places if isinstance(p, dict) and "state" in p), None)
    return str(found["state"]) if found else "not reported"


def _tokens(cut: list[Outcome], rows: dict) -> str:
    values = sorted(rows[o.request_id]["output_tokens"] for o in cut if o.request_id in rows)
    return f"{values[0]}-{values[-1]}" if values else "-"


def _failures(failed: list[Outcome]) -> str:
    """The distinct things failed requests said, most frequent first (at most three)."""
    said = Counter(f"{o.label}: {o.failure or 'no error message'}"[:120] for o in failed)
    return "".join(f"; {n}x {text}" for text, n in said.most_common(3))


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


async def run_drill(cluster: Cluster, pace: Pace) -> list[Row]:
    load = Load(cluster.url, cluster.key, concurrency=pace.concurrency)
    books = Books(cluster.database)
    await books.open()
    await load.start()
    rows = []
    try:
        await asyncio.sleep(pace.warmup)
        drill = Drill(cluster, load, books, pace)
        for scenario in (drill.kill_upstream, drill.hang_upstream, drill.truncate_streams,
                         drill.sigterm_instance, drill.restart_postgres):
            rows.append(await scenario())
            await asyncio.sleep(1.0)
    finally:
        await load.stop()
    await asyncio.sleep(1.0)   # the ledger writers' last batch
    rows += await drill.whole_run()
    await books.close()
    return rows


async def run_soak(cluster: Cluster, minutes: float, concurrency: int) -> list[list[str]]:
    load = Load(cluster.url, cluster.key, concurrency=concurrency, pause=0.05)
    await load.start()
    samples: dict[str, list[float | None]] = {i.name: [] for i in cluster.instances}
    counts, total = {}, 0
    def fold() -> None:
        """Count the finished requests and forget them: bounded memory in a long soak."""
        nonlocal total
        done = [o for o in load.outcomes if o.ended]
        for label, n in by_label(done).items():
            counts[label] = counts.get(label, 0) + n
        total += len(done)
        load.outcomes[:] = [o for o in load.outcomes if not o.ended]
    try:
        await asyncio.sleep(30)   # warm: imports, pools and caches settle first
        load.outcomes[:] = [o for o in load.outcomes if not o.ended]
        for step in range(3):
            for instance in cluster.instances:
                samples[instance.name].append(rss_mb(instance.proc.pid))
            if step < 2:
                end = time.monotonic() + minutes * 30
                while time.monotonic() < end:
                    await asyncio.sleep(min(10.0, max(0.0, end - time.monotonic())))
                    fold()
    finally:
        await load.stop()
    fold()
    requests = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
    table = [["instance", "RSS start (MB)", "middle", "end", "growth"]]
    for name, (start, middle, end) in samples.items():
        growth = f"{end - start:+.1f} MB" if start and end else "-"
        table.append([name, *(f"{v:.1f}" if v else "gone" for v in (start, middle, end)), growth])
    table.append([f"{total} requests in {minutes:g} min: {requests}", "", "", "", ""])
    return table


def markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table[1:]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costr.benchmark.fault_drill",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each scenario for a few seconds "
                        "(the CI test runs this: under a minute)")
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="run a moderate load this "
                        "long and report each instance's memory instead of the scenarios")
    parser.add_argument("--concurrency", type=int, help="clients (default: 6 quick, 12 full, "
                        "4 for --soak)")
    parser.add_argument("--postgres-url", help="drill this PostgreSQL server (a fresh database "
                        "is created on it and dropped) instead of a private one")
    parser.add_argument("--postgres-restart", default="pg_ctlcluster 15 main restart",
                        help="with --postgres-url: the command that restarts it")
    parser.add_argument("--drain-seconds", type=float, default=DRAIN_SECONDS,
                        help=f"the instances' --drain-seconds (default {DRAIN_SECONDS:g})")
    parser.add_argument("--keep", action="store_true", help="keep the logs folder")
    args = parser.parse_args(argv)
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        print("fault drill: nginx is not installed (apt-get install nginx)", file=sys.stderr)
        return 2
    pace = QUICK if args.quick else FULL
    if args.concurrency:
        pace = replace(pace, concurrency=args.concurrency)
    folder = Path(tempfile.mkdtemp(prefix="costr-drill-"))
    cluster = Cluster(folder, deadline=pace.deadline, cooldown=pace.cooldown,
                      drain=args.drain_seconds, postgres_url=args.postgres_url,
                      postgres_restart=args.postgres_restart)
    try:
        cluster.start()
        if args.soak:
            print(markdown(asyncio.run(run_soak(cluster, args.soak, args.concurrency or 4))))
            return 0
        rows = asyncio.run(run_drill(cluster, pace))
    except Exception:
        for child in [cluster.nginx, *cluster.instances, *cluster.fakes.values()]:
            if child is not None:
                print(f"--- {child.name} ({child.log}):\n{child.tail()}", file=sys.stderr)
        raise
    finally:
        cluster.close()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(markdown([["scenario", "what it did", "what it saw", "expected", "OK"],
                    *[[r.scenario, r.did, r.saw, r.expected, "OK" if r.ok else "NOT OK"]
                      for r in rows]]))
    if args.keep:
        print(f"logs: {folder}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
