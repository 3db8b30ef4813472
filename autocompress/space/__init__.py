"""What may be searched: search-space files, binding to a model, define-by-run sampling."""

from autocompress.space.binding import BoundSpace, Knob, bind
from autocompress.space.distributions import Choice, Constant, Range, parse_distribution
from autocompress.space.schema import Rule, SearchSpace

__all__ = [
    "BoundSpace",
    "Choice",
    "Constant",
    "Knob",
    "Range",
    "Rule",
    "SearchSpace",
    "bind",
    "parse_distribution",
]
