"""What a request costs, and what it saved against the baseline model."""
from __future__ import annotations

from typing import TYPE_CHECKING

from costr.wire.conversation import Usage
from costr.wire.providers import ModelSpec

if TYPE_CHECKING:
    from costr.config.surcharges import Charges


def cost_usd(model: ModelSpec, usage: Usage, charges: Charges | None = None,
             worst_case: bool = False) -> float:
    """Cached input at its cached rate, cache writes at theirs, the rest at list price; with
    the surcharges of the billing features the request carried (`charges`), if any
    (`worst_case`: the most they can add, for a credit hold)."""
    price = model.price
    cached = usage.cached_input_tokens
    written = usage.cache_write_tokens
    fresh = max(usage.input_tokens - cached - written, 0)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    input_usd = (fresh * price.input + cached * cached_rate + written * write_rate) / 1_000_000
    output_usd = usage.output_tokens * price.output / 1_000_000
    if charges is None:
        return input_usd + output_usd
    return charges.usd(model, usage, input_usd, output_usd, worst_case)


def savings_percent(model: ModelSpec, baseline: ModelSpec, usage: Usage) -> float:
    """100 * (1 - cost / baseline cost) on the same usage; negative when dearer than baseline."""
    base = cost_usd(baseline, usage)
    if base <= 0:
        return 0.0
    return round(100.0 * (1.0 - cost_usd(model, usage) / base), 1)


def expected_usage(prompt_tokens: int, max_tokens: int | None) -> Usage:
    """A stand-in usage before the answer is known (dry-run, stream headers, ordering)."""
    return Usage(input_tokens=prompt_tokens, output_tokens=min(max_tokens or 512, 512), estimated=True)
