"""What a request costs, and what it saved against the baseline model."""
from __future__ import annotations

from costr.wire.conversation import Usage
from costr.wire.providers import ModelSpec


def cost_usd(model: ModelSpec, usage: Usage) -> float:
    """Cached input at its cached rate, cache writes at theirs, the rest at list price."""
    price = model.price
    cached = usage.cached_input_tokens
    written = usage.cache_write_tokens
    fresh = max(usage.input_tokens - cached - written, 0)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    return (fresh * price.input + cached * cached_rate + written * write_rate
            + usage.output_tokens * price.output) / 1_000_000


def savings_percent(model: ModelSpec, baseline: ModelSpec, usage: Usage) -> float:
    """100 * (1 - cost / baseline cost) on the same usage; negative when dearer than baseline."""
    base = cost_usd(baseline, usage)
    if base <= 0:
        return 0.0
    return round(100.0 * (1.0 - cost_usd(model, usage) / base), 1)


def expected_usage(prompt_tokens: int, max_tokens: int | None) -> Usage:
    """A stand-in usage before the answer is known (dry-run, stream headers, ordering)."""
    return Usage(input_tokens=prompt_tokens, output_tokens=min(max_tokens or 512, 512), estimated=True)
