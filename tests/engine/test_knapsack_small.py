"""The one-call small-batch knapsack path equals the general path, errors included."""

from __future__ import annotations

import numpy as np
import pytest

from knapsack_service.engine import EngineInputError, allocate


def _general(rates: np.ndarray, budget: float, **kw: object) -> tuple:
    # The general path: the threshold solver is never taken by the one-call path.
    return _outcome(rates, budget, **{**kw, "method": "threshold"})


def _outcome(rates: np.ndarray, budget: float, **kw: object) -> tuple:
    try:
        result = allocate("knapsack", rates, budget, **kw)  # type: ignore[arg-type]
    except EngineInputError as error:
        return type(error).__name__, str(error), error.field
    return "ok", result.n.dtype, result.n.tobytes(), repr(result.value)


@pytest.mark.parametrize("fallback", [False, True])
def test_small_path_matches_general_path(fallback: bool) -> None:
    rng = np.random.default_rng(2509 + fallback)
    feasible = 0
    for trial in range(300):
        m = int(rng.integers(0, 80))
        grid = [0.0, 1.0, 0.5, 1e-300, 1.0 - 1e-16, 5e-324, 0.25]
        kind = trial % 3
        if kind == 0:
            rates = rng.binomial(16, rng.random(m)) / 16.0
        elif kind == 1:
            rates = rng.random(m)
        else:
            rates = rng.choice(grid, m)
        rates[rng.random(m) < 0.1] = np.nan
        if trial % 37 == 0 and m:
            rates[m // 2] = rng.choice([-0.1, 1.5, np.inf])
        min_n = int(rng.integers(0, 4))
        max_n = int(rng.integers(min_n, 40))
        kw = {"min_n": min_n, "max_n": max_n, "fallback": fallback}
        kw["default_n"] = int(rng.integers(0, 10))
        if trial % 4 == 0:
            kw["positive_n"] = int(rng.integers(0, 10))
            kw["negative_n"] = int(rng.integers(0, 10))
        if trial % 5 == 0:
            kw["method"] = "heap"  # the one-call path, as "auto" takes it here
        budget: float = int(rng.integers(0, m * max_n + 5))
        if trial % 29 == 0:
            budget += 0.5
        expected = _general(rates, budget, **kw)
        assert _outcome(rates, budget, **kw) == expected
        feasible += expected[0] == "ok"
    assert feasible > 50


def test_paper_batch_matches_general_path() -> None:
    rng = np.random.default_rng(7)
    rates = rng.binomial(16, rng.random(256)) / 16.0
    rates[rng.random(256) < 0.1] = np.nan
    for fallback in (False, True):
        kw = {"min_n": 2, "max_n": 128, "fallback": fallback}
        assert _outcome(rates, 2048, **kw) == _general(rates, 2048, **kw)
