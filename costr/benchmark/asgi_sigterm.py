"""How a server running Costr stops on SIGTERM with a slow request in flight: whether the request
is answered, whether a new request is still taken, whether the app's lifespan shutdown ran (it
writes the ledger and closes the store), and how long the server took to exit. Part of
`python -m costr.benchmark.asgi_servers`.

The fake upstream waits DELAY_MS before answering; SIGTERM goes to the server's own process
(as `docker stop` or Kubernetes send it) SIGNAL_AFTER seconds into the request. The lifespan
shutdown's last step closes the SQLite store, and closing SQLite's last connection removes the
write-ahead log file, so a -wal file left behind after the exit means the shutdown never
finished. The request's ledger record is then looked up by its x-request-id.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from costr.benchmark.asgi_candidates import Server, running
from costr.benchmark.run import Child, free_port
from costr.benchmark.servers import child_environment, create_key

DELAY_MS = 2000
SIGNAL_AFTER = 0.5      # seconds into the in-flight request
LATE_AFTER = 0.2        # seconds after SIGTERM, a new request on a new connection
EXIT_TIMEOUT = 40.0     # uvicorn's graceful shutdown under `costr serve` allows 30 s
DB_FILE = "costr.db"


def check_sigterm(tmp: Path, servers: list[Server]) -> dict[str, dict]:
    """{server name: what happened}, each server on its own data directory and key."""
    port = free_port()
    with Child("the slow fake upstream", [
            sys.executable, "-m", "costr.testing.fake_upstream", "--port", str(port), "--fast",
            "--delay-ms", str(DELAY_MS)], tmp / "slow-fake.log", env=child_environment()) as fake:
        fake_url = f"http://127.0.0.1:{port}"
        fake.wait_ready(f"{fake_url}/v1/models")
        return {server.name: sigterm_in_flight(server, tmp, fake_url) for server in servers}


def sigterm_in_flight(server: Server, tmp: Path, fake_url: str) -> dict:
    print(f"{server.name}: SIGTERM with a request in flight", file=sys.stderr, flush=True)
    data_dir = tmp / f"sigterm-{server.name}"
    key = create_key(f"sigterm-{server.name}", ["--data-dir", str(data_dir)])
    with running(server, tmp, fake_url, data_dir) as (url, child):
        port = int(url.rsplit(":", 1)[1])
        in_flight = Request(port, key, "in flight")
        in_flight.start()
        time.sleep(SIGNAL_AFTER)
        signalled = time.monotonic()
        child.process.send_signal(signal.SIGTERM)
        time.sleep(LATE_AFTER)
        late = Request(port, key, "sent after SIGTERM")
        late.start()
        try:
            exit_code = child.process.wait(EXIT_TIMEOUT)
            exit_seconds = round(time.monotonic() - signalled, 2)
        except subprocess.TimeoutExpired:
            exit_code, exit_seconds = None, None   # `running` kills it on the way out
        in_flight.join(5)
        late.join(5)
        log = child.log_path.read_text(errors="replace")
    wal = data_dir / f"{DB_FILE}-wal"
    store_closed = exit_code is not None and not (wal.exists() and wal.stat().st_size > 0)
    record = _ledger_status(data_dir / DB_FILE, in_flight.request_id)
    return {"in_flight": in_flight.outcome, "late_request": late.outcome,
            "ledger_record": record, "lifespan_shutdown_finished": store_closed,
            "exit_code": exit_code, "seconds_to_exit": exit_seconds,
            "traceback_in_log": "Traceback" in log}


class Request(threading.Thread):
    """One non-streamed chat request with a unique prompt; `outcome` says how it ended."""

    def __init__(self, port: int, key: str, label: str):
        super().__init__(daemon=True)
        self.port, self.key, self.label = port, key, label
        self.outcome = "not finished"
        self.request_id: str | None = None

    def run(self) -> None:
        body = json.dumps({"model": "auto", "messages": [
            {"role": "user", "content": f"Say hello ({self.label}, {time.time_ns()})."}]})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=EXIT_TIMEOUT)
        try:
            conn.request("POST", "/v1/chat/completions", body, {
                "Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
            response = conn.getresponse()
            answer = response.read()
            self.request_id = response.getheader("x-request-id")
            answered = response.status == 200 and b'"choices"' in answer
            self.outcome = "answered 200" if answered else f"{response.status}: {answer[:200]!r}"
        except (OSError, http.client.HTTPException) as exc:
            self.outcome = f"failed: {type(exc).__name__}: {exc}"
        finally:
            conn.close()


def _ledger_status(database: Path, request_id: str | None) -> str:
    """Whether the ledger in the SQLite file `database` has the request's record (read-only,
    after the server has gone)."""
    if request_id is None:
        return "no request id (not answered)"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT 1 FROM ledger WHERE id = ?", (request_id,)).fetchone()
    return "written" if row else "missing"


def markdown_rows(results: dict[str, dict]) -> list[str]:
    """The SIGTERM findings as a Markdown table, one row per server."""
    lines = [(f"SIGTERM {SIGNAL_AFTER:g} s into a request the upstream answers after "
              f"{DELAY_MS / 1000:g} s:"),
             "",
             (f"| Server | In-flight request | New request {LATE_AFTER:g} s after | Ledger record "
              "| Lifespan shutdown finished | Exit code | Seconds to exit |"),
             "|---|---|---|---|---|---:|---:|"]
    for name, found in results.items():
        finished = "yes" if found["lifespan_shutdown_finished"] else "no"
        lines.append(f"| {name} | {found['in_flight']} | {found['late_request']} | "
                     f"{found['ledger_record']} | {finished} | {found['exit_code']} | "
                     f"{found['seconds_to_exit']} |")
    return lines
