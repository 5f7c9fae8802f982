"""Reverse diffusion: EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 2).

For the variance-exploding family ``p_σ = p_data ∗ N(0, σ² I)`` the probability-flow ODE

    dx/dσ = −σ · ∇ log p_σ(x) = σ · ∇E(x, σ)

carries a sample of ``p_σ₀`` to one of ``p_σ`` for every ``σ < σ₀``. Between consecutive levels
``σ_i > σ_{i+1}`` one Heun (trapezoidal, 2nd-order) step

    d = σ_i ∇E(x, σ_i);   x̃ = x + (σ_{i+1} − σ_i) d;   d' = σ_{i+1} ∇E(x̃, σ_{i+1})
    x ← x + (σ_{i+1} − σ_i) (d + d')/2

and from the last level ``σ_L`` one Euler step to σ = 0, ``x ← x − σ_L² ∇E(x, σ_L)``: Tweedie's
denoiser ``E[x₀ | x_σ]``. That is ``2L − 1`` score evaluations for ``L`` levels and no random
numbers. ``churn`` (EDM's ``S_churn``) adds stochasticity: before each step the level is raised
to ``σ̂ = σ_i (1 + γ)``, ``γ = min(churn/L, √2 − 1)``, by adding fresh noise of variance
``σ̂² − σ_i²``, and the step starts from ``σ̂``.

The integration ends at σ = 0 whatever the schedule, so a trailing 0 in ``sigmas`` (the data
level, docs/design.md §0) is that end, not a level to take a Heun step from: ``[..., σ_L, 0]``
runs exactly as ``[..., σ_L]`` (:func:`step_levels`), its final denoising step included, and
``L`` counts the levels > 0.

The score is ``−∇E`` by autograd through :func:`conceptalg.sampling.base.energy_and_grad`, or a
score-only energy's own ``score``. Masked coordinates (``False``) get a zero gradient and no churn
noise, so they stay at their initial values. Finiteness is accumulated per chain and read once,
at the end (no host sync per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import torch
from torch import Tensor

from ..errors import SamplerError
from .anneal import AtLevel
from .base import energy_and_grad, per_chain_sum
from .loop import Shard

__all__ = ["Heun", "integrate", "step_levels"]


@dataclass(frozen=True)
class Heun:
    """Configuration of the reverse-diffusion sampler (``sampler="heun"``): Heun integration of
    the probability-flow ODE over ``sigmas`` (required), then a final denoising step to σ = 0
    (module docstring). ``churn`` ≥ 0 is EDM's ``S_churn`` (0: deterministic given the start).
    It takes no ``steps``, ``warmup`` or ``step_size``: the levels are the steps.

    Example:
        >>> import torch, conceptalg
        >>> from conceptalg.sampling import Heun, karras_sigmas
        >>> energy = lambda x, sigma: 0.5 * (x ** 2).sum(1) / (1 + sigma ** 2)   # N(0, (1 + σ²) I)
        >>> x = conceptalg.sample(energy, 1000, shape=(2,), sampler=Heun(),
        ...                       sigmas=karras_sigmas(30, 0.01, 20.0), seed=0)
        >>> bool((x.std(0) - 1.0).abs().max() < 0.1)        # N(0, I) recovered
        True
    """

    churn: float = 0.0

    name: ClassVar[str] = "heun"
    adapts: ClassVar[bool] = False
    adapt: ClassVar[bool] = False
    target_accept: ClassVar[Optional[float]] = None

    def __post_init__(self) -> None:
        c = self.churn
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) \
                or c < 0:
            raise ValueError(f"churn must be a finite number ≥ 0, got {c!r}")


def step_levels(sigmas: Sequence[float]) -> list[float]:
    """The levels a Heun run steps from: ``sigmas`` without its trailing zeros (σ = 0 is where
    the integration ends anyway, module docstring); a ``ValueError`` when none is left.

    Example:
        >>> step_levels([4.0, 0.5, 0.0])
        [4.0, 0.5]
    """
    levels = [float(s) for s in sigmas if s > 0]   # non-increasing: the zeros are trailing
    if not levels:
        raise ValueError(f"sampler='heun' needs a noise level > 0 to integrate down from; "
                         f"sigmas={list(sigmas)} holds only the data level 0 (use an MCMC "
                         f"sampler there, e.g. sampler='langevin')")
    return levels


def _gradient(energy: Any, x: Tensor, sigma: float, mask: Optional[Tensor],
              chunks: Optional[list[slice]], check: bool) -> Tensor:
    """``∇E(x, σ)`` ``[B, *shape]``, chunk by chunk when ``chunks`` is given."""
    fn = AtLevel(energy, sigma)
    if chunks is None:
        return energy_and_grad(fn, x, mask, check=check)[1]
    return torch.cat([energy_and_grad(fn, x[sl], mask, check=check)[1] for sl in chunks])


def integrate(config: Heun, energy: Any, x0: Tensor, sigmas: Sequence[float], *,
              generator: torch.Generator, mask: Optional[Tensor] = None,
              batch_size: Optional[int] = None, progress: Any = None,
              shard: Optional[Shard] = None) -> Tensor:
    """Integrate from ``x0`` ``[n, *shape]`` at ``sigmas[0]`` down to σ = 0 (module docstring;
    trailing zeros of ``sigmas`` are that end) and return the samples ``[n, *shape]``. Churn
    noise is drawn for all ``n`` chains at every step (so ``batch_size`` chunking and ``shard``
    give the same numbers); raises :class:`SamplerError` naming the number of chains that went
    non-finite.

    Example:
        >>> import torch
        >>> energy = lambda x, sigma: 0.5 * (x ** 2).sum(1)       # score −x at every level
        >>> x = integrate(Heun(), energy, torch.ones(3, 2), [1.0], generator=torch.Generator())
        >>> x                                                     # x − σ² ∇E = 0
        tensor([[0., 0.],
                [0., 0.],
                [0., 0.]])
    """
    n = x0.shape[0]
    x = x0 if shard is None else x0[shard.start:shard.stop]
    k = x.shape[0]
    chunks = None if batch_size is None or batch_size >= k else \
        [slice(i, min(i + batch_size, k)) for i in range(0, k, batch_size)]
    steps = step_levels(sigmas)
    levels = steps + [0.0]
    gamma = min(config.churn / len(steps), math.sqrt(2.0) - 1.0)
    probe = torch.zeros(k, dtype=torch.float64, device=x.device)
    for i in range(len(steps)):
        s, s_next = levels[i], levels[i + 1]
        if gamma > 0:
            xi = torch.randn((n, *x.shape[1:]), generator=generator, dtype=x.dtype,
                             device=x.device)                             # all n chains
            if shard is not None:
                xi = xi[shard.start:shard.stop]
            if mask is not None:
                xi = torch.where(mask, xi, 0.0)
            s_hat = s * (1.0 + gamma)
            x = x + math.sqrt(s_hat ** 2 - s ** 2) * xi
            s = s_hat
        d = s * _gradient(energy, x, s, mask, chunks, check=i == 0)       # dx/dσ at (x, σ_i)
        x_euler = x + (s_next - s) * d
        if s_next > 0:
            d_next = s_next * _gradient(energy, x_euler, s_next, mask, chunks, check=False)
            x = x + (s_next - s) * (0.5 * (d + d_next))
        else:
            x = x_euler                                                   # Tweedie denoise
        probe.add_(per_chain_sum(x, torch.float64))
        if progress is not None:
            progress.update(1)
    if shard is not None:
        x, probe = shard.gather(x), shard.gather(probe)
    bad = ~torch.isfinite(probe)
    if bool(bad.any()):                                                   # the one host sync
        raise SamplerError(f"{int(bad.sum())} of {n} chains went non-finite (NaN or infinite "
                           f"score) during the Heun integration over {len(steps)} noise levels "
                           f"(checked once, at the end); check the energy at every σ in sigmas "
                           f"(from {levels[0]:g} to {levels[-2]:g}) and the starting points")
    return x
