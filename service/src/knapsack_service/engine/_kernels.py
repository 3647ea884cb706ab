"""Numba kernels of the allocation engine: jitted functions over arrays and scalars only.

Everything here runs in nopython mode (`@njit(cache=True, nogil=True)`): a kernel that
cannot compile fails loudly instead of falling back to object mode, and `nogil` lets
the service run solves in threads. Validation, dtype casts and result objects live in
the plain-Python wrappers (`values.py`, `solve.py`, ...).

Gain modes (the `mode` argument of the solver kernels):

- `POINT` (0): `x0[i]` is the success rate p of prompt i (`x1` is ignored);
  gain(N) = Value(N+1, p) - Value(N, p) = p (1-p)^2 (p^N (1-p) + (1-p)^N p).
- `BETA` (1): `x0[i], x1[i]` are the Beta(a, b) parameters of p;
  gain(N) = E[p^(N+1) (1-p)^3] + E[p^2 (1-p)^(N+2)], in closed form through
  E[p^x (1-p)^y] = B(a+x, b+y) / B(a, b).

Both are non-increasing in N for N >= 1, so Value is concave from N = 1 on. Value(0) =
Value(1) = 0 (no gradient without two rollouts), which breaks concavity at N = 0: a
prompt whose lower bound is 0 has its first two units valued at the concave envelope,
max(gain(1) / 2, gain(2)) each (equal to gain(2) in exact arithmetic), see `unit_gain`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

POINT = 0
BETA = 1

#: Below this argument log-gamma differences are taken from math.lgamma directly;
#: above it, from Stirling's series written as a difference (no cancellation).
_STIRLING_FROM = 10.0


# --------------------------------------------------------------------------- special functions


@njit(cache=True, nogil=True)
def _stirling_tail(z: float) -> float:
    r = 1.0 / z
    r2 = r * r
    return r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 * (1.0 / 1260.0 - r2 / 1680.0)))


@njit(cache=True, nogil=True)
def log_rising(a: float, x: float) -> float:
    """Log Γ(a + x) - log Γ(a) for a > 0, x >= 0, accurate for a up to 1e9 and beyond.

    A plain lgamma difference loses about |lgamma(a)| * 1e-16 in absolute terms
    (2e-6 at a = 1e9); the Stirling form keeps every term small instead.
    """
    if x == 0.0:
        return 0.0
    if a < _STIRLING_FROM:
        return math.lgamma(a + x) - math.lgamma(a)
    z = a + x
    return (
        (a - 0.5) * math.log1p(x / a) + x * math.log(z) - x + _stirling_tail(z) - _stirling_tail(a)
    )


@njit(cache=True, nogil=True)
def log_beta_moment(a: float, b: float, x: float, y: float) -> float:
    """Log E[p^x (1-p)^y] for p ~ Beta(a, b): log B(a+x, b+y) - log B(a, b)."""
    return log_rising(a, x) + log_rising(b, y) - log_rising(a + b, x + y)


# --------------------------------------------------------------------------- values


@njit(cache=True, nogil=True)
def point_value(n: int, p: float) -> float:
    """Value(N, p) = (1 - p^N - (1-p)^N) p (1-p)^2, and 0 for N <= 1 (paper, eq. 4)."""
    if n <= 1 or p <= 0.0 or p >= 1.0:
        return 0.0
    q = 1.0 - p
    return (1.0 - p**n - q**n) * p * q * q


@njit(cache=True, nogil=True)
def beta_value(n: int, a: float, b: float) -> float:
    """E[Value(N, p)] for p ~ Beta(a, b)."""
    if n <= 1:
        return 0.0
    info = math.exp(log_beta_moment(a, b, 1.0, 2.0))
    succ = math.exp(log_beta_moment(a, b, n + 1.0, 2.0))
    fail = math.exp(log_beta_moment(a, b, 1.0, n + 2.0))
    closed = info - succ - fail
    if closed > 1e-6 * info:
        return closed
    # Posterior piled up near 0 or 1: the closed form cancels to noise, so sum the
    # marginal gains instead (Value(N) = sum_{k=1}^{N-1} gain(k); O(N), rare).
    total = 0.0
    for k in range(1, n):
        total += beta_gain(k, a, b)
    return total


@njit(cache=True, nogil=True)
def beta_gain(n: int, a: float, b: float) -> float:
    """E[Value(N+1, p) - Value(N, p)] for p ~ Beta(a, b), N >= 1."""
    if n < 1:
        return 0.0
    shared = log_rising(a + b, n + 4.0)
    succ = log_rising(a, n + 1.0) + log_rising(b, 3.0) - shared
    fail = log_rising(a, 2.0) + log_rising(b, n + 2.0) - shared
    return math.exp(succ) + math.exp(fail)


@njit(cache=True, nogil=True)
def point_values(n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Value(n[i], p[i]) for flat arrays."""
    out = np.empty(n.size)
    for i in range(n.size):
        out[i] = point_value(n[i], p[i])
    return out


@njit(cache=True, nogil=True)
def beta_values(n: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """E[Value(n[i], p)] for p ~ Beta(a[i], b[i]), flat arrays."""
    out = np.empty(n.size)
    for i in range(n.size):
        out[i] = beta_value(n[i], a[i], b[i])
    return out


@njit(cache=True, nogil=True)
def beta_gains(n: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Expected marginal gains for flat arrays (0 for N = 0: Value(1) = Value(0) = 0)."""
    out = np.empty(n.size)
    for i in range(n.size):
        out[i] = beta_gain(n[i], a[i], b[i])
    return out


@njit(cache=True, nogil=True)
def beta_moments(a: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E[p^x (1-p)^y] for p ~ Beta(a, b), flat arrays."""
    out = np.empty(a.size)
    for i in range(a.size):
        out[i] = math.exp(log_beta_moment(a[i], b[i], x[i], y[i]))
    return out


# --------------------------------------------------------------------------- solver gains


@njit(cache=True, nogil=True)
def prompt_constants(mode: int, x0: float, x1: float) -> tuple[float, float, float, float, float]:
    # Per-prompt constants, computed once per prompt and pass: the heap and the
    # threshold paths call this same function, so their gains agree bit for bit.
    if mode == POINT:
        p = x0
        if p <= 0.0 or p >= 1.0:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        q = 1.0 - p
        return p * q * q, p, q, math.log(p), math.log(q)
    return x0, x1, 0.0, 0.0, 0.0


@njit(cache=True, nogil=True)
def _gain(mode: int, c: tuple[float, float, float, float, float], n: int) -> float:
    if mode == POINT:
        w = c[0]
        if w == 0.0:
            return 0.0
        return w * (math.exp(n * c[3]) * c[2] + math.exp(n * c[4]) * c[1])
    return beta_gain(n, c[0], c[1])


@njit(cache=True, nogil=True)
def unit_gain(mode: int, c: tuple[float, float, float, float, float], lo: int, n: int) -> float:
    """Gain of the unit taking a prompt from n to n + 1 rollouts (non-increasing in n)."""
    if n <= 1 and lo == 0:
        return max(0.5 * _gain(mode, c, 1), _gain(mode, c, 2))
    return _gain(mode, c, n)


# --------------------------------------------------------------------------- heap greedy


@njit(cache=True, nogil=True)
def _sift_down(keys: np.ndarray, ids: np.ndarray, k: int, size: int) -> None:
    # Max-heap on (key, -id): the tie-breaking rule of the whole engine, larger gain
    # first, then lower index. Keys sit in heap order (no indirection) for speed.
    key = keys[k]
    ident = ids[k]
    while True:
        child = 2 * k + 1
        if child >= size:
            break
        ck = keys[child]
        ci = ids[child]
        right = child + 1
        if right < size:
            rk = keys[right]
            if rk > ck or (rk == ck and ids[right] < ci):
                child = right
                ck = rk
                ci = ids[right]
        if ck > key or (ck == key and ci < ident):
            keys[k] = ck
            ids[k] = ci
            k = child
        else:
            break
    keys[k] = key
    ids[k] = ident


@njit(cache=True, nogil=True)
def solve_heap(
    mode: int, x0: np.ndarray, x1: np.ndarray, lo: np.ndarray, hi: np.ndarray, extra: int
) -> np.ndarray:
    """Give `extra` units beyond `lo` one at a time to the largest marginal gain.

    Exact for non-increasing gains; O(M + extra * log M). The whole small-batch
    solve stays inside this one call; per-prompt constants are computed once.
    """
    m = lo.size
    n = lo.copy()
    consts = np.empty((m, 5))
    keys = np.empty(m)
    ids = np.empty(m, np.int64)
    size = 0
    for i in range(m):
        if hi[i] > lo[i]:
            c = prompt_constants(mode, x0[i], x1[i])
            for j in range(5):
                consts[i, j] = c[j]
            keys[size] = unit_gain(mode, c, lo[i], lo[i])
            ids[size] = i
            size += 1
    for k in range(size // 2 - 1, -1, -1):
        _sift_down(keys, ids, k, size)
    for _ in range(extra):
        if size == 0:
            break
        i = ids[0]
        n[i] += 1
        if n[i] < hi[i]:
            c = (consts[i, 0], consts[i, 1], consts[i, 2], consts[i, 3], consts[i, 4])
            keys[0] = unit_gain(mode, c, lo[i], n[i])
        else:
            size -= 1
            keys[0] = keys[size]
            ids[0] = ids[size]
        _sift_down(keys, ids, 0, size)
    return n


# --------------------------------------------------------------------------- threshold search


@njit(cache=True, nogil=True)
def _search(
    mode: int,
    c: tuple[float, float, float, float, float],
    lo: int,
    left: int,
    right: int,
    threshold: float,
    log_threshold: float,
    strict: bool,
) -> int:
    """First unit in [left, right) whose gain is not > threshold (not >= if not strict).

    Point mode narrows the range first: with r = max(p, 1-p), s = min(p, 1-p) and
    w = p (1-p)^2, gain(N) = w s r^N (1 + (s/r)^(N-1)) for N >= 1, so
    w s r^N <= gain(N) <= w s r^N (1 + (s/r)^(N0-1)) for every N >= N0 >= 1. Two
    logarithms then bound the answer to about three units (one unit of padding on
    each side absorbs rounding), and a binary search settles it. With lo = 0 the
    first two units use the concave envelope, so the looser bound gain(N) <= w r^N
    (which also covers the envelope) is used there.
    """
    if right <= left:
        return left
    if mode == POINT and c[0] > 0.0 and threshold > 0.0:
        log_r = max(c[3], c[4])
        if log_r < -1e-6:
            log_s = min(c[3], c[4])
            # log w = log p + 2 log(1-p): no extra logarithm per prompt.
            log_excess = log_threshold - (c[3] + 2.0 * c[4])
            surely_above = math.floor((log_excess - log_s) / log_r) - 1.0 - lo
            first = lo + left
            if lo >= 1 and first >= 1:
                # log(1 + (s/r)^(first-1)) <= (s/r)^(first-1) <= s/r (first >= 2), or
                # <= 1 (first == 1): an upper bound without a transcendental call.
                slack = min(c[1], c[2]) / max(c[1], c[2]) if first >= 2 else 1.0
                surely_below = math.ceil((log_excess - log_s - slack) / log_r) + 1.0 - lo
            else:
                surely_below = math.ceil(log_excess / log_r) + 1.0 - lo
            if surely_above > left:
                left = int(min(surely_above, float(right)))
            if surely_below < right:
                right = int(max(surely_below, float(left)))
    while left < right:
        mid = (left + right) // 2
        g = unit_gain(mode, c, lo, lo + mid)
        if g > threshold or (not strict and g == threshold):
            left = mid + 1
        else:
            right = mid
    return left


@njit(cache=True, nogil=True, parallel=True)
def count_bracket(
    mode: int,
    x0: np.ndarray,
    x1: np.ndarray,
    lo: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    upper: float,
    lower: float,
    above: np.ndarray,
    at_least: np.ndarray,
) -> tuple[int, int]:
    """Per prompt, the open units [low[i], high[i]) with gain > upper and >= lower.

    Unit k of prompt i is the step from lo[i] + k to lo[i] + k + 1 rollouts; gains
    are non-increasing in k. Writes above[i] = low[i] + #(gain > upper) and
    at_least[i] = low[i] + #(gain >= lower) (lower <= upper) and returns their sums.
    """
    total_above = 0
    total_at_least = 0
    log_upper = math.log(upper) if upper > 0.0 else -np.inf
    log_lower = math.log(lower) if lower > 0.0 else -np.inf
    for i in prange(lo.size):
        c = prompt_constants(mode, x0[i], x1[i])
        a = _search(mode, c, lo[i], low[i], high[i], upper, log_upper, True)
        b = _search(mode, c, lo[i], a, high[i], lower, log_lower, False)
        above[i] = a
        at_least[i] = b
        total_above += a
        total_at_least += b
    return total_above, total_at_least


@njit(cache=True, nogil=True)
def sample_gains(
    mode: int,
    x0: np.ndarray,
    x1: np.ndarray,
    lo: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    stride: int,
) -> np.ndarray:
    """Gains of the open units [low[i], high[i]) of every stride-th prompt, sorted descending."""
    total = 0
    start = stride // 2
    for i in range(start, lo.size, stride):
        total += high[i] - low[i]
    out = np.empty(total)
    k = 0
    for i in range(start, lo.size, stride):
        if high[i] > low[i]:
            c = prompt_constants(mode, x0[i], x1[i])
            for u in range(low[i], high[i]):
                out[k] = unit_gain(mode, c, lo[i], lo[i] + u)
                k += 1
    out.sort()
    return out[::-1].copy()


@njit(cache=True, nogil=True)
def select_open_units(
    mode: int,
    x0: np.ndarray,
    x1: np.ndarray,
    lo: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    wanted: int,
) -> np.ndarray:
    """Counts per prompt after taking the `wanted` best open units in engine order.

    Open units are [low[i], high[i]); the order is (gain desc, index asc, unit asc).
    Finds the wanted-th largest gain v by selection, takes every open unit above v
    and the first ones equal to v in index order. Memory O(#open units).
    """
    n = low.copy()
    if wanted <= 0:
        return n
    total = 0
    for i in range(lo.size):
        total += high[i] - low[i]
    gains = np.empty(total)
    k = 0
    for i in range(lo.size):
        if high[i] > low[i]:
            c = prompt_constants(mode, x0[i], x1[i])
            for u in range(low[i], high[i]):
                gains[k] = unit_gain(mode, c, lo[i], lo[i] + u)
                k += 1
    cut = -np.partition(-gains, wanted - 1)[wanted - 1]
    above = 0
    for j in range(total):
        if gains[j] > cut:
            above += 1
    ties = wanted - above
    k = 0
    for i in range(lo.size):
        for _u in range(low[i], high[i]):
            gk = gains[k]
            k += 1
            if gk > cut:
                n[i] += 1
            elif gk == cut and ties > 0:
                n[i] += 1
                ties -= 1
    return n


@njit(cache=True, nogil=True)
def take_in_index_order(low: np.ndarray, high: np.ndarray, wanted: int) -> np.ndarray:
    """Counts after taking `wanted` open units in (index, unit) order: all open gains equal."""
    n = low.copy()
    for i in range(low.size):
        if wanted <= 0:
            break
        take = min(high[i] - low[i], wanted)
        n[i] += take
        wanted -= take
    return n
