"""Fixtures that build a Costr app from a temporary config and serve it on loopback."""
from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from costr.cli.keys import add_keys_parser, run_keys
from costr.testing import running_gateway
from costr.testing.fake_upstream import FakeUpstream

REPO = Path(__file__).resolve().parents[1]

LOCAL_POOL = """\
tiers: [budget, standard, premium]
baseline: local-large
providers:
  local: {{type: openai, base_url: "{url}/v1"}}
models:
  - {{id: local-mini, provider: local, tier: budget, price: {{input: 0.1, output: 0.4}},
     context_window: 128000, max_output_tokens: 8192, capabilities: [tools, json_output]}}
  - {{id: local-standard, provider: local, tier: standard, price: {{input: 0.5, output: 2.0}},
     context_window: 128000, max_output_tokens: 16384, capabilities: [tools, vision, json_output]}}
  - {{id: local-large, provider: local, tier: premium, price: {{input: 3.0, output: 15.0, cached_input: 0.3}},
     context_window: 200000, max_output_tokens: 32000, capabilities: [tools, vision, json_output, reasoning]}}
"""


def write_config(directory: Path, providers_yaml: str) -> tuple[Path, Path]:
    """providers.yaml from text, plus a copy of the shipped routing_policies/."""
    providers = directory / "providers.yaml"
    providers.write_text(providers_yaml)
    policies = directory / "routing_policies"
    if not policies.exists():
        shutil.copytree(REPO / "routing_policies", policies)
    return providers, policies


@pytest.fixture
def fake_upstream():
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def local_gateway(tmp_path, fake_upstream):
    """A gateway whose only provider is an `openai`-type fake upstream on loopback."""
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    with running_gateway(providers, policies) as base_url:
        yield base_url


POSTGRES_URL = os.environ.get("COSTR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def fresh_postgres_schema():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards; the test is
    skipped, with the reason, when no PostgreSQL answers."""
    import asyncpg

    where = urlsplit(POSTGRES_URL)._replace(netloc=urlsplit(POSTGRES_URL).hostname or "").geturl()
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {where}: {exc}")
    schema = f"t_{secrets.token_hex(6)}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


# ---- a store on each database: SQLite, and the local PostgreSQL in a scratch schema -------------

@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'costr.db'}"
        return
    async with fresh_postgres_schema() as url:
        yield url


@pytest.fixture
async def store(db_url):
    from costr.accounts.store import open_store
    opened = await open_store(db_url)
    yield opened
    await opened.close()


@pytest.fixture
def keys(tmp_path, monkeypatch, capsys):
    """Run `costr keys ARGS` on a data directory of its own; returns (status, out, err)."""
    monkeypatch.delenv("COSTR_DATABASE_URL", raising=False)
    monkeypatch.setenv("COSTR_DATA_DIR", str(tmp_path / "data"))

    def run(*argv: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser(prog="costr")
        add_keys_parser(parser.add_subparsers(dest="command", required=True))
        status = run_keys(parser.parse_args(["keys", *argv]))
        out, err = capsys.readouterr()
        return status, out, err
    return run
