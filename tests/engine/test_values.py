"""Value functions against their definitions, numerical integration and limits."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_service.engine import (
    beta_moment,
    expected_marginal_gain,
    expected_value,
    marginal_gain,
    value,
)

# Midpoint rule: no evaluation at 0 or 1, where Beta densities may be singular.
CELLS = 400_000
GRID = (np.arange(CELLS) + 0.5) / CELLS


def _beta_pdf(a: float, b: float) -> np.ndarray:
    log_pdf = (
        (a - 1) * np.log(GRID)
        + (b - 1) * np.log1p(-GRID)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )
    return np.exp(log_pdf)


def _integrate(f: np.ndarray) -> float:
    return float(f.sum() / CELLS)


def test_value_matches_definition():
    p = np.array([0.1, 0.25, 0.5, 0.9])
    for n in (2, 3, 8, 64):
        expected = (1 - p**n - (1 - p) ** n) * p * (1 - p) ** 2
        np.testing.assert_allclose(value(n, p), expected, rtol=1e-14, atol=1e-300)


def test_value_limits():
    assert np.all(value(np.arange(0, 50), 0.0) == 0.0)
    assert np.all(value(np.arange(0, 50), 1.0) == 0.0)
    # No gradient without two rollouts.
    assert np.all(value([0, 1], 0.3) == 0.0)
    # N -> infinity: the gradient is certain, the value tends to InfoGain(p).
    np.testing.assert_allclose(value(4096, 0.3), 0.3 * 0.7**2, rtol=1e-12)


@given(
    n=st.integers(1, 4095),
    p=st.floats(0.0, 1.0, allow_nan=False),
)
@settings(max_examples=200, deadline=None)
def test_marginal_gain_is_value_difference(n, p):
    diff = float(value(n + 1, p) - value(n, p))
    assert math.isclose(float(marginal_gain(n, p)), diff, rel_tol=1e-9, abs_tol=1e-15)


def test_marginal_gain_at_zero_and_monotone():
    assert float(marginal_gain(0, 0.4)) == 0.0
    for p in (0.01, 0.3, 0.5, 0.77, 0.999):
        gains = marginal_gain(np.arange(1, 300), p)
        assert np.all(np.diff(gains) <= 0.0)
        assert np.all(gains >= 0.0)


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (3.5, 7.2), (20.0, 4.0), (0.7, 2.5)])
@pytest.mark.parametrize(("x", "y"), [(1, 2), (9, 3), (2, 30), (0, 0)])
def test_beta_moment_against_quadrature(a, b, x, y):
    pdf = _beta_pdf(a, b)
    reference = _integrate(GRID**x * (1 - GRID) ** y * pdf)
    got = float(beta_moment(a, b, x, y))
    # a < 1 has an integrable singularity at 0 that the midpoint rule resolves slowly.
    assert got == pytest.approx(reference, rel=1e-2 if min(a, b) < 1 else 1e-6)


@pytest.mark.parametrize(("a", "b"), [(2.0, 5.0), (9.0, 3.0), (1.0, 1.0)])
def test_expected_value_and_gain_against_quadrature(a, b):
    pdf = _beta_pdf(a, b)
    for n in (2, 5, 17, 100):
        point = (1 - GRID**n - (1 - GRID) ** n) * GRID * (1 - GRID) ** 2
        assert float(expected_value(n, a, b)) == pytest.approx(_integrate(point * pdf), rel=1e-6)
        gain = GRID ** (n + 1) * (1 - GRID) ** 3 + GRID**2 * (1 - GRID) ** (n + 2)
        got = float(expected_marginal_gain(n, a, b))
        assert got == pytest.approx(_integrate(gain * pdf), rel=1e-6, abs=1e-14)


def test_expected_gain_monte_carlo():
    rng = np.random.default_rng(7)
    draws = rng.beta(4.0, 6.0, size=2_000_000)
    for n in (2, 8, 32):
        mc = np.mean(draws ** (n + 1) * (1 - draws) ** 3 + draws**2 * (1 - draws) ** (n + 2))
        assert float(expected_marginal_gain(n, 4.0, 6.0)) == pytest.approx(mc, rel=2e-2)


@given(
    a=st.floats(0.05, 1e9),
    b=st.floats(0.05, 1e9),
)
@settings(max_examples=60, deadline=None)
def test_expected_gain_concave_finite_and_consistent(a, b):
    n = np.arange(1, 4097)
    gains = expected_marginal_gain(n, a, b)
    assert np.all(np.isfinite(gains))
    assert np.all(gains >= 0.0)
    # Non-increasing up to rounding noise (relative 1e-9).
    assert np.all(np.diff(gains) <= 1e-9 * gains[:-1] + 1e-300)
    values = expected_value(np.array([2, 3, 50]), a, b)
    assert np.all(np.isfinite(values))
    # The gain is the difference of expected values (where that difference is resolvable).
    v2, v3 = expected_value(2, a, b), expected_value(3, a, b)
    assert float(v3 - v2) == pytest.approx(
        float(gains[1]), rel=1e-6, abs=1e-12 * float(v3) + 1e-300
    )


def test_expected_value_concentrates_on_point_value():
    # A posterior with a + b = 2e9 is a point mass for all practical purposes.
    p = 0.3
    a, b = p * 2e9, (1 - p) * 2e9
    for n in (2, 16, 4096):
        assert float(expected_value(n, a, b)) == pytest.approx(float(value(n, p)), rel=1e-6)
        assert float(expected_marginal_gain(n, a, b)) == pytest.approx(
            float(marginal_gain(n, p)), rel=1e-5, abs=1e-300
        )


def test_broadcasting_shapes():
    out = value(np.arange(4)[:, None], np.array([0.2, 0.5, 0.8]))
    assert out.shape == (4, 3)
    assert expected_value(np.arange(3), np.array([[1.0], [2.0]]), 3.0).shape == (2, 3)
