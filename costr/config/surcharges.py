"""What the billing-changing parts of a request cost (costr.wire.billing_features), and what
becomes of those the operator has not priced: providers.yaml's `billing:` section.

```yaml
billing:
  on_unpriced: refuse            # refuse (400 naming the field) | strip | allow
  surcharges:                    # by the name the API format gives the feature
    priority_processing: {multiplier: 2.0}
    long_context: {multiplier: {input: 2.0, output: 1.5}, above_input_tokens: 200000}
    web_search: {per_use: 0.01}
    code_execution: {per_request: 0.005}
  models:                        # per model id: replaces the entries above it names
    gpt-5.5: {priority_processing: {multiplier: 2.5}}
```

A feature counts only for a model whose upstream receives it: one speaking the client's own
format, to which the request passes through. The credit held for a limited key covers the
worst case: every multiplier applied, every use the request allows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from costr.errors import InvalidRequest
from costr.wire.billing_features import BillingFeature
from costr.wire.conversation import ChatRequest, Usage

if TYPE_CHECKING:
    from costr.wire.providers import ModelSpec

Multiplier = Annotated[float, Field(gt=0, le=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MultiplierEntry(_Strict):
    input: Multiplier = 1.0    # on input tokens, cached and cache writes included
    output: Multiplier = 1.0


class SurchargeEntry(_Strict):
    """One feature's price; an empty entry (`{}`) prices it at nothing beyond its tokens."""
    multiplier: Multiplier | MultiplierEntry = 1.0   # on the model's per-token prices
    above_input_tokens: int | None = Field(default=None, ge=0)   # the multiplier's threshold
    per_use: float = Field(default=0.0, ge=0, le=1000)       # USD per use the upstream reports
    per_request: float = Field(default=0.0, ge=0, le=1000)   # USD per request carrying it

    def multipliers(self) -> tuple[float, float]:
        m = self.multiplier
        return (m, m) if isinstance(m, (int, float)) else (m.input, m.output)


class BillingEntry(_Strict):
    on_unpriced: Literal["refuse", "strip", "allow"] = "refuse"
    surcharges: dict[str, SurchargeEntry] = {}
    models: dict[str, dict[str, SurchargeEntry]] = {}

    def price(self, name: str, model_id: str) -> SurchargeEntry | None:
        """The price of feature `name` on this model, or None when the operator set none."""
        per_model = self.models.get(model_id)
        if per_model is not None and name in per_model:
            return per_model[name]
        return self.surcharges.get(name)


def billing_problems(billing: BillingEntry, model_ids: Iterable[str]) -> list[tuple[tuple, str]]:
    """(key path, reason) for each `billing.models` entry naming no model."""
    known = set(model_ids)
    return [(("billing", "models", name), f"{name!r} is not a model id listed under models")
            for name in billing.models if name not in known]


@dataclass(frozen=True, slots=True)
class Charges:
    """The billing features a request carries to its upstream, as the operator prices them."""
    features: tuple[BillingFeature, ...]   # one per name
    billing: BillingEntry
    forwarded_to: frozenset[str]           # ids of the models whose upstream receives them

    def usd(self, model: ModelSpec, usage: Usage, input_usd: float, output_usd: float,
            worst_case: bool = False) -> float:
        """The request's cost on `model`, given its tokens' cost at list price. `worst_case`:
        the most it can come to, for the credit hold (every multiplier that can raise the cost
        applied, every use the request allows)."""
        if model.id not in self.forwarded_to:
            return input_usd + output_usd
        extra = 0.0
        for feature in self.features:
            price = self.billing.price(feature.name, model.id)
            if price is None:
                continue
            m_in, m_out = price.multipliers()
            threshold = price.above_input_tokens
            if worst_case and threshold is not None:   # the prompt may yet turn out longer
                m_in, m_out = max(m_in, 1.0), max(m_out, 1.0)
            if worst_case or threshold is None or usage.input_tokens > threshold:
                input_usd, output_usd = input_usd * m_in, output_usd * m_out
            uses = (feature.max_uses or 0) if worst_case else \
                usage.server_tool_uses.get(feature.name, 0)
            extra += uses * price.per_use + price.per_request
        return input_usd + output_usd + extra


def decide_charges(features: list[BillingFeature], billing: BillingEntry, request: ChatRequest,
                   forwarded_to: frozenset[str], limited: bool) -> Charges | None:
    """The request's features, priced: each one the operator priced is kept; a dearer one with
    no price is refused (400 naming its field), stripped from the request, or let through at
    list price, by `billing.on_unpriced`. A per-use feature with no bound on its uses is
    refused for a `limited` key, whose hold must cover every use. None when nothing is left
    to charge for, or no candidate receives the features."""
    if not forwarded_to:
        return None
    kept: dict[str, BillingFeature] = {}
    for feature in features:
        prices = [billing.price(feature.name, model) for model in forwarded_to]
        if None in prices and feature.dearer:
            if billing.on_unpriced == "allow":
                continue
            if billing.on_unpriced == "strip" and feature.strip is not None:
                feature.strip(request)
                continue
            raise unpriced(feature)
        if limited and feature.max_uses is None and any(p and p.per_use for p in prices):
            raise InvalidRequest(
                f"{feature.field}: set max_uses. {feature.name} is billed per use, and a key "
                "with a credit limit must bound the uses so that the credit held covers them.",
                param=feature.field)
        kept[feature.name] = _merged(kept.get(feature.name), feature)
    return Charges(tuple(kept.values()), billing, forwarded_to) if kept else None


def unpriced(feature: BillingFeature) -> InvalidRequest:
    return InvalidRequest(
        f"{feature.field}: this gateway has no price for {feature.name}, which changes what the "
        "upstream charges. Leave it out, or ask the operator to price it "
        f"(billing.surcharges.{feature.name} in providers.yaml).", param=feature.field)


def _merged(earlier: BillingFeature | None, feature: BillingFeature) -> BillingFeature:
    """Two features of one name (two search tools) share their uses: the bounds add up."""
    if earlier is None:
        return feature
    bound = None if earlier.max_uses is None or feature.max_uses is None else \
        earlier.max_uses + feature.max_uses
    return BillingFeature(feature.name, earlier.field, earlier.dearer or feature.dearer, bound,
                          earlier.strip)
