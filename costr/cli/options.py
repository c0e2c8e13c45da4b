"""Options several commands share: where the configuration and the stored state live."""
from __future__ import annotations

import argparse
import os

from costr.config.shipped import default_policies, default_providers


def database_options() -> argparse.ArgumentParser:
    """`--database` and `--data-dir`, shared by every command that touches stored state."""
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database", default=os.environ.get("COSTR_DATABASE_URL"),
                          help="postgresql://... or sqlite:///PATH for keys, credits and the "
                               "ledger (env COSTR_DATABASE_URL; default: SQLite in the data directory)")
    database.add_argument("--data-dir", default=os.environ.get("COSTR_DATA_DIR"),
                          help="where the default SQLite database lives "
                               "(env COSTR_DATA_DIR; default ./data)")
    return database


def add_config_arguments(parser) -> None:
    """--providers and --policies for a command that reads the configuration."""
    parser.add_argument("--providers", default=default_providers(),
                        help="providers file (env COSTR_PROVIDERS; default ./providers.yaml when "
                             "it exists, else the shipped one; `costr init` copies it here)")
    parser.add_argument("--policies", default=default_policies(),
                        help="policies directory (env COSTR_POLICIES; default ./routing_policies "
                             "when it exists, else the shipped one; `costr init` copies it here)")


def add_scores_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scores", metavar="FILE", help="use these scores instead of the "
                        "scorer's, one {\"id\": ..., \"score\": ...} a line, matched by record "
                        "id (or \"line N\"): the held-out scores `costr train-scorer "
                        "--oof-scores` writes, for a scorer trained on this same data")


def add_labelled_data_arguments(parser: argparse.ArgumentParser) -> None:
    """What a command routing labelled records reads besides them: the configuration, the
    evaluated models' prices, and optionally scores given from outside the scorer."""
    add_config_arguments(parser)
    parser.add_argument("--prices", default=None,
                        help="model prices for the evaluated models (default: the bundled table)")
    add_scores_argument(parser)


def add_observability_arguments(serve: argparse.ArgumentParser) -> None:
    """How `costr serve` logs and where it serves its metrics (docs/operations.md)."""
    serve.add_argument("--log-format", choices=["text", "json"],
                       default=os.environ.get("COSTR_LOG_FORMAT", "text"),
                       help="text (default): plain log lines; json: every log line a JSON "
                            "object, plus an access line per request (env COSTR_LOG_FORMAT)")
    port = os.environ.get("COSTR_METRICS_PORT")
    serve.add_argument("--metrics-port", type=int, default=int(port) if port else None,
                       help="serve GET /metrics without a key on this port (and not on the "
                            "API's port); default: on the API's port, to admin keys only "
                            "(env COSTR_METRICS_PORT)")
    serve.add_argument("--metrics-host", default=os.environ.get("COSTR_METRICS_HOST", "127.0.0.1"),
                       help="the address --metrics-port listens on (default 127.0.0.1; "
                            "env COSTR_METRICS_HOST)")
