"""Logs as operators collect them: `costr serve --log-format json` writes every log line as one
JSON object, and adds an access line per HTTP request (logger `costr.access`) with the request
id, the key's id (never the key), where the request was routed, its tokens, cost and timing.
`--log-format text`, the default, keeps the plain lines and writes no access lines."""
from __future__ import annotations

import logging
import time

import orjson

from costr.accounts.records import MICROS
from costr.server.observability import Served

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
access = logging.getLogger("costr.access")
# A request that never reached the books (refused before, or not a model request) has these
# fields too, empty, so every access line has the same keys.
NOT_ON_THE_BOOKS = dict.fromkeys((
    "key_id", "requested_model", "routed_model", "provider", "tier", "policy", "cache_hit",
    "input_tokens", "output_tokens", "cost_usd", "ttft_ms", "fallbacks", "error"))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (UTC, ISO 8601), level, logger, message, the fields an
    access line carries, and the traceback of an exception logged with one."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": _iso(record.created), "level": record.levelname.lower(),
               "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, "access", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def configure_logging(level: str, log_format: str) -> bool:
    """Set up the root logger for `costr serve`; True when uvicorn should leave logging alone
    (json: its lines go through the root logger too), False when it keeps its own format."""
    if log_format == "json":
        # A line per request: spare each one the process look-ups no JSON line shows.
        logging.logProcesses = logging.logMultiprocessing = False
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(level.upper())
        return True
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
    return False


def log_access(served: Served) -> None:
    """The access line of one finished request."""
    if not access.isEnabledFor(logging.INFO):
        return
    fields = {"request_id": None, "method": served.method, "path": served.path,
              "endpoint": served.endpoint, "status": served.status,
              "latency_ms": round(served.seconds * 1000, 2), **NOT_ON_THE_BOOKS,
              "key_id": served.key_id}
    entry = served.entry
    if entry is not None:
        r = entry.record
        fields.update({
            "request_id": r.id, "key_id": r.key_id, "requested_model": r.requested_model or None,
            "routed_model": r.routed_model or None, "provider": r.provider or None,
            "tier": r.tier, "policy": r.policy, "cache_hit": r.cache_hit,
            "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "cost_usd": r.cost_micros / MICROS, "ttft_ms": r.ttft_ms, "fallbacks": r.fallbacks,
            "error": r.error})
    access.info("%s %s %s", served.method, served.path, served.status, extra={"access": fields})
