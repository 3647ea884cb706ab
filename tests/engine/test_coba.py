"""CoBA-RL's allocation against a literal re-implementation of the authors' loops."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from knapsack_client import RunSettings
from knapsack_service.engine import allocate
from knapsack_service.engine.errors import EngineInputError, InfeasibleBudget
from knapsack_service.engine.strategies.coba import (
    CobaParams,
    capability_shape,
    coba_allocate,
    coba_value,
    temperature,
)


def reference(rates: list[float | None], budget: int, failure_rate: float) -> list[int]:
    """The BetaAllocator's allocate(), written from reading it: scalar loops, lists."""
    prm = CobaParams()
    m = len(rates)
    if all(r is None for r in rates) or budget < m * prm.n_low:
        return [budget // m + (1 if i < budget % m else 0) for i in range(m)]
    p = [0.5 if r is None else r for r in rates]
    f = failure_rate
    if f <= 0.5:
        f = 1.0 / (1.0 + math.exp(-10.0 * (f - 0.5)))
    a = max(1.0, min(prm.beta_sum - 1.0, 1.0 + (prm.beta_sum - 2.0) * f))
    b = prm.beta_sum - a

    def value(q: float, n: int, tau: float) -> float:
        q = min(max(q, prm.smoothing), 1 - prm.smoothing)
        log_b = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
        pdf = math.exp((a - 1) * math.log(q) + (b - 1) * math.log(1 - q) - log_b)
        return (1 - math.exp(-n / tau * q * (1 - q))) * pdf

    base = [prm.n_low] * m
    extra = [0] * m
    left = budget - m * prm.n_low
    hard = [i for i in range(m) if p[i] < 0.05]
    easy = [i for i in range(m) if p[i] > 0.99]
    explore = [i for i in range(m) if 0.05 <= p[i] <= 0.99]
    if explore:
        ratio = 0.8 if len(explore) > m / 2 else 0.6 + 0.2 * (len(explore) / m * 2)
        budget_x = int(left * ratio)
        q = [min(max(p[i], prm.smoothing), 1 - prm.smoothing) for i in explore]
        mean = sum(q) / len(q)
        var = sum((x - mean) ** 2 for x in q) / len(q)
        tau = prm.tau_min + (prm.tau_max - prm.tau_min) * min(max(var / prm.var_max, 0), 1)
        n = [prm.n_low] * len(explore)
        heap = [(-(value(p[i], 3, tau) - value(p[i], 2, tau)), k) for k, i in enumerate(explore)]
        heapq.heapify(heap)
        r = budget_x
        while r > 0 and heap:
            _, k = heapq.heappop(heap)
            n[k] += 1
            r -= 1
            if n[k] < prm.n_up:
                i = explore[k]
                heapq.heappush(heap, (-(value(p[i], n[k] + 1, tau) - value(p[i], n[k], tau)), k))
        for k, i in enumerate(explore):
            extra[i] = n[k] - prm.n_low
        left -= sum(n) - len(explore) * prm.n_low

    def uniform(group: list[int]) -> None:
        nonlocal left
        room = [i for i in group if base[i] + extra[i] < prm.n_up]
        if not room or left <= 0:
            return
        share, rem = divmod(left, len(room))
        for k, i in enumerate(room):
            give = min(share + (1 if k < rem else 0), prm.n_up - base[i] - extra[i])
            extra[i] += give
            left -= give

    if left > 0 and hard:
        room = [i for i in hard if base[i] + extra[i] < prm.n_up]
        weights = [(i, (1 - min(max(p[i], 1e-6), 1 - 1e-6)) ** prm.weight_alpha) for i in room]
        total = sum(w for _, w in weights)
        for i, w in weights:
            give = min(int(left * w / total), prm.n_up - base[i] - extra[i])
            extra[i] += give
            left -= give
        uniform(hard)
    for group in (explore, easy):
        if left > 0:
            uniform(group)
    return [base[i] + extra[i] for i in range(m)]


def random_batch(rng: np.random.Generator) -> tuple[np.ndarray, int, float]:
    m = int(rng.integers(1, 80))
    grid = np.array([0.0, 1 / 16, 0.02, 0.2, 1 / 3, 0.5, 0.7, 0.995, 1.0, np.nan])
    rates = np.where(rng.random(m) < 0.5, rng.choice(grid, size=m), rng.random(m))
    budget = int(rng.integers(0, 16 * m + 1))
    return rates, budget, float(rng.random())


def test_matches_the_authors_rule_on_random_batches() -> None:
    rng = np.random.default_rng(2026)
    checked = 0
    for _ in range(1000):
        rates, budget, failure = random_batch(rng)
        expected = reference([None if np.isnan(r) else float(r) for r in rates], budget, failure)
        if sum(expected) != budget:  # their even spread stops at n_up; ours goes on (documented)
            continue
        got = coba_allocate(rates, budget, failure)
        assert got.tolist() == expected, (rates.tolist(), budget, failure)
        checked += 1
    assert checked > 950


def test_spends_the_budget_within_the_limits() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        rates, budget, failure = random_batch(rng)
        n = coba_allocate(rates, budget, failure)
        assert n.sum() == budget and n.min() >= 0 and n.max() <= CobaParams().n_up
        if budget >= 2 * rates.size and not np.isnan(rates).all():
            assert n.min() >= CobaParams().n_low


def test_capability_moves_the_value_from_easy_to_hard_prompts() -> None:
    # Weak model (failure 0.9): the density peaks at high p (exploit); strong model
    # (failure 0.2, sharpened): at low p (explore).
    weak, strong = capability_shape(0.9, 11.0), capability_shape(0.2, 11.0)
    assert weak[0] > weak[1] and strong[0] < strong[1]
    assert sum(weak) == sum(strong) == 11.0
    rates = np.array([0.2, 0.8])
    assert coba_allocate(rates, 40, 0.9).tolist()[1] > coba_allocate(rates, 40, 0.9).tolist()[0]
    assert coba_allocate(rates, 40, 0.2).tolist()[0] > coba_allocate(rates, 40, 0.2).tolist()[1]


def test_value_is_concave_in_n_so_the_greedy_is_optimal() -> None:
    a, b = capability_shape(0.6, 11.0)
    tau = temperature(np.array([0.1, 0.5, 0.9]), CobaParams())
    n = np.arange(1, 130)
    for p in (0.02, 0.3, 0.5, 0.97):
        gains = np.diff(coba_value(n, np.full(n.size, p), a, b, tau, 0.01))
        assert np.all(gains >= 0) and np.all(np.diff(gains) <= 1e-15)


def test_nothing_seen_or_too_small_a_budget_spreads_evenly() -> None:
    assert coba_allocate(np.full(4, np.nan), 10, 0.5).tolist() == [3, 3, 2, 2]
    assert coba_allocate(np.array([0.5, 0.2, 0.9]), 5, 0.5).tolist() == [2, 2, 1]


def test_bad_inputs_name_their_field() -> None:
    with pytest.raises(EngineInputError) as bad_rates:
        coba_allocate(np.array([0.5, 1.5]), 8, 0.5)
    assert bad_rates.value.field == "success_rates"
    with pytest.raises(EngineInputError) as bad_failure:
        coba_allocate(np.array([0.5]), 8, 1.5)
    assert bad_failure.value.field == "failure_rate"
    with pytest.raises(EngineInputError) as bad_budget:
        coba_allocate(np.array([0.5]), 2.5, 0.5)  # type: ignore[arg-type]
    assert bad_budget.value.field == "budget"
    with pytest.raises(InfeasibleBudget):
        coba_allocate(np.array([0.5, 0.5]), 257, 0.5)


def test_coba_is_a_registered_strategy_with_the_batch_as_its_capability() -> None:
    rates = np.array([0.0, 0.3, 0.5, 0.9, np.nan, 1.0])
    served = allocate("coba", rates, 48, min_n=2, max_n=128)
    failure = 1.0 - float(np.nanmean(rates))
    assert served.n.tolist() == coba_allocate(rates, 48, failure).tolist()
    assert served.value > 0.0
    # The run's limits are CoBA's n_low and n_up; below M * min_n is infeasible.
    capped = allocate("coba", rates, 48, min_n=1, max_n=9)
    assert capped.n.max() <= 9 and capped.n.sum() == 48
    with pytest.raises(InfeasibleBudget):
        allocate("coba", rates, 11, min_n=2, max_n=128)
    with pytest.raises(EngineInputError) as info:
        allocate("coba", rates, 48, min_n=2, max_n=128, costs=np.ones(6))
    assert info.value.field == "costs"
    assert RunSettings(strategy="coba").strategy == "coba"
