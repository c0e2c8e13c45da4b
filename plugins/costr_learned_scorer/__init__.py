"""A learned complexity scorer: hashed n-grams and the heuristic's signals in a linear model,
trained with `costr train-scorer` and shipped with a default model."""
from costr import hookimpl

from . import command
from .scorer import LearnedScorer


@hookimpl
def register_scorers(register):
    register("learned", LearnedScorer)


@hookimpl
def register_commands(register):
    register("train-scorer", command)
