"""The configuration Costr ships with, and which files a command reads when none is named.

The shipped providers.yaml and routing_policies/ are package data under `defaults/` (in the
repository, links to the top-level files operators edit), so an installed Costr starts from
any folder; a file of the same name in the current folder, or the environment, wins.
"""
from __future__ import annotations

import os
from pathlib import Path

SHIPPED = Path(__file__).parent / "defaults"
SHIPPED_PROVIDERS = SHIPPED / "providers.yaml"
SHIPPED_POLICIES = SHIPPED / "routing_policies"
PROVIDERS_NAME, POLICIES_NAME = SHIPPED_PROVIDERS.name, SHIPPED_POLICIES.name


def default_providers(environ=os.environ) -> str:
    """env COSTR_PROVIDERS, else ./providers.yaml when it exists, else the shipped file."""
    return _default(environ.get("COSTR_PROVIDERS"), Path(PROVIDERS_NAME), SHIPPED_PROVIDERS)


def default_policies(environ=os.environ) -> str:
    """env COSTR_POLICIES, else ./routing_policies when it exists, else the shipped folder."""
    return _default(environ.get("COSTR_POLICIES"), Path(POLICIES_NAME), SHIPPED_POLICIES)


def _default(from_env: str | None, here: Path, shipped: Path) -> str:
    if from_env:
        return from_env
    return str(here) if here.exists() else str(shipped)


def is_shipped(path: str | os.PathLike) -> bool:
    """Whether `path` names the shipped file or folder itself (compared without following the
    links, so the repository's own top-level files, which they point at, are not 'shipped')."""
    return os.path.abspath(path) in (os.path.abspath(SHIPPED_PROVIDERS),
                                     os.path.abspath(SHIPPED_POLICIES))


def shipped_files() -> list[tuple[Path, Path]]:
    """(source, path relative to a target folder) for every shipped file, in the order an
    operator reads them: providers.yaml, then each policy."""
    policies = sorted(SHIPPED_POLICIES.glob("*.yaml"))
    return [(SHIPPED_PROVIDERS, Path(PROVIDERS_NAME)),
            *((p, Path(POLICIES_NAME) / p.name) for p in policies)]
