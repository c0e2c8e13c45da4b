"""`costr init [--dir DIR] [--force]`: write editable copies of the shipped providers.yaml and
routing_policies/ into a folder, where `costr serve` and `costr check` then find them."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from costr.cli.hints import costr_command
from costr.config.shipped import POLICIES_NAME, PROVIDERS_NAME, shipped_files


def add_init_parser(subparsers) -> argparse.ArgumentParser:
    """Add `init` to a `costr` subparsers object."""
    p = subparsers.add_parser("init", help="write editable copies of the shipped providers.yaml "
                              "and routing_policies/ into the current folder")
    p.add_argument("--dir", default=".", help="the folder to write into (default: the current one)")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")
    return p


def run_init(args: argparse.Namespace) -> int:
    """Run a parsed `costr init`; returns the exit status."""
    target = Path(args.dir)
    copies = [(source, target / relative) for source, relative in shipped_files()]
    existing = [str(dest) for _, dest in copies if dest.exists()]
    if existing and not args.force:
        print(f"costr init: not overwriting {', '.join(existing)}; nothing was written. Rerun "
              "with --force to replace them with the shipped files.", file=sys.stderr)
        return 2
    try:
        for source, dest in copies:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _copy(source, dest)
    except OSError as exc:
        print(f"costr init: cannot write {exc.filename or target}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(_next_step(target))
    return 0


def _copy(source: Path, dest: Path) -> None:
    try:
        shutil.copyfile(source, dest)   # follows the links a source checkout ships: real copies
    except shutil.SameFileError:   # in the repository itself, the shipped file *is* this one
        print(f"kept {dest} (it is the shipped file itself)")
        return
    print(f"wrote {dest}")


def _next_step(target: Path) -> str:
    if os.path.abspath(target) == os.getcwd():
        return (f"`{costr_command()} serve` run in this folder now reads these; after editing "
                f"them, `{costr_command()} check` validates them.")
    return (f"Serve them with `{costr_command()} serve --providers {target / PROVIDERS_NAME} "
            f"--policies {target / POLICIES_NAME}`, or from that folder.")
