"""Keys, credits, the ledger, feedback and (opt-in) kept prompts: the records Costr keeps, and
the store that keeps them.

Money is held as integer micro-dollars (1 USD = 1,000,000) so balances add up exactly.
A key's secret is `cr-` plus 43 URL-safe random characters; only its SHA-256 is stored, with a
short prefix kept for display.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Protocol

MICROS = 1_000_000
KEY_PREFIX = "cr-"
DISPLAY_CHARS = 10  # "cr-" and the first 7 random characters


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_CHARS]


def usd_to_micros(usd: float) -> int:
    return round(usd * MICROS)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str                  # stable id (hex), never the secret
    name: str
    prefix: str              # display prefix, e.g. "cr-AbC12xY"
    admin: bool = False
    balance_micros: int | None = None   # None: unlimited
    reserved_micros: int = 0
    rpm: int | None = None   # requests per minute, None: no limit
    tpm: int | None = None   # tokens per minute, None: no limit
    revoked: bool = False
    created_at: float = 0.0

    @property
    def unlimited(self) -> bool:
        return self.balance_micros is None


@dataclass(slots=True)
class LedgerRecord:
    """One request, whatever became of it."""
    id: str                      # the request id, returned to the client as x-request-id
    key_id: str
    ts: float                    # when the request arrived (epoch seconds)
    day: str                     # its UTC date, YYYY-MM-DD
    family: str                  # the API format, e.g. openai-chat
    requested_model: str = ""
    routed_model: str = ""
    provider: str = ""
    tier: str | None = None
    policy: str | None = None
    complexity: float | None = None
    confidence: float | None = None
    policy_rule: str | None = None   # the policy rule that decided the tier (x_routing.rule)
    routing_signals: str | None = None   # the scorer's signals, compact JSON
    fallbacks: str | None = None     # the models that failed before the answer, "model: why; ..."
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    usage_estimated: bool = False
    cost_micros: int = 0         # what the answer cost at the model's prices
    charged_micros: int = 0      # what the key was debited (never above what was reserved)
    baseline_micros: int = 0     # what the baseline model would have cost on the same usage
    savings_percent: float = 0.0
    cache_hit: bool = False
    cache_saved_micros: int = 0  # on a cache hit: what the answer cost when it was first made
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200            # the status the client received
    upstream_status: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CreditHold:
    """Credit held against a limited key for one request, from before the upstream is called
    until the request is settled. Its owner renews it while the request lives; a hold past
    `expires_at` was left by an instance that stopped without settling, and is released
    (store_holds.py, docs/accounts.md)."""
    id: str                  # the request id (x-request-id)
    key_id: str
    micros: int
    owner: str               # the id of the instance that holds it (a uuid per process)
    expires_at: float        # epoch seconds


@dataclass(slots=True)
class Feedback:
    request_id: str
    key_id: str
    rating: int
    comment: str = ""
    ts: float = 0.0


@dataclass(slots=True)
class KeptPrompt:
    """An answered, auto-routed request's conversation, kept (opt-in) so a rating of it can
    train a scorer. Never headers or keys: only the messages, text only."""
    request_id: str
    key_id: str
    ts: float                    # when the request arrived, as in its ledger record
    messages: str                # JSON: chat messages as in routing-eval records (kept_prompts.py)


@dataclass(slots=True)
class RatedRequest:
    """A rated request as the ledger tells it (the latest rating), with its kept conversation,
    or None when it was not kept."""
    request_id: str
    key_id: str
    ts: float
    routed_model: str
    tier: str | None
    policy: str | None
    complexity: float | None
    rating: int
    messages: list[dict] | None


class Store(Protocol):
    """Where keys, credits, the ledger, feedback and kept prompts live: SQLite or PostgreSQL.
    Every method is safe under concurrency, across processes sharing the database."""

    async def migrate(self) -> None:
        """Apply the versioned schema migrations not yet applied."""

    async def close(self) -> None: ...

    # keys
    async def create_key(self, key: ApiKey, secret_hash: str) -> None: ...

    async def key_by_hash(self, secret_hash: str) -> ApiKey | None: ...

    async def key_by_id_or_prefix(self, ident: str) -> ApiKey | None: ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def count_keys(self) -> int: ...

    async def revoke_key(self, key_id: str) -> bool: ...

    async def top_up(self, key_id: str, micros: int) -> int | None:
        """Add credit; returns the new balance (None for an unlimited key)."""

    # credits
    async def reserve(self, hold: CreditHold) -> bool:
        """Atomically hold `hold.micros` against the key's balance if balance - reserved covers
        it, and keep the hold, in one step."""

    async def settle(self, hold: CreditHold, charge_micros: int,
                     record: LedgerRecord | None = None) -> None:
        """In one step: drop the hold (releasing what it still holds: nothing if it expired and
        was released), debit `charge_micros` (at most the hold) and write `record` to the
        ledger, so a charge is never without its record."""

    async def settle_many(self, settles: list[tuple[CreditHold, int, LedgerRecord | None]]) -> None:
        """`settle(hold, charge_micros, record)` for each, all in one transaction."""

    async def renew_holds(self, owner: str, hold_ids: list[str], expires_at: float) -> int:
        """Push back the expiry of these holds of `owner`; returns how many were found."""

    async def release_expired_holds(self, now: float) -> tuple[int, int]:
        """Release every hold expired by `now`, whoever held it; returns (holds, micros)."""

    # ledger
    async def write_ledger(self, records: list[LedgerRecord]) -> None: ...

    async def usage_by_day(self, key_id: str | None, start_day: str, end_day: str) -> list[dict]:
        """Rows {day, requests, input_tokens, output_tokens, cached_tokens, cost_usd,
        baseline_cost_usd, savings_usd, savings_percent}, oldest first."""

    async def stats(self, key_id: str | None, since_ts: float) -> list[dict]:
        """Per (tier, model) since `since_ts`: requests, errors, cost_usd, baseline_cost_usd,
        savings_percent, cache_hits, cache_hit_rate, p50_latency_ms, p95_latency_ms,
        feedback_count, mean_rating."""

    async def requests_page(self, key_id: str | None, limit: int,
                            before_ts: float | None) -> list[LedgerRecord]: ...

    async def ledger_record(self, request_id: str) -> LedgerRecord | None: ...

    async def add_feedback(self, feedback: Feedback) -> None: ...

    # kept prompts
    async def keep_prompts(self, prompts: list[KeptPrompt]) -> None: ...

    async def forget_prompts_before(self, ts: float) -> int:
        """Delete the prompts of requests made before `ts`; returns how many."""

    async def rated_requests(self, since_ts: float, key_id: str | None) -> list[RatedRequest]:
        """Rated requests made since `since_ts` (of one key, or every key), oldest first."""
