"""`costr feedback export`: rated requests whose prompt was kept, as training records."""
from __future__ import annotations

import argparse
import asyncio
import sys

from costr.accounts.feedback_export import export_lines
from costr.accounts.store import StoreUnavailable, open_store
from costr.cli.options import database_options
from costr.errors import CostrError

def add_feedback_parser(subparsers) -> argparse.ArgumentParser:
    """Add `feedback` and its subcommand `export` to a `costr` subparsers object."""
    feedback = subparsers.add_parser("feedback", help="export rated requests as training records")
    sub = feedback.add_subparsers(dest="feedback_command", required=True)
    export = sub.add_parser("export", parents=[database_options()],
                            help="rated requests whose prompt was kept, as JSONL records")
    export.add_argument("--since", type=float, metavar="DAYS",
                        help="only requests made in the last DAYS days (default: all kept)")
    export.add_argument("--key-id", metavar="ID_OR_PREFIX", help="only this key's requests")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    return feedback


def run_feedback(args: argparse.Namespace) -> int:
    """Run a parsed `costr feedback export`; returns the exit status."""
    async def export() -> tuple[list[bytes], int]:
        store = await open_store(args.database, args.data_dir)
        try:
            return await export_lines(store, args.since, args.key_id)
        finally:
            await store.close()
    try:
        lines, skipped = asyncio.run(export())
    except (StoreUnavailable, CostrError) as exc:
        print(f"costr feedback: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, "wb") as out:
            out.writelines(lines)
    else:
        sys.stdout.buffer.writelines(lines)
        sys.stdout.flush()
    print(f"exported {len(lines)} rated request(s); {skipped} rated request(s) had no kept "
          "prompt (keep_prompts off, a named model, no answer, or past keep_days)", file=sys.stderr)
    return 0
