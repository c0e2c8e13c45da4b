"""The servers a benchmark starts, as child processes, and the CPU they use (from /proc)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

READY_TIMEOUT = 30.0


class BenchmarkError(Exception):
    pass


def attempt(work, what: str = "benchmark"):
    """`(0, work())`; or, when it fails with a BenchmarkError or is interrupted (Ctrl-C,
    SIGTERM), `(1 or 130, None)` with one line on stderr saying so."""
    try:
        return 0, work()
    except BenchmarkError as exc:
        print(f"{what} failed: {exc}", file=sys.stderr)
        return 1, None
    except KeyboardInterrupt:
        print(f"{what} interrupted", file=sys.stderr)
        return 130, None


class Child:
    """A server process, its output kept in a log file, stopped however the benchmark ends."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name, self.log_path = name, log_path
        with open(log_path, "wb") as log:
            # Own session: a Ctrl-C reaches only us, and we stop the children in order.
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_die_with_parent, env=env)

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the process and whatever it started: it leads a process group of its own, so
        workers a server forks (LiteLLM's, say) are stopped with it."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        self._signal_group(signal.SIGKILL)   # any of its own processes still left

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, url: str, timeout: float = READY_TIMEOUT) -> None:
        """Poll `url` until it answers 200; fail early if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            time.sleep(0.1)
        raise BenchmarkError(f"{self.name} did not answer {url} within {timeout:.0f}s:\n{self.log_tail()}")

    def wait_listening(self, port: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until something accepts connections on 127.0.0.1:`port` (uvicorn listens only
        once the application has started)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            time.sleep(0.1)
        raise BenchmarkError(f"{self.name} did not listen on port {port} within {timeout:.0f}s:\n"
                             f"{self.log_tail()}")

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchmarkError(f"{self.name} exited with {self.process.returncode}:\n"
                                 f"{self.log_tail()}")


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
