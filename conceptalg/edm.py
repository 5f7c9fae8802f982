"""The EDM recipe (Karras et al. 2022) in one place: every number and formula of it that the
trainer, the diffusion model and the samplers read.

With data scale ``σ_d`` and noise level ``σ`` (variance exploding, in the data's own units;
``s² = σ² + σ_d²``):

    preconditioning   c_skip = σ_d² / s²,  c_out = σ σ_d / s,  c_in = 1 / s,  c_noise = ln(σ) / 4
    denoiser          D(x; σ) = μ + c_skip (x − μ) + c_out F(c_in (x − μ); c_noise)
    training levels   ln σ ~ N(P_mean + ln(σ_d / 0.5), P_std²),  P_mean = −1.2,  P_std = 1.2
    loss weight       λ(σ) = s² / (σ σ_d)²                 (unit effective weight per level)
    σ range           [0.002, 80] · σ_d / 0.5               (EDM's images in [−1, 1], σ_d = 0.5)
    sampling levels   σ_i = (σ_max^{1/ρ} + i/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,  ρ = 7

EDM states its recipe at σ_d = 0.5; here every level scales with the data's own σ_d, so the
recipe means the same for data in [0, 1] or in any other units. Pure functions of numbers and
tensors, importable from every layer (no other conceptalg import).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["P_MEAN", "P_STD", "SIGMA_MIN", "SIGMA_MAX", "RHO", "coefficients", "noise_input",
           "loss_weight", "training_sigmas", "sigma_range", "karras_sigmas"]

#: EDM's log-normal training levels at σ_d = 0.5
P_MEAN, P_STD = -1.2, 1.2
#: EDM's range of levels at σ_d = 0.5 (images in [−1, 1])
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
#: EDM's spacing exponent of the sampling levels
RHO = 7.0
_EDM_SIGMA_DATA = 0.5


def coefficients(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(c_skip, c_out, c_in)`` for noise levels ``sigma[B]`` (module docstring).

    Example:
        >>> [round(float(c), 4) for c in coefficients(torch.tensor([0.5]), 0.5)]
        [0.5, 0.3536, 1.4142]
    """
    s2 = sigma.square() + sigma_data ** 2
    return sigma_data ** 2 / s2, sigma * sigma_data / s2.sqrt(), s2.rsqrt()


def noise_input(sigma: Tensor) -> Tensor:
    """``c_noise = ln(σ) / 4``, what the network is told of the level.

    Example:
        >>> float(noise_input(torch.tensor(math.e ** 4)))
        1.0
    """
    return sigma.log() / 4


def loss_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """``λ(σ) = (σ² + σ_d²) / (σ σ_d)²`` ``[B]``: the weight that makes the preconditioned
    network's target unit-variance at every level.

    Example:
        >>> float(loss_weight(torch.tensor(0.5), 0.5))
        8.0
    """
    return (sigma.square() + sigma_data ** 2) / (sigma * sigma_data).square()


def training_sigmas(n: int, generator: torch.Generator, sigma_data: float, *,
                    p_mean: float = P_MEAN, p_std: float = P_STD) -> Tensor:
    """``n`` training levels ``[n]``, ``ln σ ~ N(p_mean + ln(σ_d / 0.5), p_std²)``: EDM's
    log-normal, moved to the data's own scale.

    Example:
        >>> s = training_sigmas(100_000, torch.Generator().manual_seed(0), 0.25)
        >>> round(float(s.log().mean() - math.log(0.5)), 1), round(float(s.log().std()), 1)
        (-1.2, 1.2)
    """
    shift = math.log(sigma_data / _EDM_SIGMA_DATA)
    return torch.exp(p_mean + shift + p_std * torch.randn(n, generator=generator))


def sigma_range(sigma_data: float) -> tuple[float, float]:
    """``(σ_min, σ_max)``: EDM's 0.002–80 scaled by ``σ_d / 0.5``.

    Example:
        >>> sigma_range(0.25)
        (0.001, 40.0)
    """
    scale = sigma_data / _EDM_SIGMA_DATA
    return SIGMA_MIN * scale, SIGMA_MAX * scale


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = RHO) -> list[float]:
    """The ρ-spaced noise schedule of EDM (Karras et al. 2022, eq. 5): ``n`` levels from
    ``sigma_max`` down to ``sigma_min``,

        σ_i = (σ_max^{1/ρ} + i/(n−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,   i = 0 … n−1,

    dense at small σ where detail forms (``rho=7``: EDM's choice; ``rho=1``: linear).

    Example:
        >>> s = karras_sigmas(5, 0.01, 10.0)
        >>> len(s), s[0], s[-1], all(a >= b for a, b in zip(s, s[1:]))
        (5, 10.0, 0.01, True)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"karras_sigmas: n must be an integer ≥ 1, got {n!r}")
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max), ("rho", rho)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"karras_sigmas: {name} must be a finite number > 0, got {value!r}")
    if sigma_min > sigma_max:
        raise ValueError(f"karras_sigmas: sigma_min must be ≤ sigma_max, got sigma_min="
                         f"{sigma_min!r} > sigma_max={sigma_max!r}")
    if n == 1:
        return [float(sigma_max)]
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    levels = [(hi + i / (n - 1) * (lo - hi)) ** rho for i in range(n)]
    levels[0], levels[-1] = float(sigma_max), float(sigma_min)       # exact ends
    for i in range(1, n):                                            # monotone under rounding
        levels[i] = min(max(levels[i], float(sigma_min)), levels[i - 1])
    return levels
