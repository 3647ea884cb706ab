"""Allocation engine of knapsack-rl: pure functions over numpy arrays, numba inside.

No I/O and no globals: the service reads statistics from the store, calls these
functions and writes the answer. Kernels are compiled with `@njit(cache=True)`:
numba keeps the compiled code beside the sources, or under `NUMBA_CACHE_DIR` when
that is set (containers point it at a writable volume), so a restart loads them in
well under a second. `warm_up()` compiles or loads every kernel; the service calls it
at start-up before reporting ready. `NUMBA_DISABLE_JIT=1` runs the kernels as plain
Python (debugging, coverage).

Public API:
    allocate(strategy, success_rates, budget, *, min_n, max_n, ...) -> AllocationResult
    STRATEGIES / known_strategies(): the registry's names (one module per strategy,
        `engine.strategies`); Limits: the checked group limits
    balance_shards(n, workers, split_groups=True) -> ShardPlan
    window_counts / last_visit_counts / window_estimate
    beta_posterior / visit_beta_posterior / concentrate_posterior / pooled_beta_prior
        (and pooled_beta_prior_from_moments, the same fit from a run's kept moments)
    value / marginal_gain / expected_value / expected_marginal_gain / beta_moment
    solve_unit_cost / solve_cost_aware (reference solvers: engine.reference, tests only)
    EngineInputError(field), and its subclass InfeasibleBudget(budget, low, high)
"""

from __future__ import annotations

import time

import numpy as np

from knapsack_service.engine.balance import ShardPlan, balance_shards
from knapsack_service.engine.errors import EngineInputError, InfeasibleBudget
from knapsack_service.engine.estimators import (
    beta_posterior,
    concentrate_posterior,
    last_visit_counts,
    pooled_beta_prior,
    pooled_beta_prior_from_moments,
    visit_beta_posterior,
    window_counts,
    window_estimate,
)
from knapsack_service.engine.limits import Limits
from knapsack_service.engine.solve import (
    objective,
    solve_cost_aware,
    solve_unit_cost,
)
from knapsack_service.engine.strategies import (
    STRATEGIES,
    AllocationResult,
    allocate,
    fallback_need,
    known_strategies,
)
from knapsack_service.engine.values import (
    beta_moment,
    expected_marginal_gain,
    expected_value,
    marginal_gain,
    value,
)


def warm_up() -> float:
    """Compile (or load from the numba cache) every kernel on tiny inputs.

    Returns:
        Seconds it took: seconds of compiling on a cold cache, milliseconds warm.
    """
    started = time.perf_counter()
    p = np.array([0.25, 0.5, 0.0, np.nan, 1.0, 0.75])
    post = np.array([[1.0, 3.0], [2.0, 2.0], [1.0, 1.0], [1.0, 1.0], [5.0, 1.0], [3.0, 1.0]])
    costs = np.array([1.0, 2.0, 1.5, 1.0, 1.0, 3.0])
    for method in ("heap", "threshold"):
        allocate("knapsack", p, 24, min_n=2, max_n=8, method=method)
        allocate("knapsack-bayes", None, 24, min_n=2, max_n=8, posterior=post, method=method)
    allocate("knapsack", p, 20, min_n=2, max_n=8, fallback=True)
    allocate("knapsack", p, 20, min_n=2, max_n=8, fallback=True, method="threshold")
    fallback_need(np.array([0.25]), 8)
    # The threshold path's refinement and its plateau exit, on inputs small enough to
    # be instant: open_units_limit=0 forces the rounds a large batch would run.
    for rates in (np.linspace(0.05, 0.95, 16), np.full(16, 0.5)):
        solve_unit_cost(80, 2, 12, p=rates, method="threshold", open_units_limit=0)
    allocate("knapsack", p, 30.0, min_n=2, max_n=8, costs=costs)
    allocate("knapsack-bayes", None, 30.0, min_n=2, max_n=8, costs=costs, posterior=post)
    allocate("uniform", p, 24, min_n=2, max_n=8)
    allocate("filter", p, 16, min_n=2, max_n=8)
    for split in (True, False):
        balance_shards(np.array([3, 0, 5, 2], np.int64), 2, split_groups=split)
    value(np.arange(4), 0.5)
    expected_value(np.arange(4), 2.0, 3.0)
    expected_marginal_gain(np.arange(4), 2.0, 3.0)
    beta_moment(2.0, 3.0, 1.0, 2.0)
    return time.perf_counter() - started


__all__ = [
    "STRATEGIES",
    "AllocationResult",
    "EngineInputError",
    "InfeasibleBudget",
    "Limits",
    "ShardPlan",
    "allocate",
    "balance_shards",
    "beta_moment",
    "beta_posterior",
    "concentrate_posterior",
    "expected_marginal_gain",
    "expected_value",
    "fallback_need",
    "known_strategies",
    "last_visit_counts",
    "marginal_gain",
    "objective",
    "pooled_beta_prior",
    "pooled_beta_prior_from_moments",
    "solve_cost_aware",
    "solve_unit_cost",
    "value",
    "visit_beta_posterior",
    "warm_up",
    "window_counts",
    "window_estimate",
]
