"""The default cost-policy type: a complexity score at or above a tier's threshold gets it."""
from costr import hookimpl

from .policy import ThresholdPolicy


@hookimpl(trylast=True)
def register_policy_types(register):
    register("thresholds", ThresholdPolicy)
