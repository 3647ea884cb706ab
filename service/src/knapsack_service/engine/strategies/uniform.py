"""uniform: the budget spread evenly, remainder to the lowest indices.

The spread is `knapsack_client.rules.spread_evenly`, the same rule the client's
offline fallback and the service's degraded answer use.
"""

from __future__ import annotations

import numpy as np

from knapsack_client.rules import spread_evenly
from knapsack_service.engine.limits import Limits
from knapsack_service.engine.solve import objective
from knapsack_service.engine.strategies._base import (
    AllocationResult,
    Problem,
    Strategy,
    register,
)
from knapsack_service.engine.strategies._checks import check_range


def even_counts(total: int, count: int) -> np.ndarray:
    """`spread_evenly` as an int64 array."""
    return np.asarray(spread_evenly(total, count), dtype=np.int64).reshape(count)


def _uniform(problem: Problem, limits: Limits) -> AllocationResult:
    m = problem.size
    check_range(problem.budget, m * limits.min_n, m * limits.max_n)
    n = even_counts(int(problem.budget), m)
    value = objective(n, p=problem.rates) if problem.rates is not None else 0.0
    return AllocationResult(n=n, value=value)


UNIFORM = register(Strategy(name="uniform", solve=_uniform, needs="any"))
