"""The Costr app built from environment variables, for an ASGI server that takes an app factory
rather than a `costr serve` command line: `granian --interface asgi --factory
costr.testing.asgi_factory:app_from_environment` (costr/benchmark/asgi_servers.py measures it
so). Only the files and data directory come from the environment; everything else has the
defaults `costr serve` gives it."""
from __future__ import annotations

import os
from pathlib import Path

PROVIDERS_ENV = "COSTR_FACTORY_PROVIDERS"
POLICIES_ENV = "COSTR_FACTORY_POLICIES"
DATA_DIR_ENV = "COSTR_FACTORY_DATA_DIR"


def app_from_environment():
    """The app `costr serve` builds from the providers file in $COSTR_FACTORY_PROVIDERS, the
    policies directory in $COSTR_FACTORY_POLICIES and the data directory in
    $COSTR_FACTORY_DATA_DIR, wrapped in the same drain gate (no server but `costr serve` starts
    a drain, so under another the gate only passes requests through)."""
    from costr.server.app import create_app
    from costr.server.draining import Draining, drain_gate
    app = create_app(providers_path=Path(os.environ[PROVIDERS_ENV]),
                     policies_dir=Path(os.environ[POLICIES_ENV]),
                     data_dir=os.environ[DATA_DIR_ENV])
    return drain_gate(app, Draining())
