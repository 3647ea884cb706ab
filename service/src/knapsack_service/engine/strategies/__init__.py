"""Allocation strategies of `docs/API.md` ("Stateless solve"): one entry point, `allocate`.

Each strategy is one module of this package that registers a `Strategy` (its wire
name, what it needs, its solver) when it loads; every module here not starting with
an underscore is loaded below, so a new strategy is one new module and its test.
`allocate` checks the inputs common to all of them (limits, arrays, budget) once.

Without costs `sum(n) == budget` always, or `InfeasibleBudget` names the feasible
range; fixed counts above `max_n` are capped at `max_n` (no n[i] ever exceeds it).
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np

from knapsack_client.rules import DEFAULT_GROUP_SIZE
from knapsack_service.engine.errors import EngineInputError
from knapsack_service.engine.limits import Limits
from knapsack_service.engine.strategies._base import (
    REGISTRY,
    AllocationResult,
    Problem,
    Strategy,
    register,
)
from knapsack_service.engine.strategies._checks import checked_problem

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")

from knapsack_service.engine.strategies.knapsack import fallback_need  # noqa: E402

#: Wire names of the strategies this package defines, sorted.
STRATEGIES: tuple[str, ...] = tuple(sorted(REGISTRY))


def known_strategies() -> tuple[str, ...]:
    """Wire names registered now, sorted (STRATEGIES plus any registered later)."""
    return tuple(sorted(REGISTRY))


def allocate(
    strategy: str,
    success_rates: np.ndarray | None,
    budget: float,
    *,
    min_n: int,
    max_n: int,
    default_n: int = DEFAULT_GROUP_SIZE,
    positive_n: int | None = None,
    negative_n: int | None = None,
    fallback: bool = False,
    costs: np.ndarray | None = None,
    posterior: np.ndarray | None = None,
    method: str = "auto",
) -> AllocationResult:
    """Allocate a rollout budget over a batch of prompts.

    Args:
        strategy: a name of `STRATEGIES`.
        success_rates: float64 (M,), NaN = never seen; may be None for strategies
            that take posteriors (knapsack-bayes, uniform) when `posterior` gives M.
        budget: total rollouts (a whole number), or total cost with `costs`.
        min_n: smallest group for prompts the strategy serves.
        max_n: largest group any prompt gets.
        default_n: group of unseen prompts (knapsack, filter).
        positive_n: group of p = 1 prompts under knapsack (default min_n; 0 = skip).
        negative_n: group of p = 0 prompts under knapsack (default min_n; 0 = skip).
        fallback: the strategy's fallback rule (knapsack: the paper code's, see
            `_kernels_knapsack`); ignored by strategies without one.
        costs: float64 (M,) > 0, cost of one rollout per prompt (knapsack strategies).
        posterior: float64 (M, 2) Beta parameters (a, b) > 0, for knapsack-bayes.
        method: unit-cost solver path, "auto", "heap" or "threshold" (tests).

    Returns:
        AllocationResult.

    Raises:
        InfeasibleBudget: the budget cannot be spent within the limits (field "budget").
        EngineInputError: any other invalid input; `field` names it.
    """
    spec = REGISTRY.get(strategy)
    if spec is None:
        raise EngineInputError(f"unknown strategy {strategy!r}", field="strategy")
    limits = Limits.check(min_n, max_n, default_n, positive_n, negative_n)
    if (
        spec.one_call is not None
        and success_rates is not None
        and posterior is None
        and costs is None
    ):
        answer = spec.one_call(success_rates, budget, limits, bool(fallback), method)
        if answer is not None:
            return answer
    problem = checked_problem(
        spec,
        success_rates,
        budget,
        fallback=fallback,
        costs=costs,
        posterior=posterior,
        method=method,
    )
    return spec.solve(problem, limits)


__all__ = [
    "REGISTRY",
    "STRATEGIES",
    "AllocationResult",
    "Limits",
    "Problem",
    "Strategy",
    "allocate",
    "fallback_need",
    "known_strategies",
    "register",
]
