"""ESS and split-R̂ against cases with known answers; dual averaging; the docstring examples."""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
import torch

from conceptalg.sampling import effective_sample_size, split_rhat
from conceptalg.sampling.adaptation import (dual_averaging_init, dual_averaging_update,
                                            warmup_init, warmup_update)




def ar1(t: int, chains: int, phi: float, seed: int) -> torch.Tensor:
    """Stationary AR(1) chains x_t = φ x_{t−1} + sqrt(1 − φ²) ε_t, unit variance: [T, M]."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(t, chains, generator=g, dtype=torch.float64)
    x = torch.empty(t, chains, dtype=torch.float64)
    x[0] = eps[0]
    scale = math.sqrt(1 - phi ** 2)
    for i in range(1, t):
        x[i] = phi * x[i - 1] + scale * eps[i]
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ess_of_iid_draws_is_the_number_of_draws(seed):
    x = torch.randn(1000, 8, generator=torch.Generator().manual_seed(seed))
    ess = float(effective_sample_size(x))
    assert abs(ess / 8000 - 1) < 0.15


@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_ess_of_ar1_matches_formula(phi):
    x = ar1(4000, 8, phi, seed=int(phi * 10))
    expected = 4000 * 8 * (1 - phi) / (1 + phi)
    assert abs(float(effective_sample_size(x)) / expected - 1) < 0.2


def test_ess_per_coordinate_and_single_chain():
    x = torch.stack([torch.randn(2000, 4, generator=torch.Generator().manual_seed(3)),
                     ar1(2000, 4, 0.9, seed=4).float()], dim=-1)         # [T, M, 2]
    ess = effective_sample_size(x)
    assert ess.shape == (2,)
    assert float(ess[0]) > 5 * float(ess[1])
    one = effective_sample_size(ar1(8000, 1, 0.5, seed=5)[:, 0])          # a [T] trace
    assert abs(float(one) / (8000 / 3) - 1) < 0.25


def test_split_rhat_near_one_for_agreeing_chains():
    x = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
    assert abs(float(split_rhat(x)) - 1) < 0.01


def test_split_rhat_flags_chains_with_different_means():
    x = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
    x[:, 2:] += 1.0
    assert float(split_rhat(x)) > 1.1


def test_split_rhat_flags_a_trend_within_chains():
    """Split-R̂ catches non-stationarity: every chain drifts the same way."""
    t = torch.linspace(0, 4, 1000)[:, None]
    x = t + torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
    assert float(split_rhat(x)) > 1.1


@pytest.mark.parametrize("fn", [effective_sample_size, split_rhat])
def test_too_short_traces_are_rejected(fn):
    with pytest.raises(ValueError, match="at least 4 draws"):
        fn(torch.zeros(3, 2))


def test_dual_averaging_finds_the_step_of_a_known_acceptance_curve():
    """Acceptance exp(−ε) is deterministic: dual averaging must solve exp(−ε) = 0.6 → 0.511."""
    eps = torch.tensor([0.01, 1.0, 100.0])
    state = dual_averaging_init(eps, target=0.6)
    for _ in range(2000):
        state, eps = dual_averaging_update(state, torch.exp(-eps))
    expected = torch.full((3,), -math.log(0.6), dtype=torch.float64)
    assert torch.allclose(torch.exp(state.log_step_avg), expected, rtol=0.02)


def test_warmup_freezes_on_the_last_step():
    state = warmup_init(torch.full((2,), 0.5), target=0.5, warmup=40)
    prob = torch.tensor([0.9, 0.1], dtype=torch.float64)
    for _ in range(40):
        state, eps = warmup_update(state, prob)
    assert torch.equal(eps, torch.exp(state.da.log_step_avg))
    assert float(eps[0]) > 0.5 > float(eps[1])                           # per chain


MODULES = ["base", "langevin", "mala", "hmc", "mh", "adaptation", "buffer", "diagnostics",
           "loop", "api", "anneal", "heun", "resolve", "__init__"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module("conceptalg.sampling" if name == "__init__"
                                     else f"conceptalg.sampling.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_every_public_name_has_an_example():
    import conceptalg.sampling as sampling
    for name in sampling.__all__:
        obj = getattr(sampling, name)
        if not (isinstance(obj, type) or callable(obj)) or name == "SamplerConfig":
            continue                                  # modules, the SAMPLERS table, an alias
        doc = getattr(obj, "__doc__", None) or ""
        assert "Example" in doc or ">>>" in doc, name
