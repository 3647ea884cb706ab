"""filter: online difficulty filtering as DAPO does it, without refills.

0 rollouts for p in {0, 1}, `default_n` for unseen prompts, the rest spread evenly
over 0 < p < 1 (each within [min_n, max_n]).
"""

from __future__ import annotations

from knapsack_service.engine._kernels_knapsack import fixed_counts
from knapsack_service.engine.limits import Limits
from knapsack_service.engine.solve import objective
from knapsack_service.engine.strategies._base import (
    AllocationResult,
    Problem,
    Strategy,
    register,
)
from knapsack_service.engine.strategies._checks import check_range
from knapsack_service.engine.strategies.uniform import even_counts


def _filter(problem: Problem, limits: Limits) -> AllocationResult:
    rates = problem.rates
    assert rates is not None
    # The knapsack's classes with p = 0, p = 1 and 0 < p < 1 starting at 0.
    _, n, _, _, _, _, mid_idx = fixed_counts(rates, 0, limits.default_n, 0, 0)
    fixed = int(n.sum())
    mid = mid_idx.size
    check_range(problem.budget, fixed + mid * limits.min_n, fixed + mid * limits.max_n)
    n[mid_idx] = even_counts(int(problem.budget) - fixed, mid)
    return AllocationResult(n=n, value=objective(n, p=rates))


FILTER = register(Strategy(name="filter", solve=_filter, needs="rates"))
