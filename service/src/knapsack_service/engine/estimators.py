"""Per-prompt success-rate estimates from what the store keeps (pure numpy).

- Window (the paper): the store keeps a prompt's last up to 48 outcomes as the bits
  of an integer, newest in bit 0, 1 = success; the estimate is the success rate over
  the last `window` of them, NaN ("unseen") below `min_observations`.
- Beta: evidence (successes, failures) decayed by `decay` per step, plus a prior,
  fixed or pooled over the run's prompts by the method of moments.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: Outcomes the store keeps per prompt (bits of one integer).
RING_BITS = 48
#: The pooled prior is capped at this strength (a + b), so it never drowns evidence.
MAX_PRIOR_STRENGTH = 1e6


def window_counts(ring: ArrayLike, trials: ArrayLike, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Successes and outcomes among each prompt's last `window` outcomes.

    Args:
        ring: int64 (M,), outcome bits, newest in bit 0.
        trials: int64 (M,), outcomes ever recorded (the ring holds min(trials, 48)).
        window: 1..48.

    Returns:
        (successes, count), both int64 (M,), count = min(trials, window).
    """
    if not 1 <= window <= RING_BITS:
        raise ValueError(f"window must be in [1, {RING_BITS}], got {window}")
    bits = np.asarray(ring, dtype=np.int64)
    count = np.minimum(np.asarray(trials, dtype=np.int64), window)
    count = np.maximum(count, 0)
    mask = (np.int64(1) << count) - 1
    successes = np.bitwise_count(bits & mask).astype(np.int64)
    return successes, count


def window_estimate(successes: ArrayLike, count: ArrayLike, min_observations: int) -> np.ndarray:
    """Successes / count, NaN where count < min_observations (the prompt counts as unseen)."""
    s = np.asarray(successes, dtype=np.float64)
    c = np.asarray(count, dtype=np.float64)
    seen = c >= max(min_observations, 1)
    return np.divide(s, c, out=np.full(np.broadcast(s, c).shape, np.nan), where=seen)


def beta_posterior(
    decayed_successes: ArrayLike,
    decayed_failures: ArrayLike,
    decayed_step: ArrayLike,
    now_step: int,
    decay: float,
    prior_a: ArrayLike,
    prior_b: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a, b) posterior: evidence decayed to `now_step`, plus the prior.

    The store decays evidence lazily: it was last brought to `decayed_step`, so it is
    multiplied by decay ** (now_step - decayed_step) here. A step in the past (the
    trainer asked about an earlier step) never amplifies evidence: the factor is at
    most 1.
    """
    elapsed = np.maximum(np.int64(now_step) - np.asarray(decayed_step, dtype=np.int64), 0)
    factor = np.power(float(decay), elapsed.astype(np.float64))
    a = np.asarray(decayed_successes, dtype=np.float64) * factor + np.asarray(prior_a, np.float64)
    b = np.asarray(decayed_failures, dtype=np.float64) * factor + np.asarray(prior_b, np.float64)
    return a, b


def pooled_beta_prior(successes: ArrayLike, trials: ArrayLike) -> tuple[float, float]:
    """Method-of-moments Beta fit to the success rates of prompts with trials > 0.

    The spread of observed rates includes binomial noise; its mean, mean(m (1-m) / t),
    is removed from the variance before fitting. Falls back to (1, 1) with fewer than
    two prompts, a mean of 0 or 1, or no variance left: nothing to learn a prior from.
    The strength a + b is capped at MAX_PRIOR_STRENGTH.
    """
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(trials, dtype=np.float64)
    seen = t > 0
    if int(seen.sum()) < 2:
        return 1.0, 1.0
    rates = s[seen] / t[seen]
    mean = float(rates.mean())
    if not 0.0 < mean < 1.0:
        return 1.0, 1.0
    noise = float(np.mean(mean * (1.0 - mean) / t[seen]))
    variance = float(rates.var()) - noise
    if variance <= 0.0:
        return 1.0, 1.0
    strength = min(mean * (1.0 - mean) / variance - 1.0, MAX_PRIOR_STRENGTH)
    if strength <= 0.0:
        return 1.0, 1.0
    return mean * strength, (1.0 - mean) * strength
