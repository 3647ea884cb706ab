"""Validation of `allocate`'s array inputs: each error names the field as the wire does."""

from __future__ import annotations

import math

import numpy as np

from knapsack_service.engine.errors import EngineInputError, InfeasibleBudget
from knapsack_service.engine.strategies._base import Problem, Strategy


def check_rates(success_rates: np.ndarray | None) -> np.ndarray | None:
    """float64 (M,) with seen rates in [0, 1] (NaN = unseen), or None."""
    if success_rates is None:
        return None
    rates = np.ascontiguousarray(success_rates, dtype=np.float64)
    if rates.ndim != 1:
        raise EngineInputError("success_rates must be one-dimensional", field="success_rates")
    seen = rates[~np.isnan(rates)]
    if np.any(seen < 0.0) or np.any(seen > 1.0):  # also rejects ±inf
        raise EngineInputError("success rates must lie in [0, 1]", field="success_rates")
    return rates


def check_posterior(posterior: np.ndarray | None) -> np.ndarray | None:
    """float64 (M, 2) of finite parameters > 0, or None."""
    if posterior is None:
        return None
    post = np.ascontiguousarray(posterior, dtype=np.float64)
    if post.ndim != 2 or post.shape[1] != 2:
        raise EngineInputError("posterior must have shape (M, 2)", field="posterior")
    if not np.all(np.isfinite(post)) or np.any(post <= 0.0):
        raise EngineInputError("posterior parameters must be finite and > 0", field="posterior")
    return post


def check_costs(
    costs: np.ndarray | None, m: int, strategy: Strategy, fallback: bool
) -> np.ndarray | None:
    """float64 (M,) of finite costs > 0, where the strategy supports them."""
    if costs is None:
        return None
    if not strategy.costs:
        raise EngineInputError(f"costs are not supported by {strategy.name}", field="costs")
    if fallback and strategy.fallback:
        # The fallback rule is stated in rollouts (need_i, even spreads): no cost analogue.
        raise EngineInputError("costs cannot be combined with fallback", field="costs")
    arr = np.ascontiguousarray(costs, dtype=np.float64)
    if arr.shape != (m,):
        raise EngineInputError(f"costs must have {m} entries", field="costs")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0.0):
        raise EngineInputError("costs must be finite and > 0", field="costs")
    return arr


def check_budget(budget: float, *, integral: bool) -> float:
    """A finite budget >= 0, whole when it counts rollouts."""
    value = float(budget)
    if not math.isfinite(value) or value < 0.0:
        raise EngineInputError(f"budget must be finite and >= 0, got {budget!r}", field="budget")
    if integral and not value.is_integer():
        raise EngineInputError("budget must be a whole number of rollouts", field="budget")
    return value


def checked_problem(
    strategy: Strategy,
    success_rates: np.ndarray | None,
    budget: float,
    *,
    fallback: bool,
    costs: np.ndarray | None,
    posterior: np.ndarray | None,
    method: str,
) -> Problem:
    """Every input checked in the wire's order (rates, posterior, costs, budget)."""
    rates = check_rates(success_rates)
    post = check_posterior(posterior)
    if rates is None and post is None:
        raise EngineInputError("success_rates is required", field="success_rates")
    if strategy.needs == "posterior" and post is None:
        raise EngineInputError(f"posterior is required with {strategy.name}", field="posterior")
    if strategy.needs == "rates" and rates is None:
        raise EngineInputError(
            f"success_rates is required with {strategy.name}", field="success_rates"
        )
    m = len(rates) if rates is not None else len(post)  # type: ignore[arg-type]
    if rates is not None and post is not None and len(post) != m:
        raise EngineInputError(f"posterior has {len(post)} rows, expected {m}", field="posterior")
    cost_arr = check_costs(costs, m, strategy, fallback)
    value = check_budget(budget, integral=cost_arr is None)
    return Problem(m, value, rates, post, cost_arr, bool(fallback), method)


def check_range(budget: float, low: float, high: float) -> None:
    """InfeasibleBudget unless low <= budget <= high."""
    if not low <= budget <= high:
        raise InfeasibleBudget(budget, low, high)


def spent(n: np.ndarray, costs: np.ndarray, budget: float) -> float:
    """sum(n * costs), asserted within the budget (the cost-aware solver's promise)."""
    cost = float(np.dot(n, costs))
    assert cost <= budget * (1.0 + 1e-12) + 1e-12, "cost-aware solver overspent"
    return cost
