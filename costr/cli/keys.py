"""`costr keys`: create, list, revoke and top up API keys.

revoke and top-up find the key by id, display prefix or name (`costr keys top-up alice`); a
name two keys share is refused with the list of them, to pick by id.

`costr keys create` prints the new key alone on stdout, so `KEY=$(costr keys create --name x)`
works; everything else it says goes to stderr. The key is shown once: only its hash is stored.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone

from costr.accounts.keys import AmbiguousKey, KeyValueRefused, find_key, issue_key, top_up_key
from costr.accounts.records import MICROS, ApiKey, Store
from costr.cli.options import database_options
from costr.accounts.store import StoreUnavailable, open_store


def add_keys_parser(subparsers) -> argparse.ArgumentParser:
    """Add `keys` and its subcommands to a `costr` subparsers object."""
    database = database_options()
    keys = subparsers.add_parser("keys", help="create, list, revoke and top up API keys")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", parents=[database],
                            help="create a key and print it (alone, on stdout)")
    create.add_argument("--name", required=True)
    create.add_argument("--credits", type=float, metavar="USD",
                        help="starting credit in USD (default: unlimited)")
    create.add_argument("--rpm", type=int, help="requests per minute (default: no limit)")
    create.add_argument("--tpm", type=int, help="tokens per minute (default: no limit)")
    create.add_argument("--admin", action="store_true", help="may use the admin endpoints")
    sub.add_parser("list", parents=[database], help="list keys (prefixes, never secrets)")
    revoke = sub.add_parser("revoke", parents=[database], help="revoke a key")
    revoke.add_argument("ident", metavar="KEY", help="id, display prefix or name")
    top_up = sub.add_parser("top-up", parents=[database], help="add credit to a key")
    top_up.add_argument("ident", metavar="KEY", help="id, display prefix or name")
    top_up.add_argument("--usd", type=float, required=True, metavar="AMOUNT")
    return keys


def run_keys(args: argparse.Namespace) -> int:
    """Run a parsed `costr keys ...` command; returns the exit status."""
    command = {"create": _create, "list": _list, "revoke": _revoke,
               "top-up": _top_up}[args.keys_command]
    problem = _check_numbers(args)
    if problem:
        print(f"costr keys: {problem}", file=sys.stderr)
        return 2

    async def run() -> int:
        store = await open_store(args.database, args.data_dir)
        try:
            return await command(store, args)
        finally:
            await store.close()
    try:
        return asyncio.run(run())
    except (StoreUnavailable, KeyValueRefused) as exc:
        print(f"costr keys: {exc}", file=sys.stderr)
        return 2


def _check_numbers(args) -> str | None:
    if getattr(args, "credits", None) is not None and args.credits < 0:
        return "--credits cannot be negative"
    if getattr(args, "usd", None) is not None and args.usd <= 0:
        return "--usd must be more than 0"
    for option in ("rpm", "tpm"):
        if (getattr(args, option, None) or 0) < 0:
            return f"--{option} cannot be negative"
    return None


async def _create(store: Store, args) -> int:
    key, secret = await issue_key(store, args.name, credits_usd=args.credits, rpm=args.rpm,
                                  tpm=args.tpm, admin=args.admin)
    print(secret)
    print(f"created key {key.id} ({key.prefix}...) named {key.name!r}, credits "
          f"{usd(key.balance_micros)}{', admin' if key.admin else ''}; "
          "this is the only time the key is shown", file=sys.stderr)
    return 0


def usd(micros: int | None) -> str:
    return "unlimited" if micros is None else f"{micros / MICROS:.6f}"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


async def _list(store: Store, args) -> int:
    header = ("id", "name", "prefix", "admin", "balance_usd", "reserved_usd", "rpm", "tpm",
              "revoked", "created_utc")
    rows = [header] + [
        (k.id, k.name, k.prefix, "yes" if k.admin else "no", usd(k.balance_micros),
         f"{k.reserved_micros / MICROS:.6f}", "-" if k.rpm is None else str(k.rpm),
         "-" if k.tpm is None else str(k.tpm), "yes" if k.revoked else "no", _when(k.created_at))
        for k in await store.list_keys()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


async def _find(store: Store, ident: str) -> ApiKey | None:
    try:
        key = await find_key(store, ident)
    except AmbiguousKey as exc:
        print(f"costr keys: {exc}", file=sys.stderr)
        return None
    if key is None:
        print(f"costr keys: no single key has the id, prefix or name {ident!r} "
              "(see `costr keys list`)", file=sys.stderr)
    return key


async def _revoke(store: Store, args) -> int:
    key = await _find(store, args.ident)
    if key is None:
        return 1
    if not await store.revoke_key(key.id):
        print(f"key {key.id} ({key.prefix}...) was already revoked")
        return 0
    print(f"revoked key {key.id} ({key.prefix}...)")
    return 0


async def _top_up(store: Store, args) -> int:
    key = await _find(store, args.ident)
    if key is None:
        return 1
    if key.unlimited:
        print(f"costr keys: key {key.id} ({key.prefix}...) has unlimited credit; "
              "nothing to top up", file=sys.stderr)
        return 1
    balance = await top_up_key(store, key, args.usd)
    print(f"key {key.id} ({key.prefix}...) balance now {usd(balance)} USD")
    return 0
