"""What every strategy shares: the checked problem, the result, the registry entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from knapsack_service.engine.limits import Limits


@dataclass(frozen=True)
class AllocationResult:
    """What `allocate` returns.

    Attributes:
        n: int64 rollouts per prompt, n[i] for prompt i.
        value: the knapsack objective reached, sum Value(n_i, p_i) (unseen prompts
            count 0), or its expectation under the posteriors for knapsack-bayes.
            Every strategy reports this same objective, so strategies compare.
        cost: sum(n * costs) when costs were given, else None.
    """

    n: np.ndarray
    value: float
    cost: float | None = None


@dataclass(frozen=True)
class Problem:
    """One allocation's inputs after validation (`allocate` builds it).

    Attributes:
        size: M, the number of prompts.
        budget: total rollouts (whole) or, with costs, total cost.
        rates: float64 (M,) in [0, 1], NaN = unseen; None when only posteriors came.
        posterior: float64 (M, 2) Beta parameters > 0, or None.
        costs: float64 (M,) > 0 per-rollout costs, or None.
        fallback: the caller asked for the strategy's fallback rule.
        method: unit-cost solver path, "auto", "heap" or "threshold".
    """

    size: int
    budget: float
    rates: np.ndarray | None
    posterior: np.ndarray | None
    costs: np.ndarray | None
    fallback: bool
    method: str


#: A strategy's one-call path for the common case, given the caller's raw inputs:
#: (success_rates, budget, limits, fallback, method) -> result, or None to decline.
OneCall = Callable[[np.ndarray, float, Limits, bool, str], "AllocationResult | None"]


@dataclass(frozen=True)
class Strategy:
    """A registry entry: the name on the wire, what the strategy needs, its solver.

    Attributes:
        name: the wire name (`"strategy"` of a solve or a run).
        solve: the allocation of a checked problem.
        needs: "rates", "posterior", or "any" (either gives M).
        costs: whether per-rollout costs are supported.
        fallback: whether the strategy has a fallback rule (which excludes costs).
        one_call: optional fast path tried before validation (it must decline, by
            returning None, whatever it cannot answer exactly as `solve` would).
    """

    name: str
    solve: Callable[[Problem, Limits], AllocationResult]
    needs: Literal["rates", "posterior", "any"]
    costs: bool = False
    fallback: bool = False
    one_call: OneCall | None = None


#: Every strategy by wire name, filled by the modules of this package as they load.
REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Add a strategy to the registry (once per name)."""
    if strategy.name in REGISTRY:
        raise ValueError(f"strategy {strategy.name!r} registered twice")
    REGISTRY[strategy.name] = strategy
    return strategy
