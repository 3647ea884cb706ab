"""allocate(): the four strategies of API.md, their feasible ranges and input errors."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_service.engine import (
    EngineInputError,
    InfeasibleBudget,
    allocate,
    fallback_need,
    objective,
    value,
)
from knapsack_service.engine.reference import solve_reference_cost_dp, solve_reference_dp

NAN = math.nan


def test_uniform_spreads_remainder_to_lowest_indices():
    result = allocate("uniform", np.array([0.1, NAN, 1.0]), 10, min_n=2, max_n=8)
    np.testing.assert_array_equal(result.n, [4, 3, 3])
    assert result.value == pytest.approx(float(value(4, 0.1)))
    assert result.cost is None


def test_uniform_feasible_ends_and_error():
    rates = np.full(3, 0.5)
    assert allocate("uniform", rates, 6, min_n=2, max_n=8).n.tolist() == [2, 2, 2]
    assert allocate("uniform", rates, 24, min_n=2, max_n=8).n.tolist() == [8, 8, 8]
    with pytest.raises(InfeasibleBudget) as info:
        allocate("uniform", rates, 25, min_n=2, max_n=8)
    assert (info.value.low, info.value.high) == (6, 24)
    assert "[6, 24]" in str(info.value)


def test_filter_skips_solved_and_unsolved():
    rates = np.array([0.0, 0.5, 1.0, NAN, 0.25])
    result = allocate("filter", rates, 8 + 9, min_n=2, max_n=8, default_n=8)
    np.testing.assert_array_equal(result.n, [0, 5, 0, 8, 4])
    with pytest.raises(InfeasibleBudget) as info:
        allocate("filter", rates, 8 + 17, min_n=2, max_n=8)
    assert (info.value.low, info.value.high) == (12, 24)


def test_filter_all_extreme_only_fixed_budget():
    rates = np.array([0.0, 1.0])
    assert allocate("filter", rates, 0, min_n=2, max_n=8).n.tolist() == [0, 0]
    with pytest.raises(InfeasibleBudget):
        allocate("filter", rates, 4, min_n=2, max_n=8)


def test_knapsack_fixed_groups_and_optimum():
    rates = np.array([0.0, 1.0, NAN, 0.5, 0.0625])
    result = allocate("knapsack", rates, 40, min_n=2, max_n=32, positive_n=1, negative_n=3)
    n = result.n
    assert n[:3].tolist() == [3, 1, 8]
    assert n.sum() == 40
    best = solve_reference_dp(40 - 12, 2, 32, p=rates[3:])
    assert result.value == pytest.approx(objective(best, p=rates[3:]), abs=1e-12)


def test_knapsack_zero_fixed_groups_mean_skip():
    rates = np.array([0.0, 1.0, 0.3])
    result = allocate("knapsack", rates, 7, min_n=2, max_n=8, positive_n=0, negative_n=0)
    assert result.n.tolist() == [0, 0, 7]


def test_knapsack_feasible_range_without_fallback():
    rates = np.array([0.0, 0.5, 0.5, NAN])
    # fixed = 2 (p = 0) + 8 (unseen); middle 2 prompts in [2, 16].
    assert allocate("knapsack", rates, 14, min_n=2, max_n=16).n.sum() == 14
    assert allocate("knapsack", rates, 42, min_n=2, max_n=16).n.tolist() == [2, 16, 16, 8]
    with pytest.raises(InfeasibleBudget) as info:
        allocate("knapsack", rates, 43, min_n=2, max_n=16)
    assert (info.value.low, info.value.high) == (14, 42)


def test_all_unseen():
    rates = np.full(4, NAN)
    assert allocate("knapsack", rates, 32, min_n=2, max_n=16).n.tolist() == [8] * 4
    assert allocate("filter", rates, 32, min_n=2, max_n=16).n.tolist() == [8] * 4
    with pytest.raises(InfeasibleBudget):
        allocate("knapsack", rates, 33, min_n=2, max_n=16)


def test_fixed_counts_capped_at_max_n():
    rates = np.array([NAN, 1.0])
    result = allocate("knapsack", rates, 8, min_n=2, max_n=4, default_n=8, positive_n=9)
    assert result.n.tolist() == [4, 4]


def test_fallback_need():
    need = fallback_need(np.array([0.5, 0.9, 0.01, 0.3]), 128)
    # int(min(max_n, ln 0.1 / ln max(p, 1-p))), truncated as the paper's int() does:
    # 0.5 -> 3.32 -> 3, 0.9 -> 21.85 -> 21, 0.01 -> 229 -> 128, 0.3 -> 6.46 -> 6.
    assert need.tolist() == [3, 21, 128, 6]


def test_fallback_stages():
    rates = np.array([0.5, 0.0, 0.0, 1.0, NAN])
    kwargs = {"min_n": 2, "max_n": 8, "default_n": 4, "fallback": True}
    # Fixed: 2 + 2 + 2 + 2 + 4 = 12; estimated = int(3.32) = 3 rollouts beyond min_n.
    assert allocate("knapsack", rates, 13, **kwargs).n.tolist() == [3, 2, 2, 2, 4]
    # room 3 is not above the estimate: no fallback, the knapsack spends it.
    assert allocate("knapsack", rates, 15, **kwargs).n.tolist() == [5, 2, 2, 2, 4]
    # room 4 > 3: the knapsack keeps 3 (on top of min_n: the paper's quirk), the
    # surplus goes to the p = 0 prompts evenly, remainder to the lowest index.
    assert allocate("knapsack", rates, 16, **kwargs).n.tolist() == [5, 3, 2, 2, 4]
    assert allocate("knapsack", rates, 26, **kwargs).n.tolist() == [5, 8, 7, 2, 4]
    # Capped at max_n (the paper's code is not): back to the knapsack, then p = 1, unseen.
    assert allocate("knapsack", rates, 28, **kwargs).n.tolist() == [6, 8, 8, 2, 4]
    assert allocate("knapsack", rates, 30, **kwargs).n.tolist() == [8, 8, 8, 2, 4]
    assert allocate("knapsack", rates, 33, **kwargs).n.tolist() == [8, 8, 8, 5, 4]
    assert allocate("knapsack", rates, 40, **kwargs).n.tolist() == [8, 8, 8, 8, 8]
    with pytest.raises(InfeasibleBudget) as info:
        allocate("knapsack", rates, 41, **kwargs)
    assert (info.value.low, info.value.high) == (12, 40)


def test_fallback_without_unsolved_prompts_feeds_the_others():
    kwargs = {"min_n": 2, "max_n": 8, "default_n": 4, "fallback": True}
    # No p = 0 prompt: the surplus goes to the other prompts (p = 1, unseen) in index order.
    rates = np.array([0.5, 1.0, NAN])
    assert allocate("knapsack", rates, 14, **kwargs).n.tolist() == [5, 4, 5]
    # No 0 < p < 1 prompt: all of it to the p = 0 prompts.
    assert allocate("knapsack", np.array([0.0, 0.0, 1.0]), 12, **kwargs).n.tolist() == [5, 5, 2]
    # Nobody else (the paper's code divides by zero): the knapsack spends everything.
    both = allocate("knapsack", np.array([0.5, 0.25]), 16, **kwargs)
    assert both.n.tolist() == [8, 8]


@given(
    rates=st.lists(
        st.one_of(st.sampled_from([0.0, 1.0, NAN]), st.floats(0.0, 1.0)), min_size=1, max_size=10
    ),
    data=st.data(),
)
@settings(max_examples=100, deadline=None)
def test_fallback_and_plain_always_spend_budget(rates, data):
    p = np.array(rates)
    min_n = data.draw(st.integers(1, 3))
    max_n = data.draw(st.integers(min_n, 12))
    for fallback in (False, True):
        try:
            low_high = None
            allocate("knapsack", p, 0, min_n=min_n, max_n=max_n, fallback=fallback)
        except InfeasibleBudget as exc:
            low_high = (int(exc.low), int(exc.high))
        if low_high is None:
            continue
        budget = data.draw(st.integers(*low_high))
        result = allocate("knapsack", p, budget, min_n=min_n, max_n=max_n, fallback=fallback)
        assert result.n.sum() == budget
        assert np.all(result.n <= max_n) and np.all(result.n >= 0)


def test_bayes_values_every_prompt():
    posterior = np.array([[1.0, 1.0], [2.0, 30.0], [30.0, 2.0], [5.0, 5.0]])
    result = allocate("knapsack-bayes", None, 32, min_n=2, max_n=16, posterior=posterior)
    assert result.n.sum() == 32
    assert np.all(result.n >= 2)
    best = solve_reference_dp(32, 2, 16, a=posterior[:, 0], b=posterior[:, 1])
    assert result.value == pytest.approx(
        objective(best, a=posterior[:, 0], b=posterior[:, 1]), abs=1e-12
    )
    with pytest.raises(InfeasibleBudget):
        allocate("knapsack-bayes", None, 7, min_n=2, max_n=16, posterior=posterior)


def test_costs_knapsack_within_budget():
    rates = np.array([0.5, 0.2, 1.0, 0.05])
    costs = np.array([1.0, 2.5, 1.0, 0.5])
    result = allocate("knapsack", rates, 30.0, min_n=2, max_n=16, costs=costs)
    assert result.cost == pytest.approx(float(result.n @ costs))
    assert result.cost <= 30.0
    assert result.n[2] == 2
    # Against the exact cost DP (costs doubled to integers): min_n everywhere, or
    # any allocation that leaves the budget unspent, falls short of it.
    middle = np.array([0, 1, 3])
    best = solve_reference_cost_dp(
        60 - 4, (2 * costs[middle]).astype(np.int64), 2, 16, p=rates[middle]
    )
    assert result.value == pytest.approx(objective(best, p=rates[middle]), rel=0.01)
    assert result.cost > 30.0 - costs.max()
    with pytest.raises(InfeasibleBudget) as info:
        allocate("knapsack", rates, 3.0, min_n=2, max_n=16, costs=costs)
    assert info.value.low == pytest.approx(10.0) and info.value.high == math.inf


def test_costs_bayes():
    posterior = np.array([[1.0, 1.0], [2.0, 8.0]])
    costs = np.array([1.0, 2.0])
    result = allocate(
        "knapsack-bayes", None, 20.0, min_n=2, max_n=16, posterior=posterior, costs=costs
    )
    assert result.cost <= 20.0 and np.all(result.n >= 2)
    a, b = posterior[:, 0], posterior[:, 1]
    best = solve_reference_cost_dp(20, costs.astype(np.int64), 2, 16, a=a, b=b)
    assert result.value == pytest.approx(objective(best, a=a, b=b), rel=1e-9)
    assert result.cost > 20.0 - costs.max()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"strategy": "uniform", "costs": np.ones(2)}, "costs"),
        ({"strategy": "filter", "costs": np.ones(2)}, "costs"),
        ({"costs": np.ones(3)}, "costs"),
        ({"costs": np.array([1.0, -1.0])}, "costs"),
        ({"costs": np.ones(2), "fallback": True}, "costs"),
        ({"success_rates": np.array([0.5, 1.5])}, "success_rates"),
        ({"success_rates": np.array([0.5, np.inf])}, "success_rates"),
        ({"success_rates": None}, "success_rates"),
        ({"min_n": 5, "max_n": 4}, "min_n"),
        ({"budget": -1}, "budget"),
        ({"budget": 8.5}, "budget"),
        ({"budget": math.nan}, "budget"),
        ({"strategy": "knapsack-bayes"}, "posterior"),
        ({"strategy": "knapsack-bayes", "posterior": np.array([[1.0, 0.0], [1, 1]])}, "posterior"),
        ({"posterior": np.ones((3, 2))}, "posterior"),
        ({"strategy": "greedy"}, "strategy"),
        ({"default_n": -2}, "default_n"),
        ({"negative_n": 1.5}, "negative_n"),
    ],
)
def test_input_errors_name_the_field(kwargs, field):
    args = {"strategy": "knapsack", "success_rates": np.array([0.5, 0.25]), "budget": 8}
    args.update(kwargs)
    with pytest.raises(EngineInputError) as info:
        allocate(
            args.pop("strategy"),
            args.pop("success_rates"),
            args.pop("budget"),
            **{"min_n": 2, "max_n": 8, **args},
        )
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_single_prompt_every_strategy():
    p = np.array([0.4])
    for strategy in ("uniform", "filter", "knapsack"):
        assert allocate(strategy, p, 5, min_n=2, max_n=8).n.tolist() == [5]
    post = np.array([[2.0, 3.0]])
    assert allocate("knapsack-bayes", None, 5, min_n=2, max_n=8, posterior=post).n.tolist() == [5]


def test_strategies_compare_on_one_objective():
    rng = np.random.default_rng(5)
    p = rng.integers(1, 16, 64) / 16
    values = {s: allocate(s, p, 64 * 8, min_n=2, max_n=64).value for s in ("uniform", "knapsack")}
    assert values["knapsack"] > values["uniform"] * 1.01
