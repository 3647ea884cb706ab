"""Per-prompt success-rate estimates from what the store keeps (pure numpy).

- Window: the store keeps a prompt's last up to 48 outcomes as the bits of an
  integer, newest in bit 0, 1 = success; the estimate is the success rate over the
  last `window` of them, NaN ("unseen") below `min_observations`.
- Last visit (the paper code's rule, `verl/utils/dataset/rl_dataset.py` in
  liziniu/KnapsackRL): the mean of the last visit's outcomes when that visit had at
  least `window` (16) of them, else the mean of the last `window` outcomes; valid
  from `min_observations` (8) outcomes. A visit of 36 rollouts with one success
  reads 1/36, not 0 or 1/16 as a 16-outcome window would: the paper's long tail of
  large groups depends on it. Within a group the ring spreads successes evenly
  (`records.group_bits`), where the paper keeps the rollouts' order; across a
  visit boundary that is the only difference.
- Beta: evidence (successes, failures) decayed by `decay` per step, or per visit of
  the prompt, plus a prior, fixed or pooled over the run's prompts by the method of
  moments. Optionally a prompt with enough evidence is valued at its posterior mean
  (`concentrate_posterior`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: Outcomes the store keeps per prompt (bits of one integer).
RING_BITS = 48
#: The pooled prior is capped at this strength (a + b), so it never drowns evidence.
MAX_PRIOR_STRENGTH = 1e6
#: Strength (a + b) of a posterior concentrated at its mean: the expected value is
#: then the plug-in Value(N, mean) to about 1e-8 (the Beta kernels stay accurate).
CONCENTRATED_STRENGTH = 1e8


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


def last_visit_counts(
    visit_successes: ArrayLike,
    visit_trials: ArrayLike,
    ring: ArrayLike,
    trials: ArrayLike,
    window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The outcomes the paper's estimate averages: the last visit, or the last `window`.

    Args:
        visit_successes: int64 (M,), successes of the prompt's last visit.
        visit_trials: int64 (M,), outcomes of its last visit.
        ring: int64 (M,), outcome bits, newest in bit 0.
        trials: int64 (M,), outcomes ever recorded.
        window: 1..48, the paper's reward_buffer_length (16).

    Returns:
        (successes, count), both int64 (M,): the last visit's where it had at least
        `window` outcomes, else `window_counts`. Validity (min_observations) is
        `window_estimate`'s, on the count: with window >= min_observations it holds
        exactly when the prompt has min_observations outcomes in all, as the paper's.
    """
    window_successes, window_count = window_counts(ring, trials, window)
    visit_s = np.asarray(visit_successes, dtype=np.int64)
    visit_t = np.asarray(visit_trials, dtype=np.int64)
    whole_visit = visit_t >= window
    return (
        np.where(whole_visit, visit_s, window_successes),
        np.where(whole_visit, visit_t, window_count),
    )


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


def visit_beta_posterior(
    visit_successes: ArrayLike,
    visit_failures: ArrayLike,
    decay: float,
    prior_a: ArrayLike,
    prior_b: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a, b) posterior from evidence decayed per visit of the prompt, plus the prior.

    The store multiplies a prompt's evidence by `decay` when its next visit arrives,
    so the stored evidence counts its last visit in full. Allocating is the start of
    the next visit: the evidence is one visit old then, hence one more factor. A
    prompt seen once per epoch thus keeps decay ** 1 of its last group, where per-step
    decay would leave decay ** (steps per epoch). A half-life of h visits is
    decay = 0.5 ** (1 / h).
    """
    factor = float(decay)
    a = np.asarray(visit_successes, dtype=np.float64) * factor + np.asarray(prior_a, np.float64)
    b = np.asarray(visit_failures, dtype=np.float64) * factor + np.asarray(prior_b, np.float64)
    return a, b


def concentrate_posterior(
    a: ArrayLike, b: ArrayLike, from_strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors of strength a + b >= from_strength, concentrated at their mean.

    Why: the expected value over a diffuse posterior flattens Value in N, so prompts
    whose true p is tiny get many rollouts for the posterior mass at larger p. Once a
    prompt has evidence enough, its posterior mean is a good plug-in estimate and
    the expectation's hedging costs more than it earns; below that strength the
    expectation keeps what makes knapsack-bayes useful (no warm-up: unseen prompts
    carry the prior). Concentrating (a, b) at strength CONCENTRATED_STRENGTH keeps the
    same mean and makes E[Value(N, p)] the plug-in Value(N, mean) to about 1e-8, so
    the Beta solvers run unchanged.
    """
    a_arr = np.asarray(a, dtype=np.float64)
    b_arr = np.asarray(b, dtype=np.float64)
    strength = a_arr + b_arr
    plug_in = strength >= float(from_strength)
    scale = np.where(plug_in, CONCENTRATED_STRENGTH / strength, 1.0)
    return a_arr * scale, b_arr * scale


def pooled_beta_prior_from_moments(
    count: float, rate_sum: float, rate_square_sum: float, inverse_trials_sum: float
) -> tuple[float, float]:
    """Method-of-moments Beta fit from the moments of the prompts' success rates.

    The moments are over the prompts with trials > 0: their number, the sums of
    their rates r = s / t, of r² and of 1 / t (what the store keeps per run, so the
    prior is the run's whatever prompts a request names). The spread of observed
    rates includes binomial noise; its mean, mean(m (1-m) / t) = m (1-m) mean(1/t),
    is removed from the variance before fitting. Falls back to (1, 1) with fewer than
    two prompts, a mean of 0 or 1, or no variance left: nothing to learn a prior from.
    The strength a + b is capped at MAX_PRIOR_STRENGTH.

    Running sums drift by rounding (about 1e-16 per update); a variance
    mean(r²) - mean(r)² below zero can only be such drift and is clamped to 0.
    """
    if count < 2.0:
        return 1.0, 1.0
    mean = rate_sum / count
    if not 0.0 < mean < 1.0:
        return 1.0, 1.0
    spread = max(rate_square_sum / count - mean * mean, 0.0)
    noise = mean * (1.0 - mean) * (inverse_trials_sum / count)
    variance = spread - noise
    if variance <= 0.0:
        return 1.0, 1.0
    strength = min(mean * (1.0 - mean) / variance - 1.0, MAX_PRIOR_STRENGTH)
    if strength <= 0.0:
        return 1.0, 1.0
    return mean * strength, (1.0 - mean) * strength


def pooled_beta_prior(successes: ArrayLike, trials: ArrayLike) -> tuple[float, float]:
    """`pooled_beta_prior_from_moments` over the prompts of these arrays with trials > 0."""
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(trials, dtype=np.float64)
    seen = t > 0
    rates = s[seen] / t[seen]
    return pooled_beta_prior_from_moments(
        float(rates.size),
        float(rates.sum()),
        float(np.square(rates).sum()),
        float((1.0 / t[seen]).sum()),
    )
