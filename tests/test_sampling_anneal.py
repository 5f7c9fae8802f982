"""Sampling over noise levels (docs/design.md §0, §5): annealed MCMC, the Heun reverse-diffusion
sampler, score-only energies, the start and step-size rules, and argument checks.

Oracles: a σ-aware Gaussian, ``E(x, σ) = ½ (x − μ)ᵀ (Σ + σ² I)⁻¹ (x − μ)``, whose level-σ law is
``N(μ, Σ + σ² I)`` and whose probability-flow map is linear and known in closed form; and a
two-mode mixture at ±6 whose noised law is the mixture of ``N(±6, s² + σ²)``. The chains are
independent, so the final states are independent draws: every moment has standard error
``sd/sqrt(n)`` (computed from the samples) and tolerances are 5 standard errors.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

import conceptalg
from conceptalg.errors import SamplerError
from conceptalg.sampling import HMC, Heun, Langevin, karras_sigmas
from conceptalg.sampling.anneal import accepts_sigma, check_sigmas, step_ratios

N = 2000
MU = torch.tensor([1.0, -0.5], dtype=torch.float64)
SIGMA = torch.tensor([[2.0, 1.2], [1.2, 1.0]], dtype=torch.float64)
EYE = torch.eye(2, dtype=torch.float64)


def _precision(x: torch.Tensor, sigma) -> torch.Tensor:
    """``(Σ + σ² I)⁻¹`` per chain ``[B, 2, 2]`` (``sigma`` None, a float or ``[B]``)."""
    s2 = torch.zeros(x.shape[0], dtype=x.dtype) if sigma is None else \
        torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0]) ** 2
    cov = SIGMA.to(x.dtype) + s2[:, None, None] * EYE.to(x.dtype)         # [B, 2, 2]
    return torch.linalg.inv(cov)


class Gaussian:
    """The σ-aware Gaussian leaf, with its data mean (so chains start centred on μ)."""

    data_mean = MU

    def __call__(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        y = x - MU.to(x.dtype)                                            # [B, 2]
        return 0.5 * torch.einsum("bi,bij,bj->b", y, _precision(x, sigma), y)


class GaussianScore:
    """The same Gaussian as a score-only model: ``score = −(Σ + σ² I)⁻¹ (x − μ)``."""

    score_only = True
    data_mean = MU

    def score(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        y = x - MU.to(x.dtype)
        return -torch.einsum("bij,bj->bi", _precision(x, sigma), y)


MODE, SPREAD2 = 6.0, 0.25


def mixture(x: torch.Tensor, sigma=None) -> torch.Tensor:
    """Equal mixture of N(±6, 0.25 + σ²) in one dimension (equal variances: no normaliser)."""
    var = SPREAD2 + (torch.zeros(x.shape[0], dtype=x.dtype) if sigma is None else sigma ** 2)
    sq = (x[:, :1] - torch.tensor([MODE, -MODE], dtype=x.dtype)) ** 2     # [B, 2]
    return -torch.logsumexp(-sq / (2 * var[:, None]), dim=1)


def msqrt(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(a)
    return v @ torch.diag(w.sqrt()) @ v.T


def assert_law(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    """Mean and covariance within 5 Monte-Carlo standard errors (independent draws)."""
    x, root_n = x.double(), math.sqrt(x.shape[0])
    m = x.mean(0)
    assert torch.all((m - mean).abs() <= 5 * x.std(0) / root_n), (m, mean)
    prods = (x - m)[:, :, None] * (x - m)[:, None, :]                    # [n, 2, 2]
    c = prods.mean(0)
    assert torch.all((c - cov).abs() <= 5 * prods.std(0) / root_n), (c, cov)


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32 if x.dtype == torch.float32 else torch.int64)


# ------------------------------------------------------------- exact samplers over levels
EXACT = [("mala", dict(sampler="mala", steps=60)),
         ("hmc", dict(sampler=HMC(num_leapfrog=5), steps=40)),
         ("mh", dict(sampler="mh", steps=150))]


@pytest.mark.parametrize("name, run", EXACT, ids=[e[0] for e in EXACT])
def test_exact_samplers_end_at_the_last_levels_law(name, run):
    sigmas = [3.0, 1.5, 0.5]
    x, info = conceptalg.sample(Gaussian(), N, shape=(2,), sigmas=sigmas, seed=7,
                                return_info=True, **run)
    assert_law(x, MU, SIGMA + sigmas[-1] ** 2 * EYE)
    assert info["sigmas"] == sigmas and len(info["acceptance rate per level"]) == 3
    target = {"mala": 0.574, "hmc": 0.8, "mh": 0.234}[name]
    assert all(abs(r - target) < 0.15 for r in info["acceptance rate per level"])


def test_each_level_sees_its_sigma_as_a_per_chain_tensor_in_order():
    seen = []

    def energy(x, sigma):
        assert sigma.shape == (x.shape[0],) and sigma.dtype == x.dtype
        if not seen or seen[-1] != float(sigma[0]):
            seen.append(float(sigma[0]))
        return 0.5 * (x ** 2).sum(1) / (1 + sigma ** 2)

    for sampler in ("langevin", "mala", "hmc", "mh"):
        seen.clear()
        conceptalg.sample(energy, 8, shape=(2,), sampler=sampler, steps=4,
                          sigmas=torch.tensor([3.0, 2.0, 1.0]), seed=0)
        assert seen == [3.0, 2.0, 1.0], sampler


# ------------------------------------------------------------------------ mode hopping
def test_annealing_moves_chains_between_modes_that_plain_mala_never_leaves():
    start = torch.full((N, 1), MODE)                                      # all in the + mode
    plain = conceptalg.sample(mixture, N, sampler="mala", steps=300, init=start, seed=0)
    assert float((plain < 0).double().mean()) < 0.01
    sigmas = karras_sigmas(20, 0.05, 10.0)
    x = conceptalg.sample(mixture, N, sampler="mala", steps=30, init=start, sigmas=sigmas,
                          seed=0)
    other = float((x < 0).double().mean())
    assert abs(other - 0.5) <= 5 * 0.5 / math.sqrt(N), other
    within = (x.abs() - MODE).double()                                    # N(0, s² + σ_L²)
    se = within.std() / math.sqrt(N)
    assert abs(float(within.mean())) <= 5 * se
    assert abs(float(within.var()) - (SPREAD2 + sigmas[-1] ** 2)) <= \
        5 * float(within.square().std()) / math.sqrt(N)


# ---------------------------------------------------------------------------------- heun
def _transport(x0: torch.Tensor, s0: float, s_last: float) -> torch.Tensor:
    """The exact probability-flow map σ₀ → σ_L of the Gaussian, then Tweedie's denoiser:
    ``μ + Σ (Σ + σ_L²)^{-½} (Σ + σ₀²)^{-½} (x₀ − μ)``."""
    m = SIGMA @ torch.linalg.inv(msqrt(SIGMA + s_last ** 2 * EYE)) \
        @ torch.linalg.inv(msqrt(SIGMA + s0 ** 2 * EYE))
    return MU + (x0 - MU) @ m.T


def _noised_start(s0: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return MU + torch.randn(N, 2, generator=g, dtype=torch.float64) @ msqrt(SIGMA + s0 ** 2 * EYE)


def test_heun_follows_the_exact_flow_to_second_order():
    s0, s_last = 10.0, 0.05
    x0 = _noised_start(s0)
    exact = _transport(x0, s0, s_last)
    errors = []
    for levels in (20, 40):
        x = conceptalg.sample(Gaussian(), N, sampler="heun", init=x0,
                              sigmas=karras_sigmas(levels, s_last, s0), seed=0)
        errors.append(float((x - exact).abs().max()))
    assert errors[1] < 0.02
    assert errors[0] / errors[1] > 3.0, errors                  # Euler would give ≈ 2


@pytest.mark.parametrize("churn", [0.0, 10.0], ids=["deterministic", "churn"])
def test_heun_maps_the_noised_law_to_the_data_law(churn):
    s0, s_last = 10.0, 0.05
    x = conceptalg.sample(Gaussian(), N, sampler=Heun(churn=churn), init=_noised_start(s0),
                          sigmas=karras_sigmas(40, s_last, s0), seed=1)
    # Tweedie's denoiser shrinks N(μ, Σ + σ_L² I) to N(μ, Σ (Σ + σ_L² I)⁻¹ Σ)
    assert_law(x, MU, SIGMA @ torch.linalg.inv(SIGMA + s_last ** 2 * EYE) @ SIGMA)


def test_heun_info_and_masked_coordinates():
    init = torch.tensor([[0.3, 2.0]]).expand(50, 2).clone()
    x, info = conceptalg.sample(Gaussian(), 50, sampler="heun", sigmas=[2.0, 1.0], init=init,
                                mask=torch.tensor([True, False]), seed=0, return_info=True)
    assert torch.equal(x[:, 1], init[:, 1]) and not torch.equal(x[:, 0], init[:, 0])
    assert info["sampler"] == "heun" and info["sigmas"] == [2.0, 1.0]
    assert info["score evaluations"] == 3


# ---------------------------------------------------------------- start, bounds, rules
class ZeroScore:
    """A score-only model with score 0: Heun returns its starting points unchanged."""

    score_only = True
    score = staticmethod(lambda x, sigma=None: torch.zeros_like(x))


START_CASES = [
    ("data-mean-tensor", dict(data_mean=torch.tensor([3.0, -1.0])), None, [3.0, -1.0]),
    ("data-mean-float", dict(data_mean=2.0), None, [2.0, 2.0]),
    ("bounds-midpoint", {}, (torch.tensor([0.0, -4.0]), 10.0), [5.0, 3.0]),
    ("zero", {}, None, [0.0, 0.0]),
]


@pytest.mark.parametrize("attrs, bounds, centre", [c[1:] for c in START_CASES],
                         ids=[c[0] for c in START_CASES])
def test_default_start_is_centre_plus_first_sigma_noise(attrs, bounds, centre):
    energy = type("Start", (ZeroScore,), attrs)()
    x = conceptalg.sample(energy, N, shape=(2,), sampler="heun", sigmas=[4.0, 0.1],
                          bounds=bounds, seed=0).double()
    centre = torch.tensor(centre, dtype=torch.float64)
    if bounds is None:
        assert torch.all((x.mean(0) - centre).abs() <= 5 * 4.0 / math.sqrt(N))
        assert torch.all((x.std(0) - 4.0).abs() <= 5 * 4.0 / math.sqrt(2 * N))
    else:                                   # clamped into the bounds on return
        low, high = bounds[0].double(), float(bounds[1])
        assert torch.all(x >= low) and torch.all(x <= high)
        for at, p in ((x == low, torch.special.ndtr((low - centre) / 4.0)),   # the clamp's
                      (x == high, torch.special.ndtr((centre - high) / 4.0))):  # atoms
            assert torch.all((at.double().mean(0) - p).abs() <= 5 * (p * (1 - p) / N).sqrt())


def test_chains_are_not_confined_to_the_bounds_while_levels_run():
    reach = []

    def energy(x, sigma):
        reach.append(float(x.detach().abs().max()))
        return 0.5 * (x ** 2).sum(1) / (1 + sigma ** 2)

    for sampler in ("langevin", "mala", "mh"):
        reach.clear()
        x = conceptalg.sample(energy, 200, shape=(2,), sampler=sampler, steps=10,
                              sigmas=[3.0, 1.0], bounds=(-0.5, 0.5), seed=0)
        assert max(reach) > 1.0, sampler                                  # evaluated outside
        assert float(x.abs().max()) <= 0.5, sampler                        # returned inside


def test_last_level_uses_the_step_size_and_the_rule_scales_with_sigma_squared():
    x, info = conceptalg.sample(Gaussian(), 10, shape=(2,), sampler=Langevin(step_size=0.02),
                                steps=3, sigmas=[2.0, 1.0], seed=0, return_info=True)
    assert torch.all(info["step size"] == 0.02)
    assert step_ratios([3.0, 1.0, 0.5], sigma_data=0.5) == [18.5, 2.5, 1.0]   # (σ² + ¼)/(¼ + ¼)
    big = step_ratios([200.0, 100.0, 0.01], sigma_data=0.1)
    assert big[0] / big[1] == pytest.approx(4.0, rel=1e-5)               # ∝ σ² above the floor
    flat = step_ratios([0.02, 0.01], sigma_data=1.0)
    assert flat[0] == pytest.approx(1.0, abs=1e-3)                        # flat below it


def test_noise_scale_keeps_the_temperature_fixed_over_levels():
    kwargs = dict(shape=(2,), steps=20, sigmas=[2.0, 1.0, 0.5], seed=3)
    a = conceptalg.sample(Gaussian(), 100, sampler=Langevin(step_size=0.05, noise_scale=0.1),
                          **kwargs)
    b = conceptalg.sample(Gaussian(), 100, sampler=Langevin(step_size=0.05),
                          temperature=0.1 ** 2 / (2 * 0.05), **kwargs)
    assert torch.allclose(a, b, atol=1e-5)


# --------------------------------------------------------------- σ = 0: the data level
@pytest.mark.parametrize("name, run", EXACT, ids=[e[0] for e in EXACT])
def test_a_last_level_of_zero_is_the_data_level(name, run):
    x, info = conceptalg.sample(Gaussian(), N, shape=(2,), sigmas=[3.0, 1.0, 0.0], seed=11,
                                return_info=True, **run)
    assert_law(x, MU, SIGMA)                                              # N(μ, Σ): σ = 0
    step = info["step size"]
    assert torch.all(torch.isfinite(step)) and torch.all(step > 0)
    target = {"mala": 0.574, "hmc": 0.8, "mh": 0.234}[name]
    assert all(abs(r - target) < 0.15 for r in info["acceptance rate per level"])


ZERO_LEVELS = [("last", [3.0, 1.0, 0.0]), ("two-zeros", [2.0, 0.0, 0.0]), ("only", [0.0])]


@pytest.mark.parametrize("sigmas", [z[1] for z in ZERO_LEVELS], ids=[z[0] for z in ZERO_LEVELS])
@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc", "mh"])
def test_every_mcmc_kernel_runs_levels_of_zero_with_a_positive_step(sampler, sigmas):
    seen = []

    def energy(x, sigma):
        if not seen or seen[-1] != float(sigma[0]):
            seen.append(float(sigma[0]))
        return 0.5 * (x ** 2).sum(1) / (1 + sigma ** 2)

    x, info = conceptalg.sample(energy, 16, shape=(2,), sampler=sampler, steps=6,
                                sigmas=sigmas, seed=0, return_info=True)
    assert seen == sorted(set(sigmas), reverse=True)                       # 0 is evaluated
    assert torch.all(torch.isfinite(x))
    assert torch.all(info["step size"] > 0) and torch.all(torch.isfinite(info["step size"]))


STEP_RULE = [  # (id, sigmas, σ_d, the factors (σ_l² + σ_d²)/(σ_L² + σ_d²) by hand)
    ("last-zero", [3.0, 1.0, 0.0], 0.5, [37.0, 5.0, 1.0]),
    ("zeros", [2.0, 0.0, 0.0], 1.0, [5.0, 1.0, 1.0]),
    ("only-zero", [0.0], 0.1, [1.0]),
    ("small-data-scale", [1.0, 0.0], 1e-3, [1e6 + 1.0, 1.0]),
]


@pytest.mark.parametrize("sigmas, sigma_data, factors", [r[1:] for r in STEP_RULE],
                         ids=[r[0] for r in STEP_RULE])
def test_step_rule_at_level_zero_neither_divides_by_zero_nor_vanishes(sigmas, sigma_data,
                                                                      factors):
    ratios = step_ratios(sigmas, sigma_data)
    assert ratios == pytest.approx(factors, rel=1e-12) and ratios[-1] == 1.0
    assert all(math.isfinite(r) and r >= 1.0 for r in ratios)


def test_the_last_level_of_zero_keeps_the_given_step_size():
    _, info = conceptalg.sample(Gaussian(), 10, shape=(2,), sampler=Langevin(step_size=0.02),
                                steps=3, sigmas=[2.0, 0.0], seed=0, return_info=True)
    assert torch.all(info["step size"] == 0.02) and info["sigmas"] == [2.0, 0.0]


HEUN_ZERO = [("deterministic", Heun()), ("churn", Heun(churn=5.0))]


@pytest.mark.parametrize("sampler", [h[1] for h in HEUN_ZERO], ids=[h[0] for h in HEUN_ZERO])
def test_heun_takes_a_trailing_zero_as_the_end_it_reaches_anyway(sampler):
    levels, seen = karras_sigmas(12, 0.05, 10.0), []

    class Recording(Gaussian):
        def __call__(self, x, sigma=None):
            seen.append(float(sigma[0]))
            return super().__call__(x, sigma)

    x0 = _noised_start(10.0)[:200]
    run = dict(sampler=sampler, init=x0, seed=3, return_info=True)
    plain, info = conceptalg.sample(Recording(), 200, sigmas=levels, **run)
    evaluated = list(seen)
    seen.clear()
    ended, info0 = conceptalg.sample(Recording(), 200, sigmas=levels + [0.0, 0.0], **run)
    assert torch.equal(bits(plain), bits(ended))                          # the same run
    assert seen == evaluated and 0.0 not in seen                          # no step at σ = 0
    assert info0["score evaluations"] == info["score evaluations"] == 2 * len(levels) - 1
    assert info0["sigmas"] == levels + [0.0, 0.0]


def test_check_sigmas_accepts_the_data_level():
    assert check_sigmas([2.0, 0.5, 0, 0.0]) == (2.0, 0.5, 0.0, 0.0)
    assert check_sigmas(torch.tensor([1.0, 0.0])) == (1.0, 0.0)


# ------------------------------------------------------------------------ reproducibility
SEEDED = [("langevin", dict(sampler="langevin", steps=10)),
          ("mala", dict(sampler="mala", steps=10)),
          ("hmc", dict(sampler="hmc", steps=6)),
          ("mh", dict(sampler="mh", steps=10)),
          ("heun", dict(sampler="heun")),
          ("heun-churn", dict(sampler=Heun(churn=5.0)))]


@pytest.mark.parametrize("run", [s[1] for s in SEEDED], ids=[s[0] for s in SEEDED])
def test_seeds_reproduce_bitwise_and_differ_between_seeds(run):
    draw = lambda seed, **kw: conceptalg.sample(Gaussian(), 64, shape=(2,),  # noqa: E731
                                                sigmas=[3.0, 1.0, 0.3], seed=seed, **run, **kw)
    a = draw(1)
    assert torch.equal(bits(a), bits(draw(1)))
    assert not torch.equal(a, draw(2))
    assert torch.equal(bits(a), bits(draw(1, batch_size=10)))             # chunking: same


# ---------------------------------------------------------------------- score-only models
@pytest.mark.parametrize("sampler", ["langevin", "heun"])
def test_score_only_models_run_with_langevin_and_heun(sampler):
    run = dict(sampler=sampler, shape=(2,), sigmas=[2.0, 1.0, 0.5], seed=4)
    if sampler == "langevin":
        run["steps"] = 30
    from_score = conceptalg.sample(GaussianScore(), 200, **run)
    from_energy = conceptalg.sample(Gaussian(), 200, **run)
    assert torch.allclose(from_score, from_energy, atol=1e-4)


def test_score_only_langevin_without_sigmas_and_its_zero_energy_trace():
    x, info = conceptalg.sample(GaussianScore(), 50, shape=(2,), steps=20, seed=0,
                                return_info=True)
    assert x.shape == (50, 2) and torch.all(info["energy trace"] == 0)


class Untouchable(GaussianScore):
    def score(self, x, sigma=None):                  # no work before the sampler is refused
        raise AssertionError("score called")


@pytest.mark.parametrize("sampler", ["mala", "hmc", "mh"])
@pytest.mark.parametrize("sigmas", [None, [2.0, 1.0]], ids=["plain", "levels"])
def test_mh_corrected_samplers_refuse_score_only_models_at_once(sampler, sigmas):
    with pytest.raises(SamplerError, match=re.escape("parameterization='energy'")) as e:
        conceptalg.sample(Untouchable(), 10, shape=(2,), sampler=sampler, sigmas=sigmas)
    assert "sampler='heun'" in str(e.value) and "score" in str(e.value)


def test_nonfinite_scores_raise_in_heun():
    class Broken(GaussianScore):
        def score(self, x, sigma=None):
            s = super().score(x, sigma)
            return torch.where(torch.arange(x.shape[0])[:, None] < 3, torch.nan, s)

    with pytest.raises(SamplerError, match="3 of 20 chains went non-finite"):
        conceptalg.sample(Broken(), 20, shape=(2,), sampler="heun", sigmas=[2.0, 1.0], seed=0)


# -------------------------------------------------------------------- defaults and errors
def diffusion(defaults: dict) -> nn.Module:
    """A module energy that records its sampler defaults, as a trained model does."""
    return type("Diffusion", (nn.Module,), {"sample_shape": (2,), "sampler_defaults": defaults,
                                            "forward": lambda self, x, sigma=None:
                                            Gaussian()(x, sigma)})()


def test_sampler_defaults_with_sigmas_and_heun_need_no_argument():
    levels = karras_sigmas(10, 0.05, 5.0)
    energy = diffusion({"sampler": "heun", "sigmas": levels, "steps": 99})
    x, info = conceptalg.sample(energy, 16, seed=0, return_info=True)
    assert x.shape == (16, 2) and info["sampler"] == "heun" and info["sigmas"] == levels
    x, info = conceptalg.sample(energy, 16, sampler="mala", seed=0, return_info=True)
    assert info["sampler"] == "mala" and info["sigmas"] == levels and info["steps"] == 99
    x, info = conceptalg.sample(energy, 16, sigmas=[1.0], seed=0, return_info=True)
    assert info["sampler"] == "heun" and info["sigmas"] == [1.0]


BAD = [
    ("empty", dict(sigmas=[]), "at least one noise level"),
    ("increasing", dict(sigmas=[1.0, 2.0]), "non-increasing"),
    ("negative", dict(sigmas=[-1.0]), "finite and ≥ 0"),
    ("negative-after-zero", dict(sigmas=[1.0, 0.0, -0.5]), "finite and ≥ 0"),
    ("nan", dict(sigmas=[float("nan")]), "finite and ≥ 0"),
    ("inf", dict(sigmas=[math.inf, 1.0]), "finite and ≥ 0"),
    ("zero-then-up", dict(sigmas=[1.0, 0.0, 0.5]), "non-increasing"),
    ("heun-only-zero", dict(sampler="heun", sigmas=[0.0]), "needs a noise level > 0"),
    ("text", dict(sigmas="1.0"), "sequence of noise levels"),
    ("matrix", dict(sigmas=torch.ones(2, 2)), "must be 1-D"),
    ("unaware", dict(sigmas=[1.0], energy=lambda x: x.sum(1)), "σ-aware energy"),
    ("schedule", dict(sigmas=[1.0], temperature=[1.0] * 5, steps=5), "one number"),
    ("heun-no-sigmas", dict(sampler="heun"), "give sigmas="),
    ("heun-steps", dict(sampler="heun", sigmas=[1.0], steps=10), "steps=10 does not apply"),
    ("heun-step-size", dict(sampler="heun", sigmas=[1.0], step_size=0.1), "step_size=0.1"),
    ("heun-warmup", dict(sampler="heun", sigmas=[1.0], warmup=3), "warmup=3"),
    ("heun-temperature", dict(sampler="heun", sigmas=[1.0], temperature=2.0), "temperature 1"),
    ("heun-reset", dict(sampler="heun", sigmas=[1.0], on_nonfinite="reset"), "must be 'raise'"),
    ("churn-negative", dict(sampler="heun", sigmas=[1.0], churn=-1.0), "churn must be"),
    ("churn-for-mala", dict(sampler="mala", sigmas=[1.0], churn=1.0), "does not apply"),
    ("sigma-data-alone", dict(sigma_data=0.5), "only with sigmas"),
    ("sigma-data-zero", dict(sigmas=[1.0], sigma_data=0.0), "sigma_data must be"),
]


@pytest.mark.parametrize("kwargs, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    kwargs = dict(kwargs)
    energy = kwargs.pop("energy", Gaussian())
    with pytest.raises(ValueError, match=re.escape(message)):
        conceptalg.sample(energy, 4, shape=(2,), **kwargs)


AWARE = [
    ("function", lambda x, sigma=None: x, True),
    ("keyword-only", lambda x, *, sigma: x, True),
    ("unaware-function", lambda x: x, False),
    ("kwargs-only", lambda x, **kw: x, False),
    ("positional-only", eval("lambda x, sigma, /: x"), False),
    ("module", type("M", (nn.Module,), {"forward": lambda self, x, sigma=None: x})(), True),
    ("unaware-module", type("M", (nn.Module,), {"forward": lambda self, x: x})(), False),
    ("callable-object", type("C", (), {"__call__": lambda self, x, *, sigma: x})(), True),
    ("score-only", GaussianScore(), True),
    ("builtin", torch.sum, False),
]


@pytest.mark.parametrize("energy, expected", [a[1:] for a in AWARE], ids=[a[0] for a in AWARE])
def test_accepts_sigma(energy, expected):
    assert accepts_sigma(energy) is expected


KARRAS = [(5, 0.01, 10.0, 7.0), (1, 0.5, 2.0, 7.0), (18, 0.002, 80.0, 7.0), (4, 1.0, 1.0, 3.0),
          (6, 0.1, 1.0, 1.0)]


@pytest.mark.parametrize("n, lo, hi, rho", KARRAS)
def test_karras_sigmas(n, lo, hi, rho):
    s = karras_sigmas(n, lo, hi, rho)
    assert len(s) == n and s[0] == hi and (n == 1 or s[-1] == lo)
    assert check_sigmas(s) == tuple(s)
    for i, value in enumerate(s[1:-1], 1):           # eq. 5 of Karras et al. 2022
        expected = (hi ** (1 / rho) + i / (n - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("args", [(0, 0.1, 1.0), (3, 2.0, 1.0), (3, 0.0, 1.0), (3, 0.1, 1.0, -1)])
def test_karras_sigmas_rejects_bad_arguments(args):
    with pytest.raises(ValueError, match="karras_sigmas"):
        karras_sigmas(*args)
