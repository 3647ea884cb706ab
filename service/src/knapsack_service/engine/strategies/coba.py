"""coba: CoBA-RL's allocation (Yao et al., 2026, arXiv 2602.03048), as its code does it.

Written from reading the authors' `recipe/coba_rl/budget_allocators.py`
(`BetaAllocator`, GitHub Within-yao/CoBA-RL) and their run script; facts carried
over, not code. The rule, for a batch of M prompts and a budget B:

1. Capability. The caller passes the model's global failure rate f (CoBA: one
   minus the mean, over the previous step's prompts, of each prompt's success
   rate in that step; a sliding window of 1 step in their run script). Late in
   training (f <= 0.5) it is sharpened: f' = 1 / (1 + exp(-10 (f - 0.5))).
2. Capability-oriented value. A Beta(a, b) density over p with a + b = S
   (`beta_sum`, 11 in their run script), a = clip(1 + (S - 2) f', 1, S - 1):
   a weak model (f near 1) values easy prompts most ("exploit first"), a strong
   one values hard prompts ("then explore"). With p clipped to [0.01, 0.99],
   V(N, p) = (1 - exp(-N p (1 - p) / tau)) * BetaPdf(p; a, b), where
   tau = tau_min + (tau_max - tau_min) * clip(Var(p) / var_max, 0, 1) over the
   exploration prompts (3, 12 and 1/6 by default).
3. Allocation. Every prompt gets n_low (2). Prompts split into very hard
   (p < 0.05), very easy (p > 0.99) and exploration (the rest; unseen prompts
   count as p = 0.5). A share r of the budget left, r = 0.8 when the
   exploration prompts are more than half the batch, else 0.6 + 0.2 * 2 * share,
   goes to the exploration prompts by heap greedy on V's marginal gains (each up
   to n_up). What is left goes to the very hard prompts, weighted by (1 - p)
   (integer parts, then evenly), then to the exploration prompts, then to the
   very easy ones, evenly, each up to n_up.

When no prompt has been seen, or the budget is below M * n_low, the budget is
spread evenly, as theirs does. Differences from their code, both harmless: ties
in the heap go to the lowest index (theirs too, through heapq's tuple order), and
the answer always sums to the budget when M * n_up allows it (theirs can fall
short only if every group reaches n_up). Pure numpy: arrays in, arrays out.

As a registered strategy (`"strategy": "coba"` on the wire) the service has no
previous step to measure the capability on, so it uses the batch's own estimates:
f = 1 - mean of the seen prompts' success rates (1 when none is seen); n_low and
n_up are the run's min_n and max_n (2 and 128 by default, CoBA's own values), and
a budget below M * min_n is infeasible as for every other strategy. A trainer
that keeps CoBA's state calls `coba_allocate` with its own capability, as the
simulator's `CobaPolicy` does.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from knapsack_service.engine.errors import EngineInputError, InfeasibleBudget
from knapsack_service.engine.limits import Limits
from knapsack_service.engine.solve import objective
from knapsack_service.engine.strategies._base import (
    AllocationResult,
    Problem,
    Strategy,
    register,
)
from knapsack_service.engine.strategies._checks import check_range

#: Below this estimate a prompt is "very hard", above `VERY_EASY_ABOVE` "very easy".
VERY_HARD_BELOW = 0.05
VERY_EASY_ABOVE = 0.99
#: Estimate given to prompts never seen (CoBA's default).
UNSEEN_RATE = 0.5


@dataclass(frozen=True)
class CobaParams:
    """CoBA's constants; defaults from the authors' code and run script."""

    n_low: int = 2
    n_up: int = 128
    beta_sum: float = 11.0
    tau_min: float = 3.0
    tau_max: float = 12.0
    var_max: float = 0.1667
    exploration_ratio: float = 0.8
    weight_alpha: float = 1.0
    smoothing: float = 0.01


def capability_shape(failure_rate: float, beta_sum: float) -> tuple[float, float]:
    """The Beta(a, b) of the capability-oriented value for a global failure rate."""
    if not 0.0 <= failure_rate <= 1.0:
        raise EngineInputError("failure_rate must lie in [0, 1]", field="failure_rate")
    f = failure_rate
    if f <= 0.5:
        f = 1.0 / (1.0 + math.exp(-10.0 * (f - 0.5)))
    a = min(max(1.0 + (beta_sum - 2.0) * f, 1.0), beta_sum - 1.0)
    return a, beta_sum - a


def beta_pdf(p: np.ndarray, a: float, b: float) -> np.ndarray:
    """Beta(a, b) density at p in (0, 1), through log-gamma."""
    log_norm = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return np.exp((a - 1.0) * np.log(p) + (b - 1.0) * np.log1p(-p) - log_norm)


def coba_value(n: np.ndarray, p: np.ndarray, a: float, b: float, tau: float, smoothing: float):
    """V(N, p) = (1 - exp(-N p (1-p) / tau)) * BetaPdf(p; a, b), p clipped to [s, 1 - s]."""
    q = np.clip(p, smoothing, 1.0 - smoothing)
    return (1.0 - np.exp(-np.asarray(n, np.float64) / tau * q * (1.0 - q))) * beta_pdf(q, a, b)


def temperature(rates: np.ndarray, params: CobaParams) -> float:
    """Tau from the spread of the exploration prompts' (clipped) rates."""
    q = np.clip(rates, params.smoothing, 1.0 - params.smoothing)
    spread = float(np.clip(np.var(q) / params.var_max, 0.0, 1.0))
    return params.tau_min + (params.tau_max - params.tau_min) * spread


def coba_allocate(
    success_rates: np.ndarray,
    budget: int,
    failure_rate: float,
    params: CobaParams | None = None,
) -> np.ndarray:
    """CoBA-RL's group sizes for one batch (see the module docstring).

    Args:
        success_rates: float64 (M,), each prompt's estimate; NaN = never seen.
        budget: rollouts to spend, a whole number.
        failure_rate: the model's global failure rate in [0, 1] (1 - mean success).
        params: CoBA's constants.

    Returns:
        int64 (M,), summing to `budget`.

    Raises:
        InfeasibleBudget: budget above M * n_up.
        EngineInputError: malformed rates, budget or failure rate (`field` names it).
    """
    params = params or CobaParams()
    rates = np.ascontiguousarray(success_rates, dtype=np.float64)
    if rates.ndim != 1:
        raise EngineInputError("success_rates must be one-dimensional", field="success_rates")
    seen = ~np.isnan(rates)
    if np.any(rates[seen] < 0.0) or np.any(rates[seen] > 1.0):
        raise EngineInputError("success rates must lie in [0, 1]", field="success_rates")
    if isinstance(budget, bool) or int(budget) != budget or budget < 0:
        raise EngineInputError("budget must be a whole number >= 0", field="budget")
    budget = int(budget)
    m = rates.size
    if budget > m * params.n_up:
        raise InfeasibleBudget(budget, 0, m * params.n_up)
    a, b = capability_shape(float(failure_rate), params.beta_sum)
    if not seen.any() or budget < m * params.n_low:
        return _spread(budget, m)
    p = np.where(seen, rates, UNSEEN_RATE)
    n = np.full(m, params.n_low, dtype=np.int64)
    left = budget - m * params.n_low
    hard = np.flatnonzero(p < VERY_HARD_BELOW)
    easy = np.flatnonzero(p > VERY_EASY_ABOVE)
    explore = np.flatnonzero((p >= VERY_HARD_BELOW) & (p <= VERY_EASY_ABOVE))
    if explore.size:
        share = explore.size / m
        ratio = (
            params.exploration_ratio
            if explore.size > m / 2
            else 0.6 + (params.exploration_ratio - 0.6) * (share * 2)
        )
        extra = int(left * ratio)
        tau = temperature(p[explore], params)
        n[explore] = _heap_greedy(p[explore], n[explore], extra, a, b, tau, params)
        left -= int(n[explore].sum()) - explore.size * params.n_low
    if left and hard.size:
        left = _weighted(n, hard, p, left, params)
    for group in (explore, easy):
        if left and group.size:
            left = _even(n, group, left, params.n_up)
    if left:  # every group of the preferred classes is full: any room left
        left = _even(n, np.arange(m), left, params.n_up)
    assert left == 0, "budget within M * n_up must be spent"
    return n


def _spread(total: int, count: int) -> np.ndarray:
    n = np.full(count, total // count if count else 0, dtype=np.int64)
    if count:
        n[: total % count] += 1
    return n


def _heap_greedy(
    p: np.ndarray, start: np.ndarray, extra: int, a: float, b: float, tau: float, params: CobaParams
) -> np.ndarray:
    """Add `extra` rollouts one at a time to the largest marginal gain of V (each <= n_up)."""
    n = start.copy()
    gains = coba_value(n + 1, p, a, b, tau, params.smoothing) - coba_value(
        n, p, a, b, tau, params.smoothing
    )
    heap = [(-float(g), i) for i, g in enumerate(gains) if n[i] < params.n_up]
    heapq.heapify(heap)
    while extra > 0 and heap:
        _, i = heapq.heappop(heap)
        n[i] += 1
        extra -= 1
        if n[i] < params.n_up:
            gain = coba_value(n[i] + 1, p[i], a, b, tau, params.smoothing) - coba_value(
                n[i], p[i], a, b, tau, params.smoothing
            )
            heapq.heappush(heap, (-float(gain), i))
    return n


def _weighted(
    n: np.ndarray, group: np.ndarray, p: np.ndarray, left: int, params: CobaParams
) -> int:
    """CoBA's "weighted" remainder: integer shares by (1 - p)^weight_alpha, then evenly.

    As in their code, each prompt's share is of what is still left when its turn
    comes (the running remainder), so earlier prompts of the batch get a little more.
    """
    room = group[n[group] < params.n_up]
    if not room.size:
        return left
    weights = (1.0 - np.clip(p[room], 1e-6, 1.0 - 1e-6)) ** params.weight_alpha
    total = float(weights.sum())
    if total > 0.0:
        for i, w in zip(room.tolist(), weights.tolist(), strict=True):
            give = min(int(left * w / total), params.n_up - int(n[i]))
            n[i] += give
            left -= give
    return _even(n, group, left, params.n_up)


def _even(n: np.ndarray, group: np.ndarray, left: int, n_up: int) -> int:
    """Evenly over the groups of `group` still below n_up (remainder to the first ones)."""
    while left:
        room = group[n[group] < n_up]
        if not room.size:
            return left
        share, extra = divmod(left, room.size)
        gives = np.full(room.size, share, dtype=np.int64)
        gives[:extra] += 1
        gives = np.minimum(gives, n_up - n[room])
        n[room] += gives
        left -= int(gives.sum())
    return left


def batch_failure_rate(rates: np.ndarray) -> float:
    """The service's stand-in for CoBA's capability: 1 - mean seen estimate (1 if none)."""
    seen = rates[~np.isnan(rates)]
    return 1.0 - float(seen.mean()) if seen.size else 1.0


def _coba(problem: Problem, limits: Limits) -> AllocationResult:
    rates = problem.rates
    assert rates is not None
    check_range(problem.budget, problem.size * limits.min_n, problem.size * limits.max_n)
    params = CobaParams(n_low=limits.min_n, n_up=limits.max_n)
    n = coba_allocate(rates, int(problem.budget), batch_failure_rate(rates), params)
    return AllocationResult(n=n, value=objective(n, p=rates))


COBA = register(Strategy(name="coba", solve=_coba, needs="rates"))
