"""What a cost policy is: it turns a complexity score into a tier."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from costr.routing.scoring import Complexity


@runtime_checkable
class Policy(Protocol):
    """What a `register_policy_types` factory, `factory(name, options, tiers)`, returns."""

    def choose_tier(self, complexity: Complexity) -> str:
        """One of the configured tiers."""


@runtime_checkable
class MarginPolicy(Policy, Protocol):
    """A policy that can say how far a score is from the nearest boundary of the tiers it
    chose among for this request (a policy with thresholds per form: that form's); the
    uncalibrated confidence is lowest there. A policy without it counts as halfway."""

    def margin(self, complexity: Complexity) -> float: ...


def boundary_margin(policy: Policy, complexity: Complexity) -> float:
    # getattr, not isinstance(policy, MarginPolicy): a runtime Protocol check inspects the
    # class's members on every call, which was a tenth of routing's time.
    margin = getattr(policy, "margin", None)
    return margin(complexity) if callable(margin) else 0.5
