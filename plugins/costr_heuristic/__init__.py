"""The default complexity scorer: a few cheap signals from what the user asked."""
from costr import hookimpl

from .scorer import HeuristicScorer


@hookimpl(trylast=True)
def register_scorers(register):
    register("heuristic", HeuristicScorer)
