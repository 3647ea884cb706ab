"""Knapsack solvers over per-prompt bounds: exact unit-cost, reference DP, cost-aware.

The unit-cost problem: maximise sum_i Value_i(n_i) subject to sum_i n_i = budget and
lo[i] <= n_i <= hi[i]. Each Value_i is concave (its marginal gains do not increase),
so the optimum gives every prompt lo[i] plus the units whose gains come first in the
engine's order

    (gain descending, prompt index ascending, unit ascending)

which is also the tie-breaking rule: among equal gains the lower index wins. Two
paths produce exactly that set:

- `solve_heap` (small batches): a heap greedy inside one numba call;
- the threshold path (large batches): every prompt gets the units above a threshold
  lambda. Open ranges [low[i], high[i]) bracket the cut; each round samples gains
  inside the bracket, picks two quantiles around the cut's rank and counts, per
  prompt and in parallel, the units above them (binary search in N, gains being
  non-increasing). Once few units are open, a selection settles the rest. Memory
  stays O(M) plus the open units.

Gains are either point estimates (`p`) or Beta posteriors (`a`, `b`): see
`_kernels` for the formulas and for the treatment of lo[i] = 0, where Value is not
concave (Value(0) = Value(1) = 0): the first two units are valued at the concave
envelope, so with lo[i] = 0 the result is optimal for that envelope, which differs
from the true objective only if some prompt ends with exactly one rollout.
"""

from __future__ import annotations

import math

import numpy as np

from knapsack_service.engine import _kernels as k
from knapsack_service.engine import _kernels_cost as kc
from knapsack_service.engine.errors import EngineInputError, InfeasibleBudget

#: The heap path is used while extra_units * log2(prompts) stays below this.
HEAP_WORK_LIMIT = 1 << 20
#: Target number of sampled gains per refinement round of the threshold path.
SAMPLE_SIZE = 1 << 18
# (2^18 brackets the cut tightly enough that one counting pass usually leaves at most
# M/2 open units for M up to 1M and 8 extra units per prompt: one pass instead of two.)
#: The threshold path stops refining once this many units are open.
OPEN_UNITS_LIMIT = 1 << 16
#: Safety cap on refinement rounds (each one at least removes one open unit).
MAX_ROUNDS = 64


def gain_arrays(
    p: np.ndarray | None, a: np.ndarray | None, b: np.ndarray | None
) -> tuple[int, np.ndarray, np.ndarray]:
    """The kernels' gain mode and its two arrays: (POINT, p, p) or (BETA, a, b)."""
    if p is not None:
        if a is not None or b is not None:
            raise EngineInputError("give either p or (a, b), not both", field="posterior")
        x0 = np.ascontiguousarray(p, dtype=np.float64)
        return k.POINT, x0, x0
    if a is None or b is None:
        raise EngineInputError("give p or both a and b", field="posterior")
    return (
        k.BETA,
        np.ascontiguousarray(a, dtype=np.float64),
        np.ascontiguousarray(b, dtype=np.float64),
    )


def check_bounds(
    lo: np.ndarray | int, hi: np.ndarray | int, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt bounds as int64 arrays of length m; 0 <= lo <= hi or an input error."""
    if isinstance(lo, int) and isinstance(hi, int):  # the common case, kept cheap
        if not 0 <= lo <= hi:
            raise EngineInputError("bounds must satisfy 0 <= lo <= hi", field="min_n")
        return np.full(m, lo, np.int64), np.full(m, hi, np.int64)
    lo_arr = np.ascontiguousarray(np.broadcast_to(np.asarray(lo, dtype=np.int64), (m,)))
    hi_arr = np.ascontiguousarray(np.broadcast_to(np.asarray(hi, dtype=np.int64), (m,)))
    if np.any(lo_arr < 0) or np.any(hi_arr < lo_arr):
        raise EngineInputError("bounds must satisfy 0 <= lo <= hi", field="min_n")
    return lo_arr.copy(), hi_arr.copy()


def solve_unit_cost(
    budget: int,
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    *,
    p: np.ndarray | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
    method: str = "auto",
    sample_size: int = SAMPLE_SIZE,
    open_units_limit: int | None = None,
) -> np.ndarray:
    """Exact optimum of sum Value_i(n_i) with sum(n) == budget and lo <= n <= hi.

    Args:
        budget: total rollouts; must lie in [sum(lo), sum(hi)].
        lo: per-prompt lower bounds (array or scalar).
        hi: per-prompt upper bounds (array or scalar).
        p: point success rates (`_kernels.POINT` gains), or
        a: Beta posterior parameter a, with
        b: Beta posterior parameter b (`_kernels.BETA` gains).
        method: "heap", "threshold" or "auto" (heap for small batches). Both paths
            return identical allocations (same order, same tie-breaking).
        sample_size: threshold path, sampled gains per refinement round.
        open_units_limit: threshold path, open units left for the final selection
            (default max(OPEN_UNITS_LIMIT, M // 2), which keeps memory O(M)); tests
            make both small to exercise the refinement on small inputs.

    Returns:
        int64 array n.

    Raises:
        InfeasibleBudget: the budget is outside [sum(lo), sum(hi)].

    """
    mode, x0, x1 = gain_arrays(p, a, b)
    m = x0.size
    lo_arr, hi_arr = check_bounds(lo, hi, m)
    budget = int(budget)
    if isinstance(lo, int) and isinstance(hi, int):
        base, top = m * lo, m * hi
    else:
        base, top = int(lo_arr.sum()), int(hi_arr.sum())
    if not base <= budget <= top:
        raise InfeasibleBudget(budget, base, top)
    extra = budget - base
    if extra == 0:
        return lo_arr
    if extra == top - base:
        return hi_arr
    if method == "auto":
        method = "heap" if extra * math.log2(m + 1) <= HEAP_WORK_LIMIT else "threshold"
    if method == "heap":
        return k.solve_heap(mode, x0, x1, lo_arr, hi_arr, extra)
    if method != "threshold":
        raise ValueError(f"unknown method {method!r}")
    return _solve_threshold(
        mode,
        x0,
        x1,
        lo_arr,
        hi_arr,
        extra,
        max(sample_size, 1),
        max(OPEN_UNITS_LIMIT, m // 2) if open_units_limit is None else max(open_units_limit, 0),
    )


def _solve_threshold(
    mode: int,
    x0: np.ndarray,
    x1: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    extra: int,
    sample_size: int,
    open_units_limit: int,
) -> np.ndarray:
    """Threshold path: shrink open ranges [low, high) around the cut, then select.

    Invariant: sum(low) <= extra <= sum(high); units below low[i] come before the
    cut in engine order, units from high[i] on come after it.
    """
    m = lo.size
    low = np.zeros(m, np.int64)
    high = hi - lo
    taken = 0
    reachable = int(high.sum())
    buf_above = np.empty(m, np.int64)
    buf_at_least = np.empty(m, np.int64)
    for _ in range(MAX_ROUNDS):
        open_units = reachable - taken
        if open_units <= open_units_limit:
            break
        # Every stride-th prompt, so that about sample_size open units get sampled.
        stride = max(1, min(m, open_units // sample_size))
        sample = k.sample_gains(mode, x0, x1, lo, low, high, stride)
        if sample.size == 0:
            stride = 1
            sample = k.sample_gains(mode, x0, x1, lo, low, high, stride)
        # Rank of the cut inside the sample, and a bracket of a few standard deviations.
        rank = (extra - taken) * sample.size / open_units
        spread = 4.0 * math.sqrt(rank * (1.0 - rank / sample.size) + 1.0) + 8.0
        upper = sample[max(int(rank - spread), 0)]
        lower = sample[min(int(rank + spread), sample.size - 1)]
        above, at_least = k.count_bracket(
            mode, x0, x1, lo, low, high, upper, lower, buf_above, buf_at_least
        )
        if at_least >= extra:
            reachable, high, buf_at_least = at_least, buf_at_least, high
        if above <= extra:
            taken, low, buf_above = above, buf_above, low
        if reachable - taken > open_units // 2:
            # The quantiles missed or barely cut (heavy ties): split at the sample's
            # median, which removes at least the sampled unit itself from the open set.
            middle = sample[sample.size // 2]
            above, at_least = k.count_bracket(
                mode, x0, x1, lo, low, high, middle, middle, buf_above, buf_at_least
            )
            if above > extra:
                reachable, high, buf_above = above, buf_above, high
            elif at_least >= extra:
                # Every unit between the two counts has gain == middle: index order.
                return lo + k.take_in_index_order(buf_above, buf_at_least, extra - above)
            else:
                taken, low, buf_at_least = at_least, buf_at_least, low
    if reachable - taken > open_units_limit and _single_gain(mode, x0, x1, lo, low, high):
        return lo + k.take_in_index_order(low, high, extra - taken)
    return lo + k.select_open_units(mode, x0, x1, lo, low, high, extra - taken)


def _single_gain(
    mode: int, x0: np.ndarray, x1: np.ndarray, lo: np.ndarray, low: np.ndarray, high: np.ndarray
) -> bool:
    # A bracket that did not shrink within MAX_ROUNDS: true only on a plateau of one gain.
    first = k.sample_gains(mode, x0, x1, lo, low, high, 1)
    return first.size > 0 and first[0] == first[-1]


def solve_cost_aware(
    budget: float,
    costs: np.ndarray,
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    *,
    p: np.ndarray | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
    max_swaps: int | None = None,
    candidates: int = 256,
) -> np.ndarray:
    """Maximise sum Value_i(n_i) subject to sum n_i * costs_i <= budget, lo <= n <= hi.

    Method: every prompt starts at lo[i]; units are added in order of marginal gain
    per cost (ties: lower index) as long as they fit, skipping prompts whose next
    unit no longer fits. Then a bounded local search: the best 1-remove/1-add swap
    among the `candidates` largest next gains and smallest last losses, followed by
    a refill, until no swap improves (at most `max_swaps` rounds, default 4 * M).

    Guarantee: value >= OPT - max_i g_i, where g_i is the largest marginal gain a
    prompt can still receive. The greedy prefix (before the first unit that does not
    fit) is an optimal solution of the LP relaxation except for that one fractional
    unit (gains are concave, so the LP takes units in ratio order), hence
    OPT <= LP <= greedy-prefix + g_break; the refills and swaps only raise the value.
    Measured gap to the exact DP: see BENCHMARKS.md ("Solver").

    Raises:
        InfeasibleBudget: sum(lo * costs) > budget.

    """
    mode, x0, x1 = gain_arrays(p, a, b)
    m = x0.size
    lo_arr, hi_arr = check_bounds(lo, hi, m)
    cost_arr = np.ascontiguousarray(costs, dtype=np.float64)
    if cost_arr.shape != (m,) or not np.all(np.isfinite(cost_arr)) or np.any(cost_arr <= 0):
        raise EngineInputError("costs must be finite and > 0, one per prompt", field="costs")
    base = float(np.dot(lo_arr, cost_arr))
    if base > budget:
        raise InfeasibleBudget(budget, base, math.inf, detail="cost of the lower bounds")
    swaps = 4 * m if max_swaps is None else max_swaps
    n = kc.solve_cost(mode, x0, x1, lo_arr, hi_arr, cost_arr, budget - base, swaps, candidates)
    # The kernel tracks the room left incrementally; should rounding have let the
    # exact sum exceed the budget by an ulp, give back the cheapest-to-lose unit.
    while float(np.dot(n, cost_arr)) > budget:
        loss = objective_gains_lost(n, lo_arr, p=p, a=a, b=b) / cost_arr
        n[int(np.argmin(loss))] -= 1
    return n


def objective_gains_lost(
    n: np.ndarray,
    lo: np.ndarray,
    *,
    p: np.ndarray | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
) -> np.ndarray:
    """Value lost per prompt by removing its last unit (inf where n == lo)."""
    drop = objective_terms(n, p=p, a=a, b=b) - objective_terms(np.maximum(n - 1, 0), p=p, a=a, b=b)
    return np.where(n > lo, drop, np.inf)


def objective(
    n: np.ndarray,
    *,
    p: np.ndarray | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
) -> float:
    """sum_i Value(n_i, p_i) (or its expectation under Beta(a_i, b_i)); NaN p counts 0."""
    return float(objective_terms(n, p=p, a=a, b=b).sum())


def objective_terms(
    n: np.ndarray,
    *,
    p: np.ndarray | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
) -> np.ndarray:
    """Value(n_i, p_i) per prompt (or its expectation under Beta(a_i, b_i)); NaN p gives 0."""
    counts = np.ascontiguousarray(n, dtype=np.int64)
    if p is not None:
        rates = np.nan_to_num(np.ascontiguousarray(p, dtype=np.float64), nan=0.0)
        return k.point_values(counts, rates)
    if a is None or b is None:
        raise EngineInputError("give p or both a and b", field="posterior")
    return k.beta_values(
        counts, np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64)
    )
