"""knapsack-bayes: the knapsack objective in expectation under Beta posteriors.

Every prompt is served, unseen ones included (they carry the prior): the strategy
needs no warm-up epoch. E[Value(N, p)] keeps Value's concavity from N = 1 on
(`values.expected_marginal_gain`), so the exact unit-cost solvers apply unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from knapsack_service.engine.errors import InfeasibleBudget
from knapsack_service.engine.limits import Limits
from knapsack_service.engine.solve import objective, solve_cost_aware, solve_unit_cost
from knapsack_service.engine.strategies._base import (
    AllocationResult,
    Problem,
    Strategy,
    register,
)
from knapsack_service.engine.strategies._checks import check_range, spent


def _bayes(problem: Problem, limits: Limits) -> AllocationResult:
    post = problem.posterior
    assert post is not None
    a = np.ascontiguousarray(post[:, 0])
    b = np.ascontiguousarray(post[:, 1])
    budget, costs = problem.budget, problem.costs
    if costs is not None:
        low = limits.min_n * float(costs.sum())
        if budget < low:
            raise InfeasibleBudget(budget, low, math.inf)
        n = solve_cost_aware(budget, costs, limits.min_n, limits.max_n, a=a, b=b)
        return AllocationResult(n=n, value=objective(n, a=a, b=b), cost=spent(n, costs, budget))
    check_range(budget, problem.size * limits.min_n, problem.size * limits.max_n)
    n = solve_unit_cost(int(budget), limits.min_n, limits.max_n, a=a, b=b, method=problem.method)
    return AllocationResult(n=n, value=objective(n, a=a, b=b))


KNAPSACK_BAYES = register(
    Strategy(name="knapsack-bayes", solve=_bayes, needs="posterior", costs=True)
)
