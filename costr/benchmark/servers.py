"""The servers `costr bench` measures: the fake upstream in fast mode, a gateway keeping its
books in SQLite, and (for the postgres path) a second gateway on PostgreSQL in a scratch schema
that is dropped afterwards. Each runs as its own process on 127.0.0.1 with a fresh port.

The children get the environment without COSTR_* variables, so a COSTR_DATABASE_URL (or cache,
limits, plugins...) set in the shell neither receives the benchmark's keys nor changes what is
measured."""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from costr.benchmark.processes import BenchmarkError, Child, free_port
from costr.testing.fake_upstream import write_gateway_config

POSTGRES_URL = os.environ.get("COSTR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CREDITS_USD = "1000000"


def child_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("COSTR_")}


def start_fake(stack: contextlib.ExitStack, tmp: Path) -> tuple[str, Child]:
    port = free_port()
    fake = stack.enter_context(Child("the fake upstream", [
        sys.executable, "-m", "costr.testing.fake_upstream", "--port", str(port), "--fast"],
        tmp / "fake.log", env=child_environment()))
    url = f"http://127.0.0.1:{port}"
    fake.wait_ready(f"{url}/v1/models")
    return url, fake


def create_key(name: str, store: list[str], credits: bool = True) -> str:
    """`costr keys create` on the store given as ["--data-dir", D] or ["--database", URL]."""
    argv = [sys.executable, "-m", "costr", "keys", "create", "--name", name, *store]
    if credits:
        argv += ["--credits", CREDITS_USD]
    done = subprocess.run(argv, capture_output=True, text=True, env=child_environment(),
                          timeout=60, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"costr keys create failed: {done.stderr.strip()}")
    return done.stdout.strip()


def start_gateway(stack: contextlib.ExitStack, tmp: Path, fake_url: str, name: str,
                  store: list[str]) -> tuple[str, Child]:
    """`costr serve` against the fake, its state in `store` (as for create_key)."""
    providers, policies = write_gateway_config(tmp, fake_url)
    port = free_port()
    gateway = stack.enter_context(Child(name, [
        sys.executable, "-m", "costr", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--providers", str(providers), "--policies", str(policies), *store],
        tmp / f"{name.replace(' ', '-')}.log", env=child_environment()))
    url = f"http://127.0.0.1:{port}"
    gateway.wait_ready(f"{url}/v1/router/health")
    return url, gateway


@contextlib.contextmanager
def postgres_scratch(base_url: str = POSTGRES_URL):
    """A URL whose search_path is a fresh schema, dropped (with every key and ledger row the
    run made) on the way out; yields (None, reason) when no PostgreSQL answers."""
    try:
        import asyncpg
    except ImportError:
        yield None, "asyncpg is not installed"
        return
    schema = f"costr_bench_{secrets.token_hex(4)}"
    try:
        asyncio.run(_execute(base_url, f"CREATE SCHEMA {schema}"))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        yield None, f"PostgreSQL at {urlsplit(base_url).hostname} did not answer ({exc})"
        return
    try:
        yield f"{base_url}{'&' if '?' in base_url else '?'}search_path={schema}", ""
    finally:
        asyncio.run(_execute(base_url, f"DROP SCHEMA {schema} CASCADE"))


async def _execute(url: str, statement: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
