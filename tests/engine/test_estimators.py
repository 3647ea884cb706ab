"""Estimators over the store's outcome ring and decayed Beta evidence."""

import numpy as np
import pytest

from knapsack_service.engine import (
    beta_posterior,
    pooled_beta_prior,
    window_counts,
    window_estimate,
)


def _ring(outcomes_newest_first):
    return sum(int(o) << k for k, o in enumerate(outcomes_newest_first))


def test_window_counts_low_bits_only():
    ring = np.array([_ring([1, 0, 1, 1, 0, 0, 1]), _ring([1] * 48), 0, _ring([0, 1])], np.int64)
    trials = np.array([7, 100, 0, 2], np.int64)
    successes, count = window_counts(ring, trials, 4)
    assert count.tolist() == [4, 4, 0, 2]
    assert successes.tolist() == [3, 4, 0, 1]
    successes, count = window_counts(ring, trials, 48)
    assert count.tolist() == [7, 48, 0, 2]
    assert successes.tolist() == [4, 48, 0, 1]


def test_window_counts_rejects_bad_window():
    with pytest.raises(ValueError):
        window_counts(np.zeros(1, np.int64), np.zeros(1, np.int64), 49)


def test_window_estimate_unseen_below_min_observations():
    est = window_estimate(np.array([3, 2, 0]), np.array([4, 1, 0]), 2)
    assert est[0] == 0.75
    assert np.isnan(est[1]) and np.isnan(est[2])


def test_beta_posterior_decays_and_never_amplifies():
    a, b = beta_posterior(
        np.array([8.0, 8.0]), np.array([2.0, 2.0]), np.array([10, 12]), 12, 0.5, 1.0, 2.0
    )
    np.testing.assert_allclose(a, [8 * 0.25 + 1, 8 + 1])
    np.testing.assert_allclose(b, [2 * 0.25 + 2, 2 + 2])
    # A request about an earlier step than the last decay: factor 1, not 2.
    a, b = beta_posterior(np.array([4.0]), np.array([4.0]), np.array([9]), 7, 0.5, 1.0, 1.0)
    assert (a[0], b[0]) == (5.0, 5.0)


def test_pooled_prior_method_of_moments():
    rng = np.random.default_rng(0)
    true_p = rng.beta(2.0, 6.0, size=20_000)
    trials = np.full(true_p.size, 200)
    successes = rng.binomial(trials, true_p)
    a, b = pooled_beta_prior(successes, trials)
    assert a / (a + b) == pytest.approx(0.25, abs=0.01)
    assert a + b == pytest.approx(8.0, rel=0.1)


def test_pooled_prior_fallbacks():
    assert pooled_beta_prior(np.array([3]), np.array([4])) == (1.0, 1.0)
    assert pooled_beta_prior(np.array([0, 0, 0]), np.array([5, 6, 0])) == (1.0, 1.0)
    assert pooled_beta_prior(np.array([0, 0]), np.array([0, 0])) == (1.0, 1.0)
    # Identical rates: no spread beyond binomial noise.
    assert pooled_beta_prior(np.array([5, 5, 5]), np.array([10, 10, 10])) == (1.0, 1.0)
