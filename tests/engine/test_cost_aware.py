"""Cost-aware solver against an exact DP on small integer-cost instances."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_service.engine import (
    InfeasibleBudget,
    objective,
    solve_cost_aware,
    solve_unit_cost,
)
from knapsack_service.engine.reference import solve_reference_cost_dp
from knapsack_service.engine.values import marginal_gain


def _instance(rng, m):
    p = rng.random(m)
    costs = rng.integers(1, 6, m)
    lo, hi = 2, 16
    budget = int(costs.sum() * rng.integers(3, 10))
    return p, costs, lo, hi, budget


@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 10))
@settings(max_examples=60, deadline=None)
def test_within_bounds_budget_and_guarantee(seed, m):
    rng = np.random.default_rng(seed)
    p, costs, lo, hi, budget = _instance(rng, m)
    n = solve_cost_aware(budget, costs.astype(float), lo, hi, p=p)
    assert np.all(n >= lo) and np.all(n <= hi)
    assert float(n @ costs) <= budget
    best = solve_reference_cost_dp(budget, costs, lo, hi, p=p)
    gap = objective(best, p=p) - objective(n, p=p)
    # Docstring guarantee: OPT - value <= the largest marginal gain still available.
    assert gap <= float(marginal_gain(lo, p).max()) + 1e-12
    assert gap >= -1e-12


@pytest.mark.parametrize("m", [32, 48, 64])
def test_gap_below_one_percent_from_32_prompts(m):
    rng = np.random.default_rng(m)
    for _ in range(3):
        p, costs, lo, hi, budget = _instance(rng, m)
        n = solve_cost_aware(budget, costs.astype(float), lo, hi, p=p)
        best = objective(solve_reference_cost_dp(budget, costs, lo, hi, p=p), p=p)
        assert objective(n, p=p) >= 0.99 * best


def test_unit_costs_match_exact_solver_value():
    rng = np.random.default_rng(2)
    p = rng.random(40)
    budget = 40 * 6
    n = solve_cost_aware(float(budget), np.ones(40), 2, 16, p=p)
    exact = solve_unit_cost(budget, 2, 16, p=p)
    assert objective(n, p=p) == pytest.approx(objective(exact, p=p), abs=1e-12)


def test_beta_mode_and_infeasible():
    a = np.array([1.0, 3.0, 8.0])
    b = np.array([1.0, 9.0, 2.0])
    costs = np.array([1.0, 0.5, 2.0])
    n = solve_cost_aware(20.0, costs, 2, 10, a=a, b=b)
    assert float(n @ costs) <= 20.0 and np.all(n >= 2)
    with pytest.raises(InfeasibleBudget):
        solve_cost_aware(6.0, costs, 2, 10, a=a, b=b)
