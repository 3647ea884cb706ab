"""Learning value of a prompt's rollout group, and its marginal gains (paper, Sec. 3).

With binary rewards, success rate p and N rollouts, GRPO gets a non-zero gradient with
probability 1 - p^N - (1-p)^N, and a gradient's worth is InfoGain(p) = p (1-p)^2, so

    Value(N, p) = (1 - p^N - (1-p)^N) p (1-p)^2,
    Value(N+1, p) - Value(N, p) = p (1-p)^2 (p^N (1-p) + (1-p)^N p)   (N >= 1).

For N <= 1 no gradient is possible, so Value(0, p) = Value(1, p) = 0 (the formula
would give -InfoGain at N = 0). Under a Beta(a, b) posterior the expectation has a
closed form through E[p^x (1-p)^y] = B(a+x, b+y) / B(a, b), computed from log-gamma
differences that stay accurate for a, b up to 1e9 and N up to 4096.

All functions broadcast their arguments like numpy ufuncs and return float64 arrays.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from knapsack_service.engine import _kernels as k


def _flat(*args: ArrayLike, dtypes: tuple[type, ...]) -> tuple[tuple[int, ...], list[np.ndarray]]:
    arrays = np.broadcast_arrays(*(np.asarray(x) for x in args))
    shape = arrays[0].shape
    flat = [
        np.ascontiguousarray(x, dtype=dtype).ravel()
        for x, dtype in zip(arrays, dtypes, strict=True)
    ]
    return shape, flat


def value(n: ArrayLike, p: ArrayLike) -> np.ndarray:
    """Value(N, p); 0 for N <= 1 and for p in {0, 1}."""
    shape, (counts, rates) = _flat(n, p, dtypes=(np.int64, np.float64))
    return k.point_values(counts, rates).reshape(shape)


def marginal_gain(n: ArrayLike, p: ArrayLike) -> np.ndarray:
    """Value(N+1, p) - Value(N, p): p (1-p)^2 (p^N (1-p) + (1-p)^N p) for N >= 1, 0 at N = 0."""
    counts = np.asarray(n, dtype=np.int64)
    rates = np.asarray(p, dtype=np.float64)
    q = 1.0 - rates
    with np.errstate(under="ignore"):
        gain = rates * q * q * (rates**counts * q + q**counts * rates)
    return np.where(counts >= 1, gain, 0.0).astype(np.float64)


def beta_moment(a: ArrayLike, b: ArrayLike, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """E[p^x (1-p)^y] for p ~ Beta(a, b), as B(a+x, b+y) / B(a, b) in log space."""
    f64 = np.float64
    shape, flat = _flat(a, b, x, y, dtypes=(f64, f64, f64, f64))
    return k.beta_moments(*flat).reshape(shape)


def expected_value(n: ArrayLike, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """E[Value(N, p)] for p ~ Beta(a, b).

    E[p(1-p)^2] - E[p^(N+1) (1-p)^2] - E[p (1-p)^(N+2)] for N >= 2, else 0.
    """
    shape, flat = _flat(n, a, b, dtypes=(np.int64, np.float64, np.float64))
    return k.beta_values(*flat).reshape(shape)


def expected_marginal_gain(n: ArrayLike, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """E[Value(N+1, p) - Value(N, p)] = E[p^(N+1) (1-p)^3] + E[p^2 (1-p)^(N+2)] (N >= 1).

    Non-increasing in N (each term is, pointwise in p), so the expected value is
    concave from N = 1 on and the exact solvers apply unchanged. 0 at N = 0.
    """
    shape, flat = _flat(n, a, b, dtypes=(np.int64, np.float64, np.float64))
    return k.beta_gains(*flat).reshape(shape)
