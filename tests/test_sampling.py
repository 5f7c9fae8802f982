"""Statistical tests of the samplers on targets with known moments.

Many independent chains (n = 4000): the final states are independent draws, so every moment
estimate has standard error sd/sqrt(n) (computed from the samples themselves). Tolerances are
5 standard errors, plus — for ULA only — its known discretisation bias: on a Gaussian with
precision A the exact ULA stationary covariance is A⁻¹(I − hA/2)⁻¹, used as the oracle.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

import conceptalg
from conceptalg.sampling import HMC, MALA, MH, Langevin

N = 4000
MU = torch.tensor([1.0, -0.5], dtype=torch.float64)
SIGMA = torch.tensor([[2.0, 1.2], [1.2, 1.0]], dtype=torch.float64)
PRECISION = torch.linalg.inv(SIGMA)
MODES = torch.tensor([[1.5, 0.0], [-1.5, 0.0]])




def gaussian_energy(x: torch.Tensor) -> torch.Tensor:
    d = x - MU.to(x.dtype)                                                # [B, 2]
    return 0.5 * ((d @ PRECISION.to(x.dtype)) * d).sum(1)


def bimodal_energy(x: torch.Tensor) -> torch.Tensor:
    """Equal mixture of N((±1.5, 0), I): a low barrier (density at 0 is 0.65 of a peak)."""
    sq = ((x[:, None, :] - MODES.to(x.dtype)) ** 2).sum(-1)                # [B, 2]
    return -torch.logsumexp(-0.5 * sq, dim=1)


TARGETS = {
    "gaussian": (gaussian_energy, MU, SIGMA),
    "bimodal": (bimodal_energy, torch.zeros(2, dtype=torch.float64),
                torch.tensor([[1.0 + 1.5 ** 2, 0.0], [0.0, 1.0]], dtype=torch.float64)),
}

# steps per (sampler, target); ULA runs long because its small step mixes slowly.
RUNS = {
    "langevin": dict(sampler=Langevin(step_size=0.02), steps=2500),
    "mala": dict(sampler="mala", steps=600),
    "hmc": dict(sampler=HMC(num_leapfrog=5), steps=300),
    "mh": dict(sampler="mh", steps=1500),
}
ULA_STEP = {"gaussian": 0.02, "bimodal": 0.01}


@functools.lru_cache(maxsize=None)
def draw(sampler: str, target: str, temperature: float = 1.0):
    energy = TARGETS[target][0]
    kwargs = dict(RUNS[sampler])
    if sampler == "langevin":
        kwargs["sampler"] = Langevin(step_size=ULA_STEP[target])
    x, info = conceptalg.sample(energy, N, shape=(2,), seed=11, return_info=True,
                                temperature=temperature, **kwargs)
    return x.double(), info


def assert_moments(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor,
                   bias: float = 0.0) -> None:
    n = x.shape[0]
    m = x.mean(0)
    se_mean = x.std(0) / math.sqrt(n)
    assert torch.all((m - mean).abs() <= 5 * se_mean + bias), (m, mean, se_mean)
    d = x - m
    prods = d[:, :, None] * d[:, None, :]                                 # [n, 2, 2]
    c = prods.mean(0)
    se_cov = prods.std(0) / math.sqrt(n)
    assert torch.all((c - cov).abs() <= 5 * se_cov + bias), (c, cov, se_cov)


@pytest.mark.parametrize("sampler", ["mala", "hmc", "mh"])
@pytest.mark.parametrize("target", ["gaussian", "bimodal"])
def test_corrected_samplers_recover_moments(sampler, target):
    x, _ = draw(sampler, target)
    _, mean, cov = TARGETS[target]
    assert_moments(x, mean, cov)


def test_ula_gaussian_matches_its_exact_stationary_law():
    """ULA's stationary covariance on a Gaussian is A⁻¹(I − hA/2)⁻¹ exactly; its mean is μ."""
    x, _ = draw("langevin", "gaussian")
    h = ULA_STEP["gaussian"]
    biased = PRECISION.inverse() @ torch.linalg.inv(torch.eye(2, dtype=torch.float64)
                                                    - h * PRECISION / 2)
    assert_moments(x, MU, biased)
    assert (biased - SIGMA).abs().max() < 0.05           # and that law is close to the target


def test_ula_bimodal_within_discretisation_bias():
    x, _ = draw("langevin", "bimodal")
    _, mean, cov = TARGETS["bimodal"]
    # ULA's bias is O(h): on a Gaussian of variance s² the variance is inflated by h/2 relative;
    # h · max variance bounds it generously here.
    assert_moments(x, mean, cov, bias=ULA_STEP["bimodal"] * 3.25)


@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc", "mh"])
def test_bimodal_modes_are_balanced(sampler):
    x, _ = draw(sampler, "bimodal")
    right = (x[:, 0] > 0).double().mean()
    assert abs(float(right) - 0.5) <= 5 * 0.5 / math.sqrt(N)


@pytest.mark.parametrize("sampler, target", [("mala", 0.574), ("hmc", 0.8), ("mh", 0.234)])
def test_acceptance_rate_near_target_after_adaptation(sampler, target):
    """A 10-D correlated Gaussian: the mean post-warm-up acceptance is within 0.02 (the residual
    bias of per-chain dual averaging, see adaptation.py) plus 5 MC errors of the target."""
    d, n = 10, 2000
    scales = torch.linspace(0.5, 2.0, d)

    def energy(x):
        return 0.5 * ((x / scales) ** 2).sum(1)

    _, info = conceptalg.sample(energy, n, shape=(d,), sampler=sampler, steps=400, seed=2,
                                return_info=True)
    rate = info["acceptance rate"]
    mc_error = float(rate.std()) / math.sqrt(n)
    assert abs(info["mean acceptance rate"] - target) <= 0.02 + 5 * mc_error


@pytest.mark.parametrize("sampler, target", [("mala", 0.574), ("hmc", 0.8), ("mh", 0.234)])
def test_acceptance_rate_near_target_in_two_dimensions(sampler, target):
    """The 2-D runs above (150–1250 warm-up steps); in 2-D HMC's acceptance falls off a cliff
    as ε grows, the case where per-chain dual averaging is most biased (see adaptation.py)."""
    _, info = draw(sampler, "gaussian")
    mc_error = float(info["acceptance rate"].std()) / math.sqrt(N)
    assert abs(info["mean acceptance rate"] - target) <= 0.03 + 5 * mc_error


@pytest.mark.parametrize("sampler", ["mala", "hmc", "mh"])
def test_diagnostics_of_a_converged_run(sampler):
    _, info = draw(sampler, "gaussian")
    assert float(info["split r-hat"]) < 1.05
    kept = info["energy trace"].shape[0]
    assert info["energy trace"].shape == (kept, N) and kept == info["steps"] - info["warmup"]
    assert 100 < float(info["ess"]) <= kept * N * math.log10(kept * N)


def test_temperature_two_matches_half_energy():
    """Sampling E at T = 2 and E/2 at T = 1 target the same law (covariance 2Σ)."""
    hot = conceptalg.sample(gaussian_energy, N, shape=(2,), sampler="mala", steps=600,
                            temperature=2.0, seed=5).double()
    half = conceptalg.sample(lambda x: gaussian_energy(x) / 2, N, shape=(2,), sampler="mala",
                             steps=600, seed=6).double()
    assert_moments(hot, MU, 2 * SIGMA)
    assert_moments(half, MU, 2 * SIGMA)
    se = torch.sqrt(hot.var(0) / N + half.var(0) / N)
    assert torch.all((hot.mean(0) - half.mean(0)).abs() <= 5 * se)


@pytest.mark.parametrize("sampler", ["mala", "hmc", "mh"])
def test_bounds_give_the_truncated_law(sampler):
    """N(0, 1) truncated to [0, 2]: mean (φ(0) − φ(2)) / (Φ(2) − Φ(0))."""
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)         # noqa: E731
    big_phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))            # noqa: E731
    z = big_phi(2.0) - big_phi(0.0)
    mean = (phi(0.0) - phi(2.0)) / z
    var = 1 - 2 * phi(2.0) / z - mean ** 2

    def energy(x):  # NaN outside the box: the samplers must never evaluate it there
        e = 0.5 * (x ** 2).sum(1)
        outside = ((x < 0) | (x > 2)).any(1)
        return torch.where(outside, torch.nan, e)

    steps = 1000 if sampler == "mh" else 400
    x = conceptalg.sample(energy, N, shape=(1,), sampler=sampler, steps=steps,
                          bounds=(0.0, 2.0), seed=3).double()[:, 0]
    assert float(x.min()) >= 0 and float(x.max()) <= 2
    assert abs(float(x.mean()) - mean) <= 5 * math.sqrt(var / N)
    assert abs(float(x.var()) - var) <= 5 * float(((x - x.mean()) ** 2).std()) / math.sqrt(N)


@pytest.mark.parametrize("sampler", ["mala", "hmc"])
def test_mask_samples_the_conditional(sampler):
    """x₁ fixed at c: x₀ | x₁ = c ~ N(μ₀ + Σ₀₁/Σ₁₁ (c − μ₁), Σ₀₀ − Σ₀₁²/Σ₁₁)."""
    c = 0.5
    init = torch.stack([torch.zeros(N), torch.full((N,), c)], 1)
    x = conceptalg.sample(gaussian_energy, N, sampler=sampler, steps=400, init=init,
                          mask=torch.tensor([True, False]), seed=4).double()
    assert torch.equal(x[:, 1], init[:, 1].double())
    mean = float(MU[0] + SIGMA[0, 1] / SIGMA[1, 1] * (c - MU[1]))
    var = float(SIGMA[0, 0] - SIGMA[0, 1] ** 2 / SIGMA[1, 1])
    assert abs(float(x[:, 0].mean()) - mean) <= 5 * math.sqrt(var / N)
    assert abs(float(x[:, 0].var()) - var) <= 5 * var * math.sqrt(2 / N)


def test_replay_buffer_init_is_used():
    buf = conceptalg.sampling.ReplayBuffer(100, (2,), bounds=(-1.0, 1.0))
    buf.push(torch.full((100, 2), 0.25))
    x, info = conceptalg.sample(gaussian_energy, 500, sampler=MH(adapt=False), steps=2,
                                warmup=0, step_size=1e-6, init=buf, seed=0, return_info=True)
    near = ((x - 0.25).abs() < 1e-3).all(1).double().mean()
    assert 0.9 < float(near) < 0.99                       # 95 % from the buffer, 5 % noise


def test_mala_default_sampler_object_and_name_agree():
    a = conceptalg.sample(gaussian_energy, 200, shape=(2,), sampler="mala", steps=50, seed=1)
    b = conceptalg.sample(gaussian_energy, 200, shape=(2,), sampler=MALA(), steps=50, seed=1)
    assert torch.equal(a, b)
