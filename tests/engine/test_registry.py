"""The strategy registry: every strategy one module, served by `allocate` unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from knapsack_client import RunSettings
from knapsack_service.engine import STRATEGIES, EngineInputError, InfeasibleBudget, allocate
from knapsack_service.engine.limits import Limits
from knapsack_service.engine.strategies import (
    REGISTRY,
    AllocationResult,
    Problem,
    Strategy,
    register,
)


def _most_uncertain_first(problem: Problem, limits: Limits) -> AllocationResult:
    # A toy strategy: every unit to the prompt closest to p = 1/2, up to max_n.
    assert problem.rates is not None
    order = np.argsort(np.abs(np.nan_to_num(problem.rates, nan=1.0) - 0.5), kind="stable")
    n = np.full(problem.size, limits.min_n, np.int64)
    left = int(problem.budget) - int(n.sum())
    for i in order:
        give = min(left, limits.max_n - limits.min_n)
        n[i] += give
        left -= give
    if left:
        raise InfeasibleBudget(problem.budget, problem.size * limits.min_n, 0)
    return AllocationResult(n=n, value=0.0)


@pytest.fixture
def toy_strategy() -> Iterator[str]:
    register(Strategy(name="toy-greedy", solve=_most_uncertain_first, needs="rates"))
    try:
        yield "toy-greedy"
    finally:
        del REGISTRY["toy-greedy"]


def test_registry_holds_every_strategy_and_the_wire_accepts_them():
    assert {"filter", "knapsack", "knapsack-bayes", "uniform"} <= set(STRATEGIES)
    assert tuple(sorted(REGISTRY)) == STRATEGIES
    for name in STRATEGIES:
        assert RunSettings(strategy=name).strategy == name


def test_a_registered_strategy_is_served_with_the_common_checks(toy_strategy: str):
    rates = np.array([0.1, 0.45, np.nan])
    result = allocate(toy_strategy, rates, 12, min_n=2, max_n=6)
    assert result.n.tolist() == [4, 6, 2]  # 0.45, then 0.1, then unseen
    with pytest.raises(EngineInputError) as info:
        allocate(toy_strategy, rates, 12, min_n=7, max_n=6)
    assert info.value.field == "min_n"
    with pytest.raises(EngineInputError) as info:
        allocate(toy_strategy, rates, 12, min_n=2, max_n=6, costs=np.ones(3))
    assert info.value.field == "costs"
    with pytest.raises(EngineInputError) as info:
        allocate(toy_strategy, None, 12, min_n=2, max_n=6, posterior=np.ones((3, 2)))
    assert info.value.field == "success_rates"


def test_a_name_registers_once():
    with pytest.raises(ValueError):
        register(Strategy(name="knapsack", solve=_most_uncertain_first, needs="rates"))


def test_limits_resolve_defaults_and_caps():
    limits = Limits.check(2, 16, default_n=40, positive_n=None, negative_n=20)
    assert limits == Limits(min_n=2, max_n=16, default_n=16, positive_n=2, negative_n=16)
    for kwargs, field in [
        ({"min_n": -1}, "min_n"),
        ({"max_n": 1.5}, "max_n"),
        ({"default_n": True}, "default_n"),
        ({"positive_n": -3}, "positive_n"),
    ]:
        with pytest.raises(EngineInputError) as info:
            Limits.check(**{"min_n": 2, "max_n": 16, **kwargs})
        assert info.value.field == field
