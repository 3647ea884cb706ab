"""Exact unit-cost solver (heap and threshold paths) against the paper's DP."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_service.engine import (
    InfeasibleBudget,
    objective,
    solve_unit_cost,
    value,
)
from knapsack_service.engine.reference import solve_reference_dp


@st.composite
def instances(draw, min_lo=1, beta=False):
    m = draw(st.integers(1, 12))
    lo = np.array(draw(st.lists(st.integers(min_lo, 4), min_size=m, max_size=m)), np.int64)
    width = np.array(draw(st.lists(st.integers(0, 10), min_size=m, max_size=m)), np.int64)
    hi = lo + width
    if beta:
        a = np.array(draw(st.lists(st.floats(0.2, 50.0), min_size=m, max_size=m)))
        b = np.array(draw(st.lists(st.floats(0.2, 50.0), min_size=m, max_size=m)))
        gains = {"a": a, "b": b}
    else:
        grid = draw(st.booleans())
        if grid:  # 16-sample estimates: many exact ties
            p = np.array(draw(st.lists(st.integers(0, 16), min_size=m, max_size=m))) / 16
        else:
            p = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=m, max_size=m)))
        gains = {"p": p}
    budget = draw(st.integers(int(lo.sum()), int(hi.sum())))
    return budget, lo, hi, gains


@given(instances())
@settings(max_examples=150, deadline=None)
def test_fast_solver_reaches_dp_optimum(instance):
    budget, lo, hi, gains = instance
    reference = solve_reference_dp(budget, lo, hi, **gains)
    for method in ("heap", "threshold"):
        n = solve_unit_cost(budget, lo, hi, method=method, **gains)
        assert n.sum() == budget
        assert np.all(n >= lo) and np.all(n <= hi)
        assert objective(n, **gains) == pytest.approx(objective(reference, **gains), abs=1e-12)


@given(instances(beta=True))
@settings(max_examples=60, deadline=None)
def test_fast_solver_reaches_dp_optimum_beta(instance):
    budget, lo, hi, gains = instance
    reference = solve_reference_dp(budget, lo, hi, **gains)
    n = solve_unit_cost(budget, lo, hi, **gains)
    assert n.sum() == budget
    assert objective(n, **gains) == pytest.approx(objective(reference, **gains), abs=1e-12)


@st.composite
def large_instances(draw):
    m = draw(st.integers(1, 200))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lo = rng.integers(0, 4, m)
    hi = lo + rng.integers(0, 40, m)
    kind = draw(st.sampled_from(["grid", "continuous", "equal", "beta"]))
    if kind == "grid":
        gains = {"p": rng.integers(0, 17, m) / 16}
    elif kind == "continuous":
        gains = {"p": rng.random(m)}
    elif kind == "equal":
        gains = {"p": np.full(m, 0.5)}
    else:
        gains = {"a": rng.uniform(0.3, 30, m), "b": rng.uniform(0.3, 30, m)}
    budget = int(rng.integers(lo.sum(), hi.sum() + 1))
    sample = draw(st.integers(1, 64))
    open_limit = draw(st.integers(0, 16))
    return budget, lo, hi, gains, sample, open_limit


@given(large_instances())
@settings(max_examples=150, deadline=None)
def test_heap_and_threshold_paths_agree(instance):
    budget, lo, hi, gains, sample, open_limit = instance
    heap = solve_unit_cost(budget, lo, hi, method="heap", **gains)
    threshold = solve_unit_cost(
        budget, lo, hi, method="threshold", sample_size=sample, open_units_limit=open_limit, **gains
    )
    np.testing.assert_array_equal(heap, threshold)
    assert heap.sum() == budget


def test_ties_go_to_lower_index():
    p = np.full(4, 0.5)
    n = solve_unit_cost(4 * 2 + 3, 2, 10, p=p)
    np.testing.assert_array_equal(n, [3, 3, 3, 2])
    n = solve_unit_cost(4 * 2 + 3, 2, 10, p=p, method="threshold", open_units_limit=0)
    np.testing.assert_array_equal(n, [3, 3, 3, 2])


def test_zero_gain_units_fill_in_index_order():
    # p in {0, 1} gives no value at all: the spare budget goes to the lowest indices.
    p = np.array([1.0, 0.0, 1.0])
    np.testing.assert_array_equal(solve_unit_cost(9, 2, 4, p=p), [4, 3, 2])


def test_single_prompt_and_bounds():
    np.testing.assert_array_equal(solve_unit_cost(7, 2, 9, p=np.array([0.3])), [7])
    lo = np.array([5, 1, 1])
    hi = np.array([5, 3, 8])
    n = solve_unit_cost(12, lo, hi, p=np.array([0.5, 0.5, 0.5]))
    assert n[0] == 5 and n.sum() == 12 and n[1] <= 3
    # Unequal rates: the hard prompt (p = 0.1) needs many rollouts, the easy one few;
    # an even spread (or any allocation but the optimum) fails here.
    p = np.array([0.1, 0.5, 0.9])
    n = solve_unit_cost(24, 2, 16, p=p)
    best = solve_reference_dp(24, 2, 16, p=p)
    assert objective(n, p=p) == pytest.approx(objective(best, p=p), abs=1e-15)
    assert objective(n, p=p) > objective(np.array([8, 8, 8]), p=p) + 1e-3
    assert n[0] > n[1] > n[2]


def test_budget_at_both_ends_and_outside():
    p = np.array([0.2, 0.7])
    np.testing.assert_array_equal(solve_unit_cost(4, 2, 6, p=p), [2, 2])
    np.testing.assert_array_equal(solve_unit_cost(12, 2, 6, p=p), [6, 6])
    with pytest.raises(InfeasibleBudget) as info:
        solve_unit_cost(13, 2, 6, p=p)
    assert (info.value.low, info.value.high, info.value.field) == (4, 12, "budget")


def test_min_n_zero_within_one_gain_of_optimum():
    # Value(0) = Value(1) = 0 breaks concavity; the envelope solution is within one
    # marginal gain of the DP optimum (docs of solve.py).
    rng = np.random.default_rng(3)
    for _ in range(50):
        m = int(rng.integers(1, 8))
        p = rng.random(m)
        hi = rng.integers(0, 8, m)
        budget = int(rng.integers(0, hi.sum() + 1))
        n = solve_unit_cost(budget, 0, hi, p=p)
        best = solve_reference_dp(budget, 0, hi, p=p)
        assert n.sum() == budget
        bound = float(np.max(value(2, p))) + 1e-12
        assert objective(best, p=p) - objective(n, p=p) <= bound


def test_large_batch_threshold_path_spends_budget():
    rng = np.random.default_rng(11)
    p = rng.integers(1, 16, 50_000) / 16
    n = solve_unit_cost(400_000, 2, 128, p=p, method="threshold")
    heap = solve_unit_cost(400_000, 2, 128, p=p, method="heap")
    np.testing.assert_array_equal(n, heap)
