"""Ray placement helpers.

A task launched from inside a Tune trial is captured by the trial's placement group: it can only
use the resources reserved for the trial, so it cannot reach another node's custom resource (e.g.
the node that carries the latency target). ``outside_trial`` schedules it normally instead.
"""

from __future__ import annotations

from typing import Any


def outside_trial(remote_fn: Any, **options: Any) -> Any:
    """``remote_fn`` with the DEFAULT strategy, so it escapes the caller's placement group."""
    return remote_fn.options(scheduling_strategy="DEFAULT", **options)
