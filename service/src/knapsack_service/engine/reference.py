"""Reference solvers for tests and benchmarks only: never on the service's path.

- `solve_reference_dp` / `solve_reference_cost_dp`: the paper's O(M * B * max_n)
  dynamic programs, exact by construction, against which the fast solvers are checked.
- `official_knapsack`: our re-implementation, written from reading it, of the paper
  code's whole allocation rule (`sampling_budget_by_knapsack` in liziniu/KnapsackRL,
  `verl/trainer/ppo/exploration_utils.py`), its quirks and unsafe cases included, so
  that `fallback=True` can be compared with it (tests/engine/test_official_parity.py,
  bench/solver.py).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from knapsack_service.engine._kernels import POINT, beta_values, point_values
from knapsack_service.engine.errors import EngineInputError
from knapsack_service.engine.solve import check_bounds, gain_arrays


@njit(cache=True, nogil=True)
def reference_dp(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: int) -> np.ndarray:
    """The paper's dynamic program: O(M * B * max_n) time, O(M * B) memory.

    values[i, n] is prompt i's value with n rollouts; sum(n) == budget exactly.
    Returns n, or an array of -1 when the budget cannot be met.
    """
    m = lo.size
    neg = -np.inf
    dp = np.full(budget + 1, neg)
    dp[0] = 0.0
    choice = np.empty((m, budget + 1), np.int16)
    for i in range(m):
        new = np.full(budget + 1, neg)
        for b in range(budget + 1):
            best = neg
            arg = -1
            top = min(hi[i], b)
            for k in range(lo[i], top + 1):
                prev = dp[b - k]
                if prev != neg:
                    v = prev + values[i, k]
                    if v > best:
                        best = v
                        arg = k
            new[b] = best
            choice[i, b] = arg
        dp = new
    n = np.full(m, -1, np.int64)
    if dp[budget] == neg:
        return n
    b = budget
    for i in range(m - 1, -1, -1):
        n[i] = choice[i, b]
        b -= n[i]
    return n


@njit(cache=True, nogil=True)
def reference_cost_dp(
    values: np.ndarray, lo: np.ndarray, hi: np.ndarray, costs: np.ndarray, budget: int
) -> np.ndarray:
    """Exact optimum of sum values[i, n_i] s.t. sum n_i costs_i <= budget, integer costs."""
    m = lo.size
    neg = -np.inf
    dp = np.zeros(budget + 1)
    choice = np.empty((m, budget + 1), np.int16)
    for i in range(m):
        new = np.full(budget + 1, neg)
        for w in range(budget + 1):
            best = neg
            arg = -1
            for k in range(lo[i], hi[i] + 1):
                spend = k * costs[i]
                if spend > w:
                    break
                prev = dp[w - spend]
                if prev != neg:
                    v = prev + values[i, k]
                    if v > best:
                        best = v
                        arg = k
            new[w] = best
            choice[i, w] = arg
        dp = new
    n = np.full(m, -1, np.int64)
    if dp[budget] == neg:
        return n
    w = budget
    for i in range(m - 1, -1, -1):
        n[i] = choice[i, w]
        w -= n[i] * costs[i]
    return n


def reference_values(
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    *,
    p: np.ndarray | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
) -> np.ndarray:
    """Table values[i, n] = Value_i(n) for n in 0..max(hi), as the reference DPs use it."""
    mode, x0, x1 = gain_arrays(p, a, b)
    m = x0.size
    _, hi_arr = check_bounds(lo, hi, m)
    width = int(hi_arr.max()) + 1 if m else 1
    counts = np.broadcast_to(np.arange(width, dtype=np.int64), (m, width)).ravel()
    if mode == POINT:
        flat = point_values(counts, np.repeat(x0, width))
    else:
        flat = beta_values(counts, np.repeat(x0, width), np.repeat(x1, width))
    return flat.reshape(m, width)


def solve_reference_dp(
    budget: int,
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    *,
    p: np.ndarray | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
) -> np.ndarray:
    """The paper's O(M * B * max_n) dynamic program (tests and benchmarks only).

    Raises:
        EngineInputError: the budget cannot be met within the bounds.

    """
    _, x0, _ = gain_arrays(p, a, b)
    lo_arr, hi_arr = check_bounds(lo, hi, x0.size)
    values = reference_values(lo_arr, hi_arr, p=p, a=a, b=b)
    n = reference_dp(values, lo_arr, hi_arr, int(budget))
    if n.size and n[0] < 0:
        raise EngineInputError(f"budget {budget} cannot be met", field="budget")
    return n


def solve_reference_cost_dp(
    budget: int,
    costs: np.ndarray,
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    *,
    p: np.ndarray | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
) -> np.ndarray:
    """Exact cost-aware optimum for small integer costs and budget (tests and benchmarks)."""
    _, x0, _ = gain_arrays(p, a, b)
    lo_arr, hi_arr = check_bounds(lo, hi, x0.size)
    values = reference_values(lo_arr, hi_arr, p=p, a=a, b=b)
    cost_arr = np.ascontiguousarray(costs, dtype=np.int64)
    n = reference_cost_dp(values, lo_arr, hi_arr, cost_arr, int(budget))
    if n.size and n[0] < 0:
        raise EngineInputError(f"budget {budget} cannot be met", field="budget")
    return n


class OfficialFailure(RuntimeError):
    """The paper's code would fail on this batch (division by zero or its budget assert)."""


def _even_split(n: np.ndarray, idx: np.ndarray, total: int) -> None:
    # total // k to each, one more to the first total % k, no cap: the paper's split.
    if idx.size == 0:
        raise OfficialFailure("even split over no prompt (the paper's code divides by zero)")
    n[idx] += total // idx.size
    n[idx[: total % idx.size]] += 1


def official_knapsack(
    rates: np.ndarray,
    budget: int,
    *,
    min_n: int,
    max_n: int,
    default_n: int,
    positive_n: int,
    negative_n: int,
    scoring: str = "official",
) -> np.ndarray:
    """The paper code's `sampling_budget_by_knapsack(allow_fallback=True)`, re-implemented.

    Args:
        rates: float64 (M,), NaN for a prompt without a valid estimate (the paper's
            validity flag 0), which gets `default_n` (the paper's `n`).
        budget: total rollouts (`total_budget`).
        min_n: the paper's `min_n`, given first to every 0 < p < 1 prompt.
        max_n: the paper's `max_n`, the DP's largest group.
        default_n: the paper's `n`, the group of a prompt without an estimate.
        positive_n: the paper's `positive_n`, the group of a p = 1 prompt.
        negative_n: the paper's `negative_n`, the group of a p = 0 prompt.
        scoring: "official" scores a prompt that gets no rollout beyond min_n as 0 in
            the DP, as the paper's code does; "true" scores it Value(min_n, p), which
            is the objective the service maximises.

    Returns:
        int64 (M,) rollouts, groups above max_n included where the paper's code
        produces them. ln max(p, 1-p) is taken in float64 (the paper's arrays are
        float32; for the rates tested the truncated needs agree).

    Raises:
        OfficialFailure: the paper's code would raise on this batch.
    """
    p = np.asarray(rates, dtype=np.float64)
    unseen = np.isnan(p)
    zero = p == 0.0
    one = p == 1.0
    mid = ~(unseen | zero | one)
    n = np.where(unseen, default_n, np.where(zero, negative_n, np.where(one, positive_n, min_n)))
    n = n.astype(np.int64)
    left = int(budget) - int(n.sum())
    mid_idx = np.flatnonzero(mid)
    if left > 0 and mid_idx.size == 0:
        if zero.any():
            _even_split(n, np.flatnonzero(zero), left)
        else:
            n[:] = default_n
    else:
        with np.errstate(divide="ignore"):
            need = math.log(0.1) / np.log(np.maximum(p[mid_idx], 1.0 - p[mid_idx]))
        if not np.all(np.isfinite(need)):  # max(p, 1-p) rounds to 1: int(-inf) raises
            raise OfficialFailure("a need of -inf (p within rounding of 0 or 1)")
        estimated = sum(int(min(max_n, x)) for x in need)
        if estimated < left:
            candidates = np.flatnonzero(zero) if zero.any() else np.flatnonzero(~mid)
            _even_split(n, candidates, left - estimated)
            left = estimated
        if left > 0 and mid_idx.size:
            n[mid_idx] += _official_dp(p[mid_idx], min_n, max_n - min_n, left, scoring)
    if int(n.sum()) != int(budget):
        raise OfficialFailure(f"budget mismatch: {int(n.sum())} != {budget}")
    return n


def _official_dp(p: np.ndarray, min_n: int, width: int, budget: int, scoring: str) -> np.ndarray:
    """Extra rollouts k_i in [0, width] with sum k_i == budget, maximising the DP's score.

    The score of k >= 1 extra is Value(min_n + k, p); of k = 0 it is 0 ("official")
    or Value(min_n, p) ("true"). A budget above what the widths allow: the DP spends
    the most it can and the rest is spread evenly over the prompts, beyond max_n.
    """
    m = p.size
    counts = np.arange(width + 1, dtype=np.int64) + min_n
    table = point_values(np.tile(counts, m), np.repeat(p, width + 1)).reshape(m, width + 1)
    if scoring == "official":
        table[:, 0] = 0.0
    elif scoring != "true":
        raise ValueError(f"unknown scoring {scoring!r}")
    usable = min(budget, m * width)
    extra = reference_dp(
        np.ascontiguousarray(table), np.zeros(m, np.int64), np.full(m, width, np.int64), usable
    )
    rest = budget - usable
    extra += rest // m
    extra[: rest % m] += 1
    return extra
