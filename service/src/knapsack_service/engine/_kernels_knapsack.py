"""The point-estimate knapsack strategy's one rule: fixed counts, the paper's fallback.

`plan_knapsack` is the only implementation of the strategy's bookkeeping: it classifies
the prompts, gives the fixed counts, decides (with `fallback`) how many rollouts the
knapsack over the 0 < p < 1 prompts may spend and where the rest goes. What is left is
one unit-cost solve over those prompts with bounds [min_n, max_n]: `knapsack_small`
runs it with the heap inside the same numba call (the paper's batch: tens of
microseconds, where a dozen numpy calls would cost as much again), and
`strategies/knapsack.py` runs it with `solve_unit_cost` for batches large enough to
need the threshold path. Both read the same plan, so their allocations are the same.

The fallback is the paper code's rule (`sampling_budget_by_knapsack` in
liziniu/KnapsackRL, `verl/trainer/ppo/exploration_utils.py`), reproduced as written:

- every 0 < p < 1 prompt first gets min_n; p = 0 prompts negative_n, p = 1 prompts
  positive_n, unseen prompts default_n; `room` is the budget left after that;
- need_i = ln(1 - 0.9) / ln max(p_i, 1 - p_i) only decides *whether* the fallback
  triggers: estimated = sum_i int(min(max_n, need_i)) over the 0 < p < 1 prompts,
  truncated toward zero as the paper's `int()` does, and counting the min_n each of
  them already holds once more (need_i is a group size, yet `estimated` is spent on
  top of min_n: the paper's quirk, kept);
- when estimated < room, the knapsack spends `estimated` rollouts beyond min_n, each
  prompt free up to max_n, and the surplus room - estimated goes evenly to the p = 0
  prompts (remainder to the lowest indices) or, with none, evenly to the other
  prompts (p = 1 and unseen, in index order); otherwise the knapsack spends `room`.

Where we differ from the paper's code, deliberately:

- no group exceeds max_n. The paper's code sends the surplus to p = 0 prompts
  uncapped (with no 0 < p < 1 prompt, the whole surplus: groups of 714 were seen) and
  spreads what its DP cannot place uniformly beyond max_n. Here the surplus fills the
  candidates up to max_n (`spread_capped`), then the knapsack up to max_n, then the
  p = 1 prompts, then the unseen ones, so sum(n) == budget whenever budget <= M * max_n;
- with no 0 < p < 1 prompt and no p = 0 prompt the paper's code sets every group to
  its default n; here the surplus goes to the other prompts as above;
- with no candidate at all (every prompt has 0 < p < 1) the paper's code divides by
  zero; here the fallback does not trigger and the knapsack spends `room`;
- the knapsack maximises the true objective, in which a prompt left at min_n is worth
  Value(min_n, p); the paper's DP scores "no extra rollout" as 0, which can make it
  spread single extra rollouts it need not. Our objective is therefore at least the
  paper's on every batch (tests/engine/test_official_parity.py).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from knapsack_service.engine._kernels import POINT, point_value, solve_heap

#: Error codes of `plan_knapsack` / `knapsack_small` (0 = planned / solved).
OK = 0
BAD_RATES = 1
INFEASIBLE = 2

#: The paper's fallback serves a prompt until a non-zero gradient is this likely.
FALLBACK_CONFIDENCE = 0.9
_LOG_MISS = math.log(1.0 - FALLBACK_CONFIDENCE)


@njit(cache=True, nogil=True)
def fallback_need(p: float, max_n: int) -> int:
    """int(min(max_n, ln(0.1) / ln max(p, 1-p))) for 0 < p < 1, the paper's trigger term.

    log1p(-min(p, 1-p)) is ln max(p, 1-p) without rounding 1 - 1e-20 to 1; a
    logarithm of 0 (p subnormal) means an unbounded need, so max_n.
    """
    log_r = math.log1p(-min(p, 1.0 - p))
    if log_r == 0.0:
        return max_n
    return int(min(float(max_n), _LOG_MISS / log_r))


@njit(cache=True, nogil=True)
def fallback_needs(p: np.ndarray, max_n: int) -> np.ndarray:
    """`fallback_need` for every entry of p (each in (0, 1))."""
    out = np.empty(p.size, np.int64)
    for j in range(p.size):
        out[j] = fallback_need(p[j], max_n)
    return out


@njit(cache=True, nogil=True)
def spread_capped(n: np.ndarray, idx: np.ndarray, cap: int, total: int) -> int:
    """Give `total` rollouts to n[idx] evenly, each up to `cap`; return what is left.

    Each round splits what is left evenly over the prompts still below the cap, the
    remainder one each to the lowest of them, and clips at the cap; what a clipped
    prompt could not take is split again. When no cap binds this is the paper's
    even split exactly (total // k each, +1 for the first total % k).
    """
    while total > 0:
        open_count = 0
        for j in range(idx.size):
            if n[idx[j]] < cap:
                open_count += 1
        if open_count == 0:
            break
        each = total // open_count
        rest = total % open_count
        k = 0
        for j in range(idx.size):
            i = idx[j]
            if n[i] >= cap:
                continue
            want = each + (1 if k < rest else 0)
            k += 1
            give = min(want, cap - n[i])
            n[i] += give
            total -= give
    return total


@njit(cache=True, nogil=True)
def fixed_counts(
    rates: np.ndarray, min_n: int, default_n: int, positive: int, negative: int
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The strategy's classes and their starting counts, in one pass.

    Returns:
        (code, n, zero_idx, one_idx, unseen_idx, others_idx, mid_idx): n holds
        negative / positive / default_n / min_n for p = 0, p = 1, unseen and
        0 < p < 1 prompts; the index arrays list each class in index order
        (others = p = 1 and unseen together, the paper's "other prompts"). code is
        BAD_RATES, with empty arrays, when a seen rate lies outside [0, 1].
    """
    m = rates.size
    n = np.zeros(m, np.int64)
    n_unseen = n_zero = n_one = n_mid = 0
    for i in range(m):
        r = rates[i]
        if math.isnan(r):
            n_unseen += 1
        elif r < 0.0 or r > 1.0:
            none = n[:0]
            return BAD_RATES, n, none, none, none, none, none
        elif r == 0.0:
            n_zero += 1
        elif r == 1.0:
            n_one += 1
        else:
            n_mid += 1
    zero_idx = np.empty(n_zero, np.int64)
    one_idx = np.empty(n_one, np.int64)
    unseen_idx = np.empty(n_unseen, np.int64)
    others_idx = np.empty(n_one + n_unseen, np.int64)
    mid_idx = np.empty(n_mid, np.int64)
    iz = io = iu = ix = im = 0
    for i in range(m):
        r = rates[i]
        if math.isnan(r):
            n[i] = default_n
            unseen_idx[iu] = i
            iu += 1
            others_idx[ix] = i
            ix += 1
        elif r == 0.0:
            n[i] = negative
            zero_idx[iz] = i
            iz += 1
        elif r == 1.0:
            n[i] = positive
            one_idx[io] = i
            io += 1
            others_idx[ix] = i
            ix += 1
        else:
            n[i] = min_n
            mid_idx[im] = i
            im += 1
    return OK, n, zero_idx, one_idx, unseen_idx, others_idx, mid_idx


@njit(cache=True, nogil=True)
def plan_knapsack(
    rates: np.ndarray,
    budget: int,
    min_n: int,
    max_n: int,
    default_n: int,
    positive: int,
    negative: int,
    fallback: bool,
) -> tuple[int, np.ndarray, np.ndarray, int, int, int]:
    """Fixed counts, the fallback's spread, and the knapsack's share of the budget.

    Args:
        rates: float64 (M,), NaN = unseen.
        budget: whole rollouts, >= 0.
        min_n: smallest group of a 0 < p < 1 prompt.
        max_n: largest group of any prompt.
        default_n: group of unseen prompts (capped at max_n by the caller).
        positive: group of p = 1 prompts (capped at max_n by the caller).
        negative: group of p = 0 prompts (capped at max_n by the caller).
        fallback: the paper code's rule (module docstring).

    Returns:
        (code, n, mid_idx, mid_total, low, high): code OK with n holding every count
        but the 0 < p < 1 prompts' (their indices mid_idx, index order), which the
        knapsack sets, spending mid_total over them in [min_n, max_n]; BAD_RATES (a
        seen rate outside [0, 1], checked first); INFEASIBLE with the feasible range
        [low, high].
    """
    code, n, zero_idx, one_idx, unseen_idx, others_idx, mid_idx = fixed_counts(
        rates, min_n, default_n, positive, negative
    )
    if code != OK:
        return code, n, mid_idx, 0, 0, 0
    m = rates.size
    n_zero, n_one, n_unseen, n_mid = zero_idx.size, one_idx.size, unseen_idx.size, mid_idx.size
    fixed = n_unseen * default_n + n_zero * negative + n_one * positive
    low = fixed + n_mid * min_n
    high = m * max_n if fallback else fixed + n_mid * max_n
    if budget < low or budget > high:
        return INFEASIBLE, n, mid_idx, 0, low, high
    room = budget - low
    if not fallback:
        return OK, n, mid_idx, n_mid * min_n + room, low, high
    candidates = zero_idx if n_zero > 0 else others_idx
    target = room
    if n_mid == 0:
        target = 0
    elif candidates.size > 0:
        estimated = 0
        for j in range(n_mid):
            estimated += fallback_need(rates[mid_idx[j]], max_n)
        if estimated < room:
            target = estimated
    capacity = n_mid * (max_n - min_n)
    extra = min(target, capacity)
    surplus = spread_capped(n, candidates, max_n, room - extra)
    grow = min(surplus, capacity - extra)
    extra += grow
    surplus = spread_capped(n, one_idx, max_n, surplus - grow)
    surplus = spread_capped(n, unseen_idx, max_n, surplus)
    if surplus != 0:  # unreachable: high bounds what the stages can place
        return INFEASIBLE, n, mid_idx, 0, low, high
    return OK, n, mid_idx, n_mid * min_n + extra, low, high


@njit(cache=True, nogil=True)
def knapsack_small(
    rates: np.ndarray,
    budget: int,
    min_n: int,
    max_n: int,
    default_n: int,
    positive: int,
    negative: int,
    fallback: bool,
) -> tuple[int, np.ndarray, np.ndarray, int, int]:
    """`plan_knapsack`, the heap solve and the per-prompt values in one call.

    Returns:
        (code, n, terms, low, high), terms[i] = Value(n[i], p[i]) (0 for unseen).
    """
    code, n, mid_idx, mid_total, low, high = plan_knapsack(
        rates, budget, min_n, max_n, default_n, positive, negative, fallback
    )
    terms = np.zeros(rates.size)
    if code != OK:
        return code, n, terms, low, high
    k = mid_idx.size
    extra = mid_total - k * min_n
    if extra > 0:
        p = np.empty(k)
        for j in range(k):
            p[j] = rates[mid_idx[j]]
        counts = solve_heap(
            POINT, p, p, np.full(k, min_n, np.int64), np.full(k, max_n, np.int64), extra
        )
        for j in range(k):
            n[mid_idx[j]] = counts[j]
    for i in range(rates.size):
        r = rates[i]
        terms[i] = point_value(n[i], 0.0 if math.isnan(r) else r)
    return OK, n, terms, low, high
