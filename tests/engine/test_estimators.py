"""Estimators over the store's outcome ring and decayed Beta evidence."""

import numpy as np
import pytest

from knapsack_service.engine import (
    beta_posterior,
    concentrate_posterior,
    expected_value,
    last_visit_counts,
    pooled_beta_prior,
    pooled_beta_prior_from_moments,
    value,
    visit_beta_posterior,
    window_counts,
    window_estimate,
)
from knapsack_service.store.records import EMPTY_RECORD, apply_group, decode_records, encode_record


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


def test_pooled_prior_from_moments_is_the_per_array_fit():
    rng = np.random.default_rng(1)
    trials = rng.integers(1, 40, size=500)
    successes = rng.binomial(trials, rng.beta(2.0, 3.0, size=500))
    rates = successes / trials
    moments = (500.0, rates.sum(), (rates * rates).sum(), (1.0 / trials).sum())
    assert pooled_beta_prior_from_moments(*moments) == pooled_beta_prior(successes, trials)
    assert pooled_beta_prior_from_moments(1.0, 0.5, 0.25, 0.1) == (1.0, 1.0)  # one prompt


def test_pooled_prior_from_drifted_moments_clamps_the_variance():
    # Running sums of identical rates can drift to mean(r**2) a hair below mean(r)**2:
    # no spread at all, never a negative variance and never a NaN.
    count, rate = 3.0, 0.1
    drifted = (count, rate * count, rate * rate * count * (1 - 1e-15), count / 10.0)
    assert pooled_beta_prior_from_moments(*drifted) == (1.0, 1.0)


def _batch_after(groups):
    """Store records after (successes, trials, step) groups, one prompt each list."""
    blob = b""
    for prompt in groups:
        record = EMPTY_RECORD
        for s, t, step in prompt:
            record = apply_group(record, s, t, None, step, 0.9)
        blob += encode_record(record)
    return decode_records(blob)


def test_last_visit_is_the_paper_estimate():
    batch = _batch_after(
        [
            [(1, 36, 0)],  # one visit of 36: 1/36, a 16-window reads 0
            [(8, 8, 0), (0, 4, 1)],  # last visit of 4 < 16: the last 16 outcomes
            [(3, 10, 0), (2, 10, 0)],  # two groups in one step: one visit of 20
            [(1, 4, 0), (1, 3, 1)],  # 7 outcomes in all: unseen
            [(16, 16, 0), (0, 20, 2), (5, 5, 1)],  # a late group leaves the visit
        ]
    )
    args = (batch.visit_successes, batch.visit_trials, batch.ring, batch.trials)
    successes, count = last_visit_counts(*args, 16)
    assert successes.tolist() == [1, 8, 5, 2, 0]
    assert count.tolist() == [36, 12, 20, 7, 20]
    p_hat = window_estimate(successes, count, 8)
    assert p_hat[0] == 1 / 36 and p_hat[1] == 8 / 12 and p_hat[2] == 0.25
    assert np.isnan(p_hat[3]) and p_hat[4] == 0.0
    window_successes, _ = window_counts(batch.ring, batch.trials, 16)
    assert window_successes[0] == 0  # what the window estimator made of it


def test_visit_posterior_decays_once_per_visit():
    batch = _batch_after([[(4, 8, 0), (2, 8, 10)]])  # two visits, ten steps apart
    a, b = visit_beta_posterior(
        batch.visit_beta_successes, batch.visit_beta_failures, 0.9, 1.0, 1.0
    )
    fresh_s, fresh_f = 4 * 0.9 + 2, 4 * 0.9 + 6
    assert a[0] == pytest.approx(float(np.float32(fresh_s)) * 0.9 + 1.0)
    assert b[0] == pytest.approx(float(np.float32(fresh_f)) * 0.9 + 1.0)
    per_step, _ = beta_posterior(
        batch.beta_successes, batch.beta_failures, batch.beta_step, 20, 0.9, 1.0, 1.0
    )
    assert per_step[0] < a[0] - 1.0  # ten steps of decay where one visit passed


def test_concentrated_posterior_is_valued_at_its_mean():
    a = np.array([1.0, 2.0, 30.0])
    b = np.array([40.0, 3.0, 90.0])
    ca, cb = concentrate_posterior(a, b, 50.0)
    assert ca[0] == 1.0 and cb[1] == 3.0  # below the strength: unchanged
    assert ca[2] / (ca[2] + cb[2]) == pytest.approx(0.25, rel=1e-12)
    n = np.arange(2, 40)
    plug = expected_value(n, ca[2], cb[2])
    np.testing.assert_allclose(plug, value(n, 0.25), rtol=1e-6)
    # The expectation over the diffuse posterior is flatter in N than the plug-in.
    diffuse = expected_value(n, 30.0, 90.0)
    assert np.ptp(np.diff(diffuse)) < np.ptp(np.diff(plug))
