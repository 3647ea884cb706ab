"""One numba call for the whole point-estimate knapsack strategy on small batches.

For the paper's batch (256 prompts, budget 2048) the solve itself is tens of
microseconds, so a dozen numpy calls around it (validation, class masks, fixed
counts, fancy indexing, the objective) cost as much again. `knapsack_small` does all
of it in one call and reports problems as an error code, which the Python wrapper
(`strategies._knapsack_small`) turns into the same exceptions the numpy path raises.

It reuses `solve_heap` and `point_value` unchanged, so allocations and per-prompt
values are bit for bit those of the general path (`strategies._knapsack`,
`strategies._fallback`); the wrapper sums the terms with numpy, as `objective` does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from knapsack_service.engine._kernels import POINT, point_value, solve_heap

#: Error codes of `knapsack_small` (0 = solved).
OK = 0
BAD_RATES = 1
INFEASIBLE = 2

#: ln(1 - 0.9), the fallback's confidence constant, exactly as `fallback_need` computes it.
_LOG_MISS = math.log(1.0 - 0.9)


@njit(cache=True, nogil=True)
def _spread_capped(n: np.ndarray, idx: np.ndarray, max_n: int, surplus: int) -> int:
    # `strategies._spread_capped` over n[idx] (all equal), remainder to the lowest indices.
    count = idx.size
    if count == 0 or surplus == 0:
        return surplus
    base = n[idx[0]]
    give = min(surplus, count * (max_n - base))
    each = give // count
    rest = give % count
    for j in range(count):
        n[idx[j]] += each + (1 if j < rest else 0)
    return surplus - give


@njit(cache=True, nogil=True)
def _heap_into(
    n: np.ndarray, mid_idx: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: int
) -> None:
    # solve_unit_cost(total, lo, hi, p=p, method="heap") written into n[mid_idx].
    extra = total - lo.sum()
    counts = solve_heap(POINT, p, p, lo, hi, extra) if extra > 0 else lo
    for j in range(mid_idx.size):
        n[mid_idx[j]] = counts[j]


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
    """Validate, classify, solve and value a point-estimate knapsack batch.

    Args:
        rates: float64 (M,), NaN = unseen.
        budget: whole rollouts, >= 0.
        min_n: smallest group of a 0 < p < 1 prompt (checked by the wrapper).
        max_n: largest group of any prompt.
        default_n: group of unseen prompts (capped at max_n).
        positive: group of p = 1 prompts (capped at max_n).
        negative: group of p = 0 prompts (capped at max_n).
        fallback: the paper code's fallback rule (`strategies._fallback`).

    Returns:
        (code, n, terms, low, high): code OK with n and the per-prompt values terms;
        BAD_RATES (a seen rate outside [0, 1], checked first); INFEASIBLE with
        the feasible range [low, high].
    """
    m = rates.size
    n = np.zeros(m, np.int64)
    terms = np.zeros(m)
    n_unseen = 0
    n_zero = 0
    n_one = 0
    n_mid = 0
    for i in range(m):
        r = rates[i]
        if math.isnan(r):
            n_unseen += 1
        elif r < 0.0 or r > 1.0:
            return BAD_RATES, n, terms, 0, 0
        elif r == 0.0:
            n_zero += 1
        elif r == 1.0:
            n_one += 1
        else:
            n_mid += 1
    zero_idx = np.empty(n_zero, np.int64)
    one_idx = np.empty(n_one, np.int64)
    mid_idx = np.empty(n_mid, np.int64)
    mid_p = np.empty(n_mid)
    iz = io = im = 0
    for i in range(m):
        r = rates[i]
        if math.isnan(r):
            n[i] = default_n
        elif r == 0.0:
            n[i] = negative
            zero_idx[iz] = i
            iz += 1
        elif r == 1.0:
            n[i] = positive
            one_idx[io] = i
            io += 1
        else:
            mid_idx[im] = i
            mid_p[im] = r
            im += 1
    fixed = n_unseen * default_n + n_zero * negative + n_one * positive
    low = fixed + n_mid * min_n
    if fallback:
        high = n_unseen * default_n + (n_zero + n_one + n_mid) * max_n
    else:
        high = fixed + n_mid * max_n
    if budget < low or budget > high:
        return INFEASIBLE, n, terms, low, high
    lo = np.full(n_mid, min_n, np.int64)
    room = budget - fixed
    if not fallback:
        if n_mid:
            _heap_into(n, mid_idx, mid_p, lo, np.full(n_mid, max_n, np.int64), room)
    else:
        need = np.empty(n_mid, np.int64)
        need_total = 0
        for j in range(n_mid):
            r = mid_p[j]
            steps = np.ceil(_LOG_MISS / math.log1p(-min(r, 1.0 - r)))
            need[j] = int(min(max(steps, float(min_n)), float(max_n)))
            need_total += need[j]
        if room <= need_total:
            if n_mid:
                _heap_into(n, mid_idx, mid_p, lo, need, room)
        else:
            for j in range(n_mid):
                n[mid_idx[j]] = need[j]
            surplus = _spread_capped(n, zero_idx, max_n, room - need_total)
            if surplus and n_mid:
                grow = min(surplus, n_mid * max_n - need_total)
                top = np.full(n_mid, max_n, np.int64)
                _heap_into(n, mid_idx, mid_p, need, top, need_total + grow)
                surplus -= grow
            _spread_capped(n, one_idx, max_n, surplus)
    for i in range(m):
        r = rates[i]
        terms[i] = point_value(n[i], 0.0 if math.isnan(r) else r)
    return OK, n, terms, low, high
