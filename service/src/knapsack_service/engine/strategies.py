"""Allocation strategies of `shared/API.md` ("Stateless solve"): one entry point, `allocate`.

- uniform: the budget spread evenly, remainder to the lowest indices.
- filter: online difficulty filtering as DAPO does it: 0 rollouts for p in {0, 1},
  `default_n` for unseen prompts, the rest spread evenly over 0 < p < 1.
- knapsack: the paper (Li et al., 2025, Sec. 3): exact maximum of sum Value(n_i, p_i)
  for 0 < p < 1, fixed counts for p = 1 (`positive_n`), p = 0 (`negative_n`) and
  unseen prompts (`default_n`); with `fallback`, the paper code's rule (`_kernels_knapsack`).
- knapsack-bayes: the same objective in expectation under each prompt's Beta
  posterior, for every prompt (unseen prompts carry the prior).

Without costs `sum(n) == budget` always, or `InfeasibleBudget` names the feasible
range; fixed counts above `max_n` are capped at `max_n` (no n[i] ever exceeds it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from knapsack_service.engine import _kernels_knapsack as kk
from knapsack_service.engine.errors import EngineInputError, InfeasibleBudget
from knapsack_service.engine.solve import (
    HEAP_WORK_LIMIT,
    objective,
    solve_cost_aware,
    solve_unit_cost,
)

STRATEGIES: tuple[str, ...] = ("uniform", "filter", "knapsack", "knapsack-bayes")
DEFAULT_N = 8


@dataclass(frozen=True)
class AllocationResult:
    """What `allocate` returns.

    Attributes:
        n: int64 rollouts per prompt, n[i] for prompt i.
        value: the knapsack objective reached, sum Value(n_i, p_i) (unseen prompts
            count 0), or its expectation under the posteriors for knapsack-bayes.
            uniform and filter report the same objective, so strategies compare.
        cost: sum(n * costs) when costs were given, else None.
    """

    n: np.ndarray
    value: float
    cost: float | None = None


def allocate(
    strategy: str,
    success_rates: np.ndarray | None,
    budget: float,
    *,
    min_n: int,
    max_n: int,
    default_n: int = DEFAULT_N,
    positive_n: int | None = None,
    negative_n: int | None = None,
    fallback: bool = False,
    costs: np.ndarray | None = None,
    posterior: np.ndarray | None = None,
    method: str = "auto",
) -> AllocationResult:
    """Allocate a rollout budget over a batch of prompts.

    Args:
        strategy: "uniform", "filter", "knapsack" or "knapsack-bayes".
        success_rates: float64 (M,), NaN = never seen; may be None for knapsack-bayes
            (and uniform) when `posterior` gives M.
        budget: total rollouts (a whole number), or total cost with `costs`.
        min_n: smallest group for prompts the strategy serves.
        max_n: largest group any prompt gets.
        default_n: group of unseen prompts (knapsack, filter).
        positive_n: group of p = 1 prompts under knapsack (default min_n; 0 = skip).
        negative_n: group of p = 0 prompts under knapsack (default min_n; 0 = skip).
        fallback: knapsack only: the paper code's rule, see `_kernels_knapsack`.
        costs: float64 (M,) > 0, cost of one rollout per prompt (knapsack strategies).
        posterior: float64 (M, 2) Beta parameters (a, b) > 0, for knapsack-bayes.
        method: unit-cost solver path, "auto", "heap" or "threshold" (tests).

    Returns:
        AllocationResult.

    Raises:
        InfeasibleBudget: the budget cannot be spent within the limits (field "budget").
        EngineInputError: any other invalid input; `field` names it.
    """
    if strategy not in STRATEGIES:
        raise EngineInputError(f"unknown strategy {strategy!r}", field="strategy")
    min_n, max_n = _check_limits(min_n, max_n)
    default_n = min(_check_count(default_n, "default_n"), max_n)
    positive = min(_check_count(min_n if positive_n is None else positive_n, "positive_n"), max_n)
    negative = min(_check_count(min_n if negative_n is None else negative_n, "negative_n"), max_n)
    if (
        strategy == "knapsack"
        and success_rates is not None
        and posterior is None
        and costs is None
        and method in ("auto", "heap")
    ):
        small = _knapsack_small(
            success_rates, budget, min_n, max_n, default_n, positive, negative, fallback, method
        )
        if small is not None:
            return small
    rates = _check_rates(success_rates)
    post = _check_posterior(posterior)
    if rates is None and post is None:
        raise EngineInputError("success_rates is required", field="success_rates")
    if strategy == "knapsack-bayes" and post is None:
        raise EngineInputError("posterior is required with knapsack-bayes", field="posterior")
    if strategy in ("filter", "knapsack") and rates is None:
        raise EngineInputError(f"success_rates is required with {strategy}", field="success_rates")
    m = len(rates) if rates is not None else len(post)  # type: ignore[arg-type]
    if rates is not None and post is not None and len(post) != m:
        raise EngineInputError(f"posterior has {len(post)} rows, expected {m}", field="posterior")
    cost_arr = _check_costs(costs, m, strategy, fallback)
    budget = _check_budget(budget, integral=cost_arr is None)

    if strategy == "knapsack-bayes":
        assert post is not None
        return _bayes(post, budget, min_n, max_n, cost_arr, method)
    if strategy == "uniform":
        n = _uniform(m, int(budget), min_n, max_n)
    else:
        assert rates is not None
        if strategy == "filter":
            n = _filter(rates, int(budget), min_n, max_n, default_n)
        elif cost_arr is not None:
            return _knapsack_with_costs(
                rates, budget, min_n, max_n, default_n, positive, negative, cost_arr
            )
        else:
            n = _knapsack(
                rates, int(budget), min_n, max_n, default_n, positive, negative, fallback, method
            )
    value = objective(n, p=rates) if rates is not None else 0.0
    return AllocationResult(n=n, value=value)


# --------------------------------------------------------------------------- validation


def _check_count(value: int, field: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise EngineInputError(
            f"{field} must be a non-negative integer, got {value!r}", field=field
        )
    return int(value)


def _check_limits(min_n: int, max_n: int) -> tuple[int, int]:
    min_n = _check_count(min_n, "min_n")
    max_n = _check_count(max_n, "max_n")
    if min_n > max_n:
        raise EngineInputError(f"min_n ({min_n}) must not exceed max_n ({max_n})", field="min_n")
    return min_n, max_n


def _check_rates(success_rates: np.ndarray | None) -> np.ndarray | None:
    if success_rates is None:
        return None
    rates = np.ascontiguousarray(success_rates, dtype=np.float64)
    if rates.ndim != 1:
        raise EngineInputError("success_rates must be one-dimensional", field="success_rates")
    seen = rates[~np.isnan(rates)]
    if np.any(seen < 0.0) or np.any(seen > 1.0):  # also rejects ±inf
        raise EngineInputError("success rates must lie in [0, 1]", field="success_rates")
    return rates


def _check_posterior(posterior: np.ndarray | None) -> np.ndarray | None:
    if posterior is None:
        return None
    post = np.ascontiguousarray(posterior, dtype=np.float64)
    if post.ndim != 2 or post.shape[1] != 2:
        raise EngineInputError("posterior must have shape (M, 2)", field="posterior")
    if not np.all(np.isfinite(post)) or np.any(post <= 0.0):
        raise EngineInputError("posterior parameters must be finite and > 0", field="posterior")
    return post


def _check_costs(
    costs: np.ndarray | None, m: int, strategy: str, fallback: bool
) -> np.ndarray | None:
    if costs is None:
        return None
    if strategy not in ("knapsack", "knapsack-bayes"):
        raise EngineInputError(f"costs are not supported by {strategy}", field="costs")
    if fallback and strategy == "knapsack":
        # The fallback rule is stated in rollouts (need_i, even spreads): no cost analogue.
        raise EngineInputError("costs cannot be combined with fallback", field="costs")
    arr = np.ascontiguousarray(costs, dtype=np.float64)
    if arr.shape != (m,):
        raise EngineInputError(f"costs must have {m} entries", field="costs")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0.0):
        raise EngineInputError("costs must be finite and > 0", field="costs")
    return arr


def _check_budget(budget: float, *, integral: bool) -> float:
    value = float(budget)
    if not math.isfinite(value) or value < 0.0:
        raise EngineInputError(f"budget must be finite and >= 0, got {budget!r}", field="budget")
    if integral and not value.is_integer():
        raise EngineInputError("budget must be a whole number of rollouts", field="budget")
    return value


# --------------------------------------------------------------------------- strategies


def _knapsack_small(
    success_rates: np.ndarray,
    budget: float,
    min_n: int,
    max_n: int,
    default_n: int,
    positive: int,
    negative: int,
    fallback: bool,
    method: str,
) -> AllocationResult | None:
    """The knapsack strategy in one numba call (`_kernels_knapsack.knapsack_small`), or None.

    None hands the call back to the general path: an invalid budget or a malformed
    array (whose errors that path raises in its order), or a batch large enough that
    `solve_unit_cost` might choose the threshold path (`budget` bounds every extra
    and `M` every middle class, so below the limit the heap runs either way, and the
    allocation is the one `_knapsack` would return: both follow one plan).
    """
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
        rates, whole, min_n, max_n, default_n, positive, negative, bool(fallback)
    )
    if code == kk.BAD_RATES:
        raise EngineInputError("success rates must lie in [0, 1]", field="success_rates")
    if code == kk.INFEASIBLE:
        raise InfeasibleBudget(whole, low, high)
    return AllocationResult(n=n, value=float(terms.sum()))


def _spread(total: int, count: int) -> np.ndarray:
    """`total` spread evenly over `count` slots, the remainder to the lowest indices."""
    n = np.full(count, total // count if count else 0, dtype=np.int64)
    if count:
        n[: total % count] += 1
    return n


def _uniform(m: int, budget: int, min_n: int, max_n: int) -> np.ndarray:
    low, high = m * min_n, m * max_n
    if not low <= budget <= high:
        raise InfeasibleBudget(budget, low, high)
    return _spread(budget, m)


def _classes(rates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    unseen = np.isnan(rates)
    zero = rates == 0.0
    one = rates == 1.0
    middle = ~(unseen | zero | one)
    return unseen, zero, one, middle


def _filter(rates: np.ndarray, budget: int, min_n: int, max_n: int, default_n: int) -> np.ndarray:
    unseen, _, _, middle = _classes(rates)
    fixed = int(unseen.sum()) * default_n
    mid = int(middle.sum())
    low, high = fixed + mid * min_n, fixed + mid * max_n
    if not low <= budget <= high:
        raise InfeasibleBudget(budget, low, high)
    n = np.zeros(rates.size, np.int64)
    n[unseen] = default_n
    n[middle] = _spread(budget - fixed, mid)
    return n


def _fixed_counts(
    rates: np.ndarray, default_n: int, positive: int, negative: int
) -> tuple[np.ndarray, np.ndarray]:
    unseen, zero, one, middle = _classes(rates)
    n = np.zeros(rates.size, np.int64)
    n[unseen] = default_n
    n[zero] = negative
    n[one] = positive
    return n, middle


def _knapsack(
    rates: np.ndarray,
    budget: int,
    min_n: int,
    max_n: int,
    default_n: int,
    positive: int,
    negative: int,
    fallback: bool,
    method: str,
) -> np.ndarray:
    """`_kernels_knapsack.plan_knapsack`'s plan, then one solve over the 0 < p < 1 prompts."""
    code, n, mid_idx, mid_total, low, high = kk.plan_knapsack(
        rates, budget, min_n, max_n, default_n, positive, negative, fallback
    )
    if code == kk.INFEASIBLE:
        raise InfeasibleBudget(budget, low, high)
    if mid_idx.size:
        n[mid_idx] = solve_unit_cost(mid_total, min_n, max_n, p=rates[mid_idx], method=method)
    return n


def fallback_need(rates: np.ndarray, max_n: int) -> np.ndarray:
    """int(min(max_n, ln(0.1) / ln max(p, 1-p))) per rate in (0, 1): the paper's trigger term.

    It decides only whether the fallback triggers (`_kernels_knapsack`); it bounds
    no group.
    """
    return kk.fallback_needs(np.ascontiguousarray(rates, dtype=np.float64), int(max_n))


def _knapsack_with_costs(
    rates: np.ndarray,
    budget: float,
    min_n: int,
    max_n: int,
    default_n: int,
    positive: int,
    negative: int,
    costs: np.ndarray,
) -> AllocationResult:
    n, middle = _fixed_counts(rates, default_n, positive, negative)
    fixed_cost = float(np.dot(n, costs))
    low = fixed_cost + min_n * float(costs[middle].sum())
    if budget < low:
        raise InfeasibleBudget(budget, low, math.inf)
    if middle.any():
        n[middle] = solve_cost_aware(
            budget - fixed_cost, costs[middle], min_n, max_n, p=rates[middle]
        )
    return AllocationResult(n=n, value=objective(n, p=rates), cost=_spent(n, costs, budget))


def _bayes(
    post: np.ndarray,
    budget: float,
    min_n: int,
    max_n: int,
    costs: np.ndarray | None,
    method: str,
) -> AllocationResult:
    a = np.ascontiguousarray(post[:, 0])
    b = np.ascontiguousarray(post[:, 1])
    m = a.size
    if costs is not None:
        low = min_n * float(costs.sum())
        if budget < low:
            raise InfeasibleBudget(budget, low, math.inf)
        n = solve_cost_aware(budget, costs, min_n, max_n, a=a, b=b)
        return AllocationResult(n=n, value=objective(n, a=a, b=b), cost=_spent(n, costs, budget))
    low, high = m * min_n, m * max_n
    if not low <= budget <= high:
        raise InfeasibleBudget(budget, low, high)
    n = solve_unit_cost(int(budget), min_n, max_n, a=a, b=b, method=method)
    return AllocationResult(n=n, value=objective(n, a=a, b=b))


def _spent(n: np.ndarray, costs: np.ndarray, budget: float) -> float:
    cost = float(np.dot(n, costs))
    assert cost <= budget * (1.0 + 1e-12) + 1e-12, "cost-aware solver overspent"
    return cost
