"""Keep per-user CPU counters monotonic while the things they sum come and go.

A user's CPU seconds are the sum over their containers (or processes); when one exits, its
seconds must not vanish from the user's `_seconds_total`, or Prometheus sees a reset. The state
is an immutable value passed from one sample to the next.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Hashable, Mapping


@dataclass(frozen=True)
class CounterState:
    last: Mapping[Hashable, tuple[str, float]] = field(default_factory=lambda: MappingProxyType({}))
    retired: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


def advance(state: CounterState, observed: Mapping[Hashable, tuple[str, float]]
            ) -> tuple[CounterState, dict[str, float]]:
    """Fold one sample's {key: (owner, value)} into the state; return the per-owner totals.

    A key that disappeared, or whose value went down (its counter was reset, e.g. a restarted
    container), retires its last value into the owner's sum.
    """
    retired = dict(state.retired)
    for key, (owner, value) in state.last.items():
        now = observed.get(key)
        if now is None or now[0] != owner or now[1] < value:
            retired[owner] = retired.get(owner, 0.0) + value
    totals: dict[str, float] = {}
    for owner, value in observed.values():
        totals[owner] = totals.get(owner, retired.get(owner, 0.0)) + value
    return CounterState(MappingProxyType(dict(observed)), MappingProxyType(retired)), totals
