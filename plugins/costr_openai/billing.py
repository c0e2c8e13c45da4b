"""What in an OpenAI Chat Completions request OpenAI bills beyond its tokens at list price
(`billing_features`), named for providers.yaml's `billing.surcharges`:

- `service_tier`: `priority` as `priority_processing` (about twice the per-token price),
  `flex` as `flex_processing` (about half: never dearer, so allowed unpriced, at list price),
  `scale` and any other tier but `auto` and `default` as `service_tier_<tier>`;
- `audio_output`: audio answers (`audio`, or `modalities` with `audio`), whose tokens are priced
  far above text.

Stripping one removes its field from the body.
"""
from __future__ import annotations

import re

from costr import BillingFeature, ChatRequest, InvalidRequest

TIERS = {"priority": ("priority_processing", True), "flex": ("flex_processing", False)}
PLAIN_TIERS = ("auto", "default")


def billing_features(request: ChatRequest) -> list[BillingFeature]:
    raw = request.raw or {}
    found = []
    tier = raw.get("service_tier")
    if tier is not None and not isinstance(tier, str):
        raise InvalidRequest("service_tier: Input should be a valid string", param="service_tier")
    if tier is not None and tier not in PLAIN_TIERS:
        name, dearer = TIERS.get(tier, (_named("service_tier", tier), True))
        found.append(BillingFeature(name, "service_tier", dearer, strip=_without("service_tier")))
    modalities = raw.get("modalities")
    if raw.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        found.append(BillingFeature("audio_output", "audio" if "audio" in raw else "modalities",
                                    strip=_without("audio", "modalities")))
    return found


def _without(*fields: str):
    def strip(request: ChatRequest) -> None:
        for field in fields:
            request.raw.pop(field, None)
    return strip


def _named(prefix: str, value: object) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", f"{prefix}_{value}".lower())[:48]
