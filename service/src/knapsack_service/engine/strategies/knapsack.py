"""knapsack: the paper (Li et al., 2025, Sec. 3) on point estimates.

Exact maximum of sum Value(n_i, p_i) over the 0 < p < 1 prompts, fixed counts for
p = 1 (`positive_n`), p = 0 (`negative_n`) and unseen prompts (`default_n`); with
`fallback`, the paper code's rule. Both live in one plan, `_kernels_knapsack`
(`plan_knapsack`), followed by one unit-cost solve: inside the same numba call for
small batches (`knapsack_small`), through `solve_unit_cost` otherwise. With costs
the fixed counts stay and the cost-aware solver serves the rest.
"""

from __future__ import annotations

import math

import numpy as np

from knapsack_service.engine import _kernels_knapsack as kk
from knapsack_service.engine.errors import EngineInputError, InfeasibleBudget
from knapsack_service.engine.limits import Limits
from knapsack_service.engine.solve import (
    HEAP_WORK_LIMIT,
    objective,
    solve_cost_aware,
    solve_unit_cost,
)
from knapsack_service.engine.strategies._base import (
    AllocationResult,
    Problem,
    Strategy,
    register,
)
from knapsack_service.engine.strategies._checks import spent


def fallback_need(rates: np.ndarray, max_n: int) -> np.ndarray:
    """int(min(max_n, ln(0.1) / ln max(p, 1-p))) per rate in (0, 1): the paper's trigger term.

    It decides only whether the fallback triggers (`_kernels_knapsack`); it bounds
    no group.
    """
    return kk.fallback_needs(np.ascontiguousarray(rates, dtype=np.float64), int(max_n))


def one_call(
    success_rates: np.ndarray, budget: float, limits: Limits, fallback: bool, method: str
) -> AllocationResult | None:
    """The whole strategy in one numba call (`_kernels_knapsack.knapsack_small`), or None.

    None hands the call back to the general path: a method other than the heap, an
    invalid budget or a malformed array (whose errors that path raises in its
    order), or a batch large enough that `solve_unit_cost` might choose the
    threshold path (`budget` bounds every extra and `M` every middle class, so below
    the limit the heap runs either way, and the allocation is the one
    `allocate_rates` would return: both follow one plan).
    """
    if method not in ("auto", "heap"):
        return None
    rates = np.ascontiguousarray(success_rates, dtype=np.float64)
    if rates.ndim != 1:
        return None
    try:
        value = float(budget)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(value) and value >= 0.0 and value.is_integer()):
        return None
    whole = int(value)
    if method == "auto" and whole * math.log2(rates.size + 1) > HEAP_WORK_LIMIT:
        return None
    code, n, terms, low, high = kk.knapsack_small(
        rates,
        whole,
        limits.min_n,
        limits.max_n,
        limits.default_n,
        limits.positive_n,
        limits.negative_n,
        fallback,
    )
    if code == kk.BAD_RATES:
        raise EngineInputError("success rates must lie in [0, 1]", field="success_rates")
    if code == kk.INFEASIBLE:
        raise InfeasibleBudget(whole, low, high)
    return AllocationResult(n=n, value=float(terms.sum()))


def allocate_rates(
    rates: np.ndarray, budget: int, limits: Limits, fallback: bool, method: str = "auto"
) -> np.ndarray:
    """`plan_knapsack`'s plan, then one `solve_unit_cost` over the 0 < p < 1 prompts."""
    code, n, mid_idx, mid_total, low, high = kk.plan_knapsack(
        rates,
        budget,
        limits.min_n,
        limits.max_n,
        limits.default_n,
        limits.positive_n,
        limits.negative_n,
        fallback,
    )
    if code == kk.INFEASIBLE:
        raise InfeasibleBudget(budget, low, high)
    if mid_idx.size:
        n[mid_idx] = solve_unit_cost(
            mid_total, limits.min_n, limits.max_n, p=rates[mid_idx], method=method
        )
    return n


def _with_costs(
    rates: np.ndarray, budget: float, costs: np.ndarray, limits: Limits
) -> AllocationResult:
    """Fixed counts as without costs; the cost-aware solver serves 0 < p < 1 prompts."""
    _, n, _, _, _, _, mid_idx = kk.fixed_counts(
        rates, limits.min_n, limits.default_n, limits.positive_n, limits.negative_n
    )
    middle = np.zeros(rates.size, bool)
    middle[mid_idx] = True
    n[middle] = 0
    fixed_cost = float(np.dot(n, costs))
    low = fixed_cost + limits.min_n * float(costs[middle].sum())
    if budget < low:
        raise InfeasibleBudget(budget, low, math.inf)
    if middle.any():
        n[middle] = solve_cost_aware(
            budget - fixed_cost, costs[middle], limits.min_n, limits.max_n, p=rates[middle]
        )
    return AllocationResult(n=n, value=objective(n, p=rates), cost=spent(n, costs, budget))


def _knapsack(problem: Problem, limits: Limits) -> AllocationResult:
    rates = problem.rates
    assert rates is not None
    if problem.costs is not None:
        return _with_costs(rates, problem.budget, problem.costs, limits)
    n = allocate_rates(rates, int(problem.budget), limits, problem.fallback, problem.method)
    return AllocationResult(n=n, value=objective(n, p=rates))


KNAPSACK = register(
    Strategy(
        name="knapsack",
        solve=_knapsack,
        needs="rates",
        costs=True,
        fallback=True,
        one_call=one_call,
    )
)
