"""Annealing over noise levels: an MCMC kernel at each σ of a non-increasing schedule.

A σ-aware energy ``E(x, sigma=σ)`` describes the data law convolved with ``N(0, σ² I)``
(docs/design.md §0, variance exploding, in the data's units). ``sample(..., sigmas=[σ₀ ≥ σ₁ ≥
… ≥ σ_L ≥ 0])`` runs ``steps`` steps of the chosen kernel on ``x ↦ E(x, σ_l)`` at each level in
order; each level starts where the last ended and the one generator continues, so a seed fixes
the whole run. Large σ smooths the energy until far modes merge; chains that mix there are
carried down to the data level in the right proportions (Du et al. 2023, "Reduce, Reuse,
Recycle"). A level of 0 is the data level, run like any other on ``E(x, σ=0)`` (a trained
diffusion model evaluates it at its smallest trained level, ``sigma_min``).

Step sizes. The noised law of data with scale ``σ_d`` has variance ``σ_d² + σ²`` per coordinate,
and a kernel's good step grows with it (ULA/MALA: ∝ variance; HMC/MH: ∝ its square root, which
adaptation absorbs). So level ``l`` starts from

    h_l = step_size · (σ_l² + σ_d²) / (σ_L² + σ_d²)

— ∝ σ² at large σ, flat below the data scale (the floor), exactly ``step_size`` at the last
level. ``σ_d`` is the ``sigma_data`` option, else the energy's ``sigma_data`` attribute, else 1;
it is > 0, so the rule never divides by zero and never gives a zero step, levels of 0 included:
with ``σ_L = 0`` level ``l`` takes ``step_size · (1 + σ_l²/σ_d²)``, and a level of 0 (only zeros
follow it) takes ``step_size`` itself.
MH-corrected kernels then adapt per chain during each level's first ``warmup`` steps and keep
their exact corrections at every level. ULA's ``noise_scale`` is scaled by ``sqrt(h_l/step_size)``
so that ``T = noise_scale²/(2·step_size)`` is the same at every level.

Chains are not confined to ``bounds`` while levels run (the noised law has unbounded support:
no clamp for ULA, no rejection for the MH kernels); ``sample`` clamps the returned samples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from ..edm import karras_sigmas
from ..heads import accepts_sigma  # noqa: F401 (one rule, re-exported here for samplers)
from .base import is_score_only
from .loop import RunResult, Shard, run

__all__ = ["karras_sigmas", "check_sigmas", "accepts_sigma", "AtLevel", "step_ratios",
           "run_levels", "level_info"]


def check_sigmas(sigmas: Any) -> tuple[float, ...]:
    """``sigmas`` (a list, tuple or 1-D tensor) as a tuple of floats, checked: at least one
    level, every level finite and ≥ 0 (0 is the data level), non-increasing.

    Example:
        >>> check_sigmas([4, 2.0, 2.0, 0.5, 0])
        (4.0, 2.0, 2.0, 0.5, 0.0)
    """
    if isinstance(sigmas, Tensor) or hasattr(sigmas, "ndim"):        # torch or numpy
        if sigmas.ndim != 1:
            raise ValueError(f"sigmas as a tensor must be 1-D (one noise level per entry), got "
                             f"{sigmas.ndim} dimensions")
        sigmas = sigmas.tolist()
    if isinstance(sigmas, (str, bytes)) or not isinstance(sigmas, Sequence):
        raise ValueError(f"sigmas must be a non-increasing sequence of noise levels ≥ 0 (a list, "
                         f"tuple or 1-D tensor), got {type(sigmas).__name__}")
    if len(sigmas) == 0:
        raise ValueError("sigmas must hold at least one noise level, got an empty sequence")
    levels = []
    for i, s in enumerate(sigmas):
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise ValueError(f"sigmas must hold numbers, got sigmas[{i}] = {s!r}")
        if not math.isfinite(s) or s < 0:
            raise ValueError(f"every noise level must be finite and ≥ 0 (0 is the data level), "
                             f"got sigmas[{i}] = {s!r}")
        if levels and s > levels[-1]:
            raise ValueError(f"sigmas must be non-increasing (each level ≤ the one before), got "
                             f"sigmas[{i}] = {s!r} > sigmas[{i - 1}] = {levels[-1]!r}")
        levels.append(float(s))
    return tuple(levels)


class AtLevel:
    """A σ-aware energy at one noise level: ``x ↦ energy(x, sigma=σ[B])``; a score-only energy
    stays score-only (``score(x) = energy.score(x, sigma=σ[B])``).

    Example:
        >>> import torch
        >>> e = AtLevel(lambda x, sigma: 0.5 * (x ** 2).sum(1) / (1 + sigma ** 2), 1.0)
        >>> e(torch.ones(3, 2))
        tensor([0.5000, 0.5000, 0.5000])
    """

    def __init__(self, energy: Any, sigma: float) -> None:
        self.energy = energy
        self.sigma = float(sigma)
        self.score_only = is_score_only(energy)
        # an energy that takes a number as sigma (a ComposedEnergy) gets one: a tensor would be
        # checked for finiteness on every call, a host sync per sampler step on a GPU
        self._number = bool(getattr(energy, "sigma_accepts_number", False))

    def _levels(self, x: Tensor) -> Tensor | float:
        if self._number:
            return self.sigma
        return torch.full((x.shape[0],), self.sigma, dtype=x.dtype, device=x.device)   # [B]

    def __call__(self, x: Tensor) -> Tensor:
        return self.energy(x, sigma=self._levels(x))

    def score(self, x: Tensor) -> Tensor:
        """``−∇E(x, σ)`` from the wrapped energy's own ``score``."""
        return self.energy.score(x, sigma=self._levels(x))

    def __repr__(self) -> str:
        return f"AtLevel({self.energy!r}, sigma={self.sigma})"


def step_ratios(sigmas: Sequence[float], sigma_data: float) -> list[float]:
    """The per-level step-size factors ``(σ_l² + σ_d²)/(σ_L² + σ_d²)`` (module docstring), each
    ≥ 1 and finite for ``sigma_data`` > 0, levels of 0 included; the last is exactly 1.

    Example:
        >>> step_ratios([3.0, 1.0, 0.0], sigma_data=1.0)
        [10.0, 2.0, 1.0]
    """
    # in units of σ_d: no σ_d² that underflows to 0 when the last level is 0
    last = (sigmas[-1] / sigma_data) ** 2 + 1.0
    return [((s / sigma_data) ** 2 + 1.0) / last for s in sigmas[:-1]] + [1.0]


def run_levels(config: Any, energy: Any, x0: Tensor, *, sigmas: Sequence[float],
               sigma_data: float, steps: int, warmup: int, step_size: Tensor,
               temperature: Tensor, generator: torch.Generator,
               fresh_at: Callable[[float], Callable[[Tensor], Tensor]],
               mask: Optional[Tensor], record: bool, progress: Any = None,
               shard: Optional[Shard] = None,
               **run_options: Any) -> tuple[RunResult, list[float], int]:
    """Run ``config``'s kernel for ``steps`` steps at each level of ``sigmas`` from ``x0``
    ``[n, *shape]`` (module docstring): returns the last level's :class:`RunResult`, the mean
    acceptance rate of every level (empty unless ``record``) and the chains reset in all.
    ``fresh_at(σ)`` gives the ``fresh(index)`` restart function of a level; ``run_options``
    go to :func:`conceptalg.sampling.loop.run` (``check_every``, ``on_nonfinite``, ...).

    Example:
        >>> import torch
        >>> from conceptalg.sampling import MALA
        >>> g = torch.Generator().manual_seed(0)
        >>> energy = lambda x, sigma: 0.5 * (x ** 2).sum(1) / (1 + sigma ** 2)
        >>> r, rates, _ = run_levels(MALA(), energy, torch.zeros(50, 2), sigmas=[2.0, 0.5],
        ...     sigma_data=1.0, steps=20, warmup=10, step_size=torch.full((50,), 0.5),
        ...     temperature=torch.tensor(1.0, dtype=torch.float64), generator=g,
        ...     fresh_at=lambda s: (lambda i: s * torch.randn(len(i), 2, generator=g)),
        ...     mask=None, record=True)
        >>> r.state.x.shape, len(rates)
        (torch.Size([50, 2]), 2)
    """
    target = config.target_accept if config.adapts and config.adapt else None
    ratios = step_ratios(sigmas, sigma_data)
    x, rates, resets, result = x0, [], 0, None
    for level_index, (sigma, ratio) in enumerate(zip(sigmas, ratios)):
        level = config
        if getattr(config, "noise_scale", None) is not None:           # keep T fixed
            level = dataclasses.replace(config, noise_scale=config.noise_scale * ratio ** 0.5)
        kernel = level.build_kernel(AtLevel(energy, sigma), bounds=None, mask=mask)
        starts = step_size if ratio == 1.0 else step_size * ratio
        result = run(kernel, x, steps=steps, warmup=warmup, step_size=starts,
                     temperature=temperature, target_accept=target, generator=generator,
                     fresh=fresh_at(sigma), record=record, progress=progress, shard=shard,
                     final=level_index + 1 == len(sigmas), **run_options)
        x, resets = result.state.x, resets + result.resets
        if record:
            rates.append(1.0 if result.accepted is None
                         else float(result.accepted.double().mean()) / (steps - warmup))
    return result, rates, resets


def level_info(sigmas: Sequence[float], rates: list[float]) -> dict[str, Union[list, int]]:
    """The keys an annealed run adds to ``sample()``'s info dict."""
    return {"sigmas": list(sigmas), "levels": len(sigmas), "acceptance rate per level": rates}
