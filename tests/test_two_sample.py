"""The permutation MMD² test: the statistic against a brute-force formula, calibration, power."""

import numpy as np
import pytest
import torch

from conceptalg.evaluation.two_sample import TwoSampleResult, mmd_test


def brute_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * sigma ** 2))
    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * k(x, y).mean())


@pytest.mark.parametrize("m,n,shift", [(30, 30, 0.0), (50, 37, 0.4), (64, 100, 1.0)],
                         ids=["equal", "unequal", "far"])
def test_statistic_matches_brute_force(m, n, shift):
    rng = np.random.default_rng(m)
    x, y = rng.normal(size=(m, 2)), rng.normal(size=(n, 2)) + shift
    r = mmd_test(x, y, reps=20)
    assert r.statistic == pytest.approx(brute_mmd2(x, y, r.bandwidth), abs=1e-12)
    pooled = np.concatenate([x, y])
    d = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))[np.triu_indices(m + n, 1)]
    assert r.bandwidth == pytest.approx(np.median(d), rel=1e-12)
    assert (r.n_x, r.n_y, r.reps) == (m, n, 20)
    assert 1 / 21 <= r.p_value <= 1


def test_null_is_a_permutation_of_the_pooled_sample():
    # with a fixed bandwidth the null only depends on the pooled set: swapping x and y keeps it
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    a = mmd_test(x, y, reps=50, seed=7, bandwidth=1.0)
    b = mmd_test(x, y, reps=50, seed=7, bandwidth=1.0)
    assert a == b
    assert a.statistic == pytest.approx(mmd_test(y, x, reps=50, bandwidth=1.0).statistic, abs=1e-14)


def test_accepts_torch_and_reports():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 2, generator=g, dtype=torch.float32, requires_grad=True)
    r = mmd_test(x, torch.randn(60, 2, generator=g), reps=20)
    assert isinstance(r, TwoSampleResult)
    text = str(r)
    assert "p = " in text and "80 vs 60" in text and "20 permutations" in text
    assert r.rejects(1.0) and not r.rejects(0.0)


def test_null_calibration():
    """Under H0 the p-value is (super-)uniform: rejections at 0.05 within binomial error."""
    rng = np.random.default_rng(11)
    pvals = np.array([mmd_test(rng.normal(size=(60, 2)), rng.normal(size=(60, 2)), reps=99,
                               seed=i).p_value for i in range(40)])
    rejections = int((pvals <= 0.05).sum())
    # P(Binomial(40, 0.05) >= 7) ≈ 0.004
    assert rejections <= 6, pvals
    # uniform p-values: mean 0.5 with standard error 0.29/sqrt(40) ≈ 0.046
    assert 0.5 - 0.16 < pvals.mean() < 0.5 + 0.16, pvals


@pytest.mark.parametrize("transform", [lambda y: y + np.array([0.4, 0.0]), lambda y: 1.3 * y],
                         ids=["shift", "scale"])
def test_power(transform):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
    assert mmd_test(x, transform(y), reps=100).p_value <= 0.01


@pytest.mark.parametrize("kwargs,x,y,match", [
    ({"reps": 10}, np.zeros((5, 2)), np.zeros((5, 2)), "reps"),
    ({}, np.zeros((5, 2)), np.zeros((5, 3)), "same dimension"),
    ({}, np.zeros((1, 2)), np.zeros((5, 2)), "at least 2"),
    ({}, np.full((5, 2), np.nan), np.zeros((5, 2)), "non-finite"),
    ({"bandwidth": -1.0}, np.zeros((5, 2)), np.ones((5, 2)), "bandwidth"),
], ids=["few-reps", "dims", "tiny", "nan", "bandwidth"])
def test_bad_arguments(kwargs, x, y, match):
    with pytest.raises(ValueError, match=match):
        mmd_test(x, y, **kwargs)
